//! Configuration problems and the error that carries them.
//!
//! Every problem names a field and says what is wrong with it, never what the
//! value was: config files hold paths, names and (indirectly) secrets, and the
//! error text ends up in logs and CLI output.

use std::fmt;

/// One validation finding, addressed by the dotted camelCase key it concerns
/// (`server.socketPath`), or `config` for the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// All problems found in one pass over a configuration.
///
/// Displays as the reference's one-line format:
/// `config invalid; <field>: <message>; <field>: <message>`.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// The error-kind prefix the reference uses, kept so operators and scripts
    /// can match on it.
    pub const KIND: &'static str = "config invalid";
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::KIND)?;
        for problem in &self.problems {
            write!(f, "; {}: {}", problem.field, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::{ConfigError, Problem};

    #[test]
    fn display_is_one_line_in_order() {
        let err = ConfigError {
            problems: vec![
                Problem::new("server.socketGroup", "is required"),
                Problem::new("openbao.address", "must be an https URL"),
            ],
        };
        assert_eq!(
            err.to_string(),
            "config invalid; server.socketGroup: is required; openbao.address: must be an https URL"
        );
    }
}
