//! Transit endpoints: key metadata, upsert policy, encrypt and decrypt.
//!
//! Every authenticated call goes through `authed`, which implements the one
//! re-login retry on 401/403 of `core.md` §7.7.

use super::error::{ErrorClass, OpenBaoError, Operation};
use super::http::{Answer, Call, HttpClient};
use super::token_source::TokenSource;
use crate::secret::{Ciphertext, SecretBytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Key metadata and batch answers may be large (many versions).
const METADATA_LIMIT: usize = 4 * 1024 * 1024;
/// Everything else is small.
const DEFAULT_LIMIT: usize = 256 * 1024;

/// The fields of `GET <mount>/keys/<key>` the provider validates.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct KeyMetadata {
    #[serde(rename = "type")]
    pub key_type: String,
    pub latest_version: i64,
    pub min_available_version: i64,
    pub min_encryption_version: i64,
    pub min_decryption_version: i64,
    /// Version number (as a string) → creation time in Unix seconds.
    pub keys: BTreeMap<String, i64>,
    pub derived: bool,
    pub convergent_encryption: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub deletion_allowed: bool,
    pub soft_deleted: bool,
    pub supports_encryption: bool,
    pub supports_decryption: bool,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct KeysConfig {
    #[serde(default)]
    disable_upsert: Option<bool>,
}

#[derive(Deserialize)]
struct EncryptData {
    #[serde(default)]
    ciphertext: String,
    #[serde(default)]
    key_version: i64,
}

#[derive(Deserialize)]
struct DecryptData {
    #[serde(default)]
    plaintext: String,
}

#[derive(serde::Serialize)]
struct EncryptBody<'a> {
    plaintext: &'a str,
    associated_data: &'a str,
    key_version: u64,
}

#[derive(serde::Serialize)]
struct DecryptBody<'a> {
    ciphertext: &'a str,
    associated_data: &'a str,
}

/// Client for one Transit key.
pub struct Transit {
    http: HttpClient,
    auth: Arc<dyn TokenSource>,
    key_path: String,
    config_path: String,
    encrypt_path: String,
    decrypt_path: String,
    timeout: Duration,
}

impl Transit {
    pub fn new(
        http: HttpClient,
        auth: Arc<dyn TokenSource>,
        mount: &str,
        key: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            auth,
            key_path: format!("{mount}/keys/{key}"),
            config_path: format!("{mount}/config/keys"),
            encrypt_path: format!("{mount}/encrypt/{key}"),
            decrypt_path: format!("{mount}/decrypt/{key}"),
            timeout,
        }
    }

    /// The token source this client authenticates with.
    pub fn tokens(&self) -> &Arc<dyn TokenSource> {
        &self.auth
    }

    pub async fn read_key(&self) -> Result<KeyMetadata, OpenBaoError> {
        let op = Operation::TransitMetadataRead;
        let answer = self
            .authed(op, Method::GET, &self.key_path, None, METADATA_LIMIT)
            .await?;
        Ok(parse::<Envelope<KeyMetadata>>(op, &answer)?.data)
    }

    /// Reads the mount's `disable_upsert`; absent counts as `false`.
    pub async fn disable_upsert(&self) -> Result<bool, OpenBaoError> {
        let op = Operation::TransitDisableUpsertRead;
        let answer = self
            .authed(op, Method::GET, &self.config_path, None, DEFAULT_LIMIT)
            .await?;
        Ok(parse::<Envelope<KeysConfig>>(op, &answer)?
            .data
            .disable_upsert
            .unwrap_or(false))
    }

    /// Encrypts with an explicit key version; implicit "latest" is never used.
    pub async fn encrypt(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        version: u64,
    ) -> Result<Ciphertext, OpenBaoError> {
        let op = Operation::TransitEncrypt;
        if version == 0 || aad.is_empty() || plaintext.is_empty() {
            return Err(OpenBaoError::new(op, ErrorClass::InvalidRequest));
        }
        let plaintext_b64 = zeroize::Zeroizing::new(STANDARD.encode(plaintext));
        let aad_b64 = STANDARD.encode(aad);
        let body = json_body(&EncryptBody {
            plaintext: &plaintext_b64,
            associated_data: &aad_b64,
            key_version: version,
        });
        let answer = self
            .authed(
                op,
                Method::POST,
                &self.encrypt_path,
                Some(body),
                DEFAULT_LIMIT,
            )
            .await?;
        let data = parse::<Envelope<EncryptData>>(op, &answer)?.data;
        let version_matches =
            data.key_version == 0 || u64::try_from(data.key_version) == Ok(version);
        if data.ciphertext.is_empty() || !version_matches {
            return Err(OpenBaoError::new(op, ErrorClass::InvalidResponse));
        }
        Ok(Ciphertext::new(data.ciphertext))
    }

    pub async fn decrypt(&self, ciphertext: &str, aad: &[u8]) -> Result<SecretBytes, OpenBaoError> {
        let op = Operation::TransitDecrypt;
        if ciphertext.is_empty() || aad.is_empty() {
            return Err(OpenBaoError::new(op, ErrorClass::InvalidRequest));
        }
        let aad_b64 = STANDARD.encode(aad);
        let body = json_body(&DecryptBody {
            ciphertext,
            associated_data: &aad_b64,
        });
        let answer = self
            .authed(
                op,
                Method::POST,
                &self.decrypt_path,
                Some(body),
                DEFAULT_LIMIT,
            )
            .await?;
        let data =
            zeroize::Zeroizing::new(parse::<Envelope<DecryptData>>(op, &answer)?.data.plaintext);
        STANDARD
            .decode(data.as_bytes())
            .map(SecretBytes::new)
            .map_err(|_| OpenBaoError::new(op, ErrorClass::InvalidResponse))
    }

    /// Sends with the current token; on 401/403 recovers the token once and retries once.
    async fn authed(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Answer, OpenBaoError> {
        let token = self
            .auth
            .token()
            .await
            .map_err(|class| OpenBaoError::new(op, class))?;
        let call = Call {
            op,
            method,
            path,
            token: Some(&token),
            body,
            limit,
        };
        let first = self.http.send(call.clone(), self.timeout).await;
        match first {
            Err(e) if e.class.is_auth_rejection() => {
                let Some(fresh) = self.auth.recover(&token).await else {
                    return Err(e);
                };
                // A fresh token rejected again means the policy denies this
                // path: the token is kept, since it may serve other calls.
                self.http
                    .send(
                        Call {
                            token: Some(&fresh),
                            ..call
                        },
                        self.timeout,
                    )
                    .await
            }
            other => other,
        }
    }
}

fn json_body<T: serde::Serialize>(body: &T) -> Vec<u8> {
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(
    op: Operation,
    answer: &Answer,
) -> Result<T, OpenBaoError> {
    serde_json::from_slice(&answer.body)
        .map_err(|_| OpenBaoError::new(op, ErrorClass::InvalidResponse))
}
