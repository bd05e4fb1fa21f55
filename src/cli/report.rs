//! The check report shared by `probe` (and later `doctor`, `verify-key`):
//! text or JSON on stdout, stable ids, any `fail` means exit 4.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl CheckStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: &'static str,
    pub checks: Vec<Check>,
}

/// `--output` value, validated before any work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

impl OutputFormat {
    /// Trimmed and case-insensitive, like the reference.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("--output must be text or json".to_owned()),
        }
    }
}

impl Report {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            checks: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        id: &'static str,
        title: &'static str,
        status: CheckStatus,
        message: impl Into<String>,
    ) {
        self.checks.push(Check {
            id,
            title,
            status,
            message: message.into(),
        });
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }

    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            OutputFormat::Text => {
                let mut out = format!("{}\n", self.name);
                for c in &self.checks {
                    out.push_str(&format!("[{}] {}: {}", c.status.as_str(), c.id, c.title));
                    if !c.message.is_empty() {
                        out.push_str(&format!(" - {}", c.message));
                    }
                    out.push('\n');
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats() {
        let mut r = Report::new("probe");
        r.push("a.b", "Title", CheckStatus::Pass, "");
        r.push("c.d", "Other", CheckStatus::Fail, "why");
        assert_eq!(
            r.render(OutputFormat::Text),
            "probe\n[pass] a.b: Title\n[fail] c.d: Other - why\n"
        );
        let json: serde_json::Value = serde_json::from_str(&r.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["checks"][0].get("message"), None);
        assert_eq!(json["checks"][1]["status"], "fail");
        assert!(r.failed());
        assert_eq!(OutputFormat::parse(" JSON "), Ok(OutputFormat::Json));
        assert!(OutputFormat::parse("yaml").is_err());
    }
}
