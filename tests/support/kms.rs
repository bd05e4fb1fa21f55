//! KMS v2 client helpers shared by the integration tests: one call each,
//! with the test seed, and polling Status until a condition holds.

use super::marked_seed;
use bao_kms_provider::kms::proto::key_management_service_client::KeyManagementServiceClient;
use bao_kms_provider::kms::proto::{
    DecryptRequest, EncryptRequest, EncryptResponse, StatusRequest,
};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub type Client = KeyManagementServiceClient<Channel>;

/// `(healthz, key_id)` of one Status call.
pub async fn status(client: &mut Client) -> (String, String) {
    let s = client.status(StatusRequest {}).await.unwrap().into_inner();
    (s.healthz, s.key_id)
}

/// Encrypts `marked_seed(tag)`.
pub async fn try_encrypt(client: &mut Client, tag: u8) -> Result<EncryptResponse, tonic::Status> {
    client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(tag),
            uid: "u".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Encrypts `marked_seed(tag)`, which must succeed.
pub async fn encrypt(client: &mut Client, tag: u8) -> EncryptResponse {
    try_encrypt(client, tag).await.unwrap()
}

/// The Decrypt request for what Encrypt returned.
pub fn decrypt_request(sealed: &EncryptResponse) -> DecryptRequest {
    DecryptRequest {
        ciphertext: sealed.ciphertext.clone(),
        uid: "u".into(),
        key_id: sealed.key_id.clone(),
        annotations: sealed.annotations.clone(),
    }
}

/// Decrypts what Encrypt returned; the plaintext or the gRPC status.
pub async fn decrypt(
    client: &mut Client,
    sealed: &EncryptResponse,
) -> Result<Vec<u8>, tonic::Status> {
    client
        .decrypt(decrypt_request(sealed))
        .await
        .map(|r| r.into_inner().plaintext)
}

/// Polls Status (every 50 ms) until `done(healthz, key_id)`; returns the
/// key_id then. Panics after `limit`, naming `what`.
pub async fn wait_for_status(
    client: &mut Client,
    limit: Duration,
    what: &str,
    done: impl Fn(&str, &str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        let (healthz, key_id) = status(client).await;
        if done(&healthz, &key_id) {
            return key_id;
        }
        assert!(
            started.elapsed() < limit,
            "{what} not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
