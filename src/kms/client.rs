//! A KMS v2 gRPC client over the Unix socket, as kube-apiserver dials it
//! (plaintext HTTP/2, authority `localhost`). Used by `probe` and the tests.

use super::limits::MAX_MESSAGE_BYTES;
use super::proto::key_management_service_client::KeyManagementServiceClient;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint};

/// Connects to the provider socket at `path`.
pub async fn connect(
    path: &Path,
) -> Result<KeyManagementServiceClient<Channel>, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI is never dialed: the connector below always opens the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await?;
    Ok(KeyManagementServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
