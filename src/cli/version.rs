//! `version`: the build metadata. Text is one `key: value` line each (the
//! first four are the values `openbao_kms_build_info` exports); `--output
//! json` is one object for release tooling, with `null` where a plain
//! `cargo build` could not know the value.

use super::{Failure, OutputFormat, output_format, write_stdout};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

/// The compiler that built this binary, stamped in by build.rs.
const RUSTC: &str = env!("BAO_KMS_PROVIDER_RUSTC");

pub fn run(flags: &Flags) -> Result<(), Failure> {
    let format = output_format(&flags.output)?;
    let info = crate::assemble::build_info();
    let text = match format {
        OutputFormat::Text => format!(
            "version: {}\ncommit: {}\nbuildDate: {}\ndirty: {}\nrustc: {RUSTC}\n",
            info.version, info.commit, info.build_date, info.dirty
        ),
        OutputFormat::Json => {
            let known = |v: &str| (v != "unknown").then(|| v.to_owned());
            let dirty = match info.dirty.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::Null,
            };
            let object = json!({
                "version": info.version,
                "commit": known(&info.commit),
                "buildDate": known(&info.build_date),
                "dirty": dirty,
                "rustc": RUSTC,
            });
            serde_json::to_string_pretty(&object).unwrap_or_default() + "\n"
        }
    };
    write_stdout(&text)
}
