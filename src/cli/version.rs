//! `version`: the build metadata, one `key: value` line each, the same
//! values `openbao_kms_build_info` exports.

use super::Failure;

pub fn run() -> Result<(), Failure> {
    let info = crate::assemble::build_info();
    println!("version: {}", info.version);
    println!("commit: {}", info.commit);
    println!("buildDate: {}", info.build_date);
    println!("dirty: {}", info.dirty);
    Ok(())
}
