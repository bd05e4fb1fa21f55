//! The KMS v2 gRPC surface served to kube-apiserver over a Unix socket.

mod client;
mod error;
mod limits;
mod panic_guard;
mod service;
mod socket;

/// Generated KMS v2 protobuf types, server and client (`proto/kms_v2.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("v2");
}

pub use client::connect;
pub use error::KmsError;
pub use limits::{Limits, MAX_MESSAGE_BYTES};
pub use service::KmsService;
pub use socket::{
    BoundSocket, SocketError, SocketOptions, bind_socket, remove_socket, resolve_group,
};
