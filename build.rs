//! Compiles `proto/kms_v2.proto` with protox, so no system `protoc` is needed,
//! and stamps the compiler's version into the binary for `version`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stamp_rustc_version()?;
    let proto = "proto/kms_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// `rustc -V` of the compiler cargo builds with (cargo passes it as `RUSTC`),
/// as `BAO_KMS_PROVIDER_RUSTC`. Cargo rebuilds on a toolchain change anyway.
fn stamp_rustc_version() -> Result<(), Box<dyn std::error::Error>> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-V").output()?;
    let version = String::from_utf8(out.stdout)?;
    let version = version.trim();
    if !out.status.success() || version.is_empty() {
        return Err("`rustc -V` printed no version".into());
    }
    println!("cargo:rustc-env=BAO_KMS_PROVIDER_RUSTC={version}");
    Ok(())
}
