//! bao-kms-provider: a Kubernetes KMS v2 plugin that wraps data-encryption
//! seeds with an OpenBao Transit key.
//!
//! The binary is a thin shell over this library (`cli::run`); integration
//! tests call the same code and drive the real binary.

// One audited exemption: `diagnostics::clock_sync` (docs/decisions.md).
#![deny(unsafe_code)]

pub mod assemble;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diagnostics;
pub mod encryption_config;
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod identity;
pub mod kms;
pub mod observe;
pub mod openbao;
pub mod registry;
pub mod regular_file;
pub mod rules;
pub mod runtime;
pub mod scaffold;
pub mod secret;
pub mod status;
