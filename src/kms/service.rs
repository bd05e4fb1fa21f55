//! Status, Encrypt and Decrypt handlers (`core.md` §1.2–§1.4).
//!
//! Every check that can reject a request runs before any Transit call; Status
//! reads only the cache; Encrypt always names the key version explicitly and
//! returns the key_id of the snapshot Status reports.

use super::error::{KmsError, code_label};
use super::limits::{ANNOTATIONS_LIMIT, FIELD_LIMIT, Limits, annotations_size};
use super::panic_guard::catch_panic;
use super::proto::key_management_service_server::KeyManagementService;
use super::proto::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, StatusRequest, StatusResponse,
};
use crate::identity::{
    AadMode, AnnotationError, KeyId, KeySnapshot, SnapshotState, build_annotations, canonical_aad,
    check_against_snapshot, hash_value, parse_annotations,
};
use crate::observe::metrics::Metrics;
use crate::openbao::{ErrorClass, OpenBaoError, Operation, Transit};
use crate::secret::SecretBytes;
use crate::status::{Discovery, StatusCache};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

const API_VERSION: &str = "v2";

pub struct KmsService {
    cache: Arc<StatusCache>,
    /// key_id of the last healthy Status answer: Encrypt never returns another
    /// (kube-apiserver discards such results and marks the plugin unhealthy).
    last_status_key_id: Mutex<Option<KeyId>>,
    discovery: Arc<Discovery>,
    transit: Arc<Transit>,
    limits: Limits,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl KmsService {
    pub fn new(
        cache: Arc<StatusCache>,
        discovery: Arc<Discovery>,
        transit: Arc<Transit>,
        limits: Limits,
        timeout: Duration,
    ) -> Self {
        Self {
            cache,
            last_status_key_id: Mutex::new(None),
            discovery,
            transit,
            limits,
            timeout,
            metrics: None,
        }
    }

    /// Counts requests in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Finds the snapshot for `key_id`; a well-formed but unknown key_id gets
    /// one shared, rate-limited metadata discovery (a peer node may have
    /// promoted a newer version first).
    async fn snapshot_for(&self, key_id: &KeyId) -> Result<Arc<KeySnapshot>, KmsError> {
        let registry = self.cache.registry().ok_or(KmsError::KeyIdUnknown)?;
        if let Some(snapshot) = registry.lookup(key_id) {
            return Ok(Arc::clone(snapshot));
        }
        if registry.knows(key_id) {
            // Removed or rejected identities are never rediscovered.
            return Err(KmsError::KeyIdUnknown);
        }
        if !self
            .deadline(async { Ok(self.discovery.discover().await) })
            .await?
        {
            return Err(KmsError::DiscoveryFailed);
        }
        let registry = self.cache.registry().ok_or(KmsError::KeyIdUnknown)?;
        registry
            .lookup(key_id)
            .cloned()
            .ok_or(KmsError::KeyIdUnknown)
    }

    /// Bounds the OpenBao part of a request by `openbao.timeout`.
    async fn deadline<T>(
        &self,
        work: impl Future<Output = Result<T, KmsError>>,
    ) -> Result<T, KmsError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(KmsError::Timeout))
    }

    async fn encrypt_inner(&self, request: EncryptRequest) -> Result<EncryptResponse, KmsError> {
        let _slot = self.limits.encrypt()?;
        let plaintext = SecretBytes::new(request.plaintext);
        if plaintext.is_empty() {
            return Err(KmsError::PlaintextRequired);
        }
        let active = self
            .cache
            .healthy_active()
            .map_err(|_| KmsError::StatusStale)?;
        if !active.normalizes() || active.state != SnapshotState::Active {
            return Err(KmsError::StatusStale);
        }
        // After a promotion, Encrypt waits until Status has announced the new key.
        let announced = self
            .last_status_key_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if announced.is_some_and(|k| k != active.key_id) {
            return Err(KmsError::StatusStale);
        }
        let annotations = build_annotations(&active);
        let aad = canonical_aad(&active, None);
        let ciphertext = self
            .deadline(async {
                self.transit
                    .encrypt(plaintext.expose(), &aad, active.transit_version)
                    .await
                    .map_err(KmsError::Transit)
            })
            .await?;
        let key_id = active.key_id.as_str().to_owned();
        if ciphertext.len() >= FIELD_LIMIT
            || key_id.is_empty()
            || key_id.len() >= FIELD_LIMIT
            || annotations_size(annotations.iter()) >= ANNOTATIONS_LIMIT
        {
            return Err(KmsError::ResponseOverLimits);
        }
        Ok(EncryptResponse {
            ciphertext: ciphertext.into_bytes(),
            key_id,
            annotations,
        })
    }

    /// Answers from the cache only; never calls OpenBao.
    fn status_inner(&self) -> Result<StatusResponse, KmsError> {
        let _slot = self.limits.status()?;
        let healthy = self
            .cache
            .healthy_active()
            .ok()
            .filter(|active| active.normalizes() && active.state == SnapshotState::Active);
        let (healthz, key_id) = match healthy {
            Some(active) => {
                *self
                    .last_status_key_id
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(active.key_id.clone());
                ("ok", active.key_id.as_str().to_owned())
            }
            None => ("unhealthy", String::new()),
        };
        Ok(StatusResponse {
            version: API_VERSION.to_owned(),
            healthz: healthz.to_owned(),
            key_id,
        })
    }

    async fn decrypt_inner(&self, request: DecryptRequest) -> Result<DecryptResponse, KmsError> {
        let _slot = self.limits.decrypt()?;
        #[cfg(feature = "fault-injection")]
        crate::fault::panic_at(crate::fault::Point::DecryptPanicOnce);
        if request.ciphertext.is_empty() {
            return Err(KmsError::CiphertextRequired);
        }
        if request.ciphertext.len() >= FIELD_LIMIT || request.key_id.len() >= FIELD_LIMIT {
            return Err(KmsError::RequestOverLimits);
        }
        if request
            .annotations
            .values()
            .any(|v| std::str::from_utf8(v).is_err())
        {
            return Err(KmsError::AnnotationsInvalid);
        }
        if annotations_size(request.annotations.iter()) >= ANNOTATIONS_LIMIT {
            return Err(KmsError::RequestOverLimits);
        }
        let key_id = KeyId::parse(&request.key_id).map_err(|_| KmsError::KeyIdMalformed)?;
        let snapshot = self.snapshot_for(&key_id).await?;
        if !self.cache.version_decryptable(snapshot.transit_version) {
            // Live metadata contradicts this version (recreated key, rollback):
            // its ciphertext is never handed to whatever the key is now.
            return Err(KmsError::StatusStale);
        }
        if snapshot.aad_mode != AadMode::Required {
            return Err(KmsError::AadMissing);
        }
        let parsed = parse_annotations(&request.annotations).map_err(|e| match e {
            AnnotationError::Invalid => KmsError::AnnotationsInvalid,
            AnnotationError::Mismatch => KmsError::AnnotationMismatch,
        })?;
        check_against_snapshot(&parsed, &snapshot).map_err(|_| KmsError::AnnotationMismatch)?;
        // Transit ciphertexts are ASCII; anything else could never decrypt.
        let ciphertext = std::str::from_utf8(&request.ciphertext).map_err(|_| {
            KmsError::Transit(OpenBaoError::new(
                Operation::TransitDecrypt,
                ErrorClass::InvalidRequest,
            ))
        })?;
        let aad = canonical_aad(&snapshot, Some(&parsed));
        let plaintext = self
            .deadline(async {
                self.transit
                    .decrypt(ciphertext, &aad)
                    .await
                    .map_err(KmsError::Transit)
            })
            .await?;
        Ok(DecryptResponse {
            plaintext: plaintext.into_exposed(),
        })
    }
}

/// Logs and counts one finished request with bounded fields only.
fn observe<T>(
    metrics: Option<&Metrics>,
    method: &'static str,
    started: Instant,
    (key_id_hash, uid): (Option<&str>, Option<&str>),
    result: &Result<T, KmsError>,
) {
    // Request uids are correlated (hashed) only inside an active debug window.
    let correlation =
        uid.and_then(|uid| crate::observe::logging::correlation().map(|c| (hash_value(uid), c)));
    let request_uid_hash = correlation.as_ref().map(|(h, _)| h.as_str());
    let incident = correlation.as_ref().map(|(_, (incident, _))| *incident);
    let expires = correlation
        .as_ref()
        .map(|(_, (_, expires))| expires.as_str());
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let operation = match method {
        "status" => "kms.status",
        "encrypt" => "kms.encrypt",
        _ => "kms.decrypt",
    };
    let status = match result {
        Ok(_) => {
            tracing::debug!(
                operation,
                status = "ok",
                duration_ms,
                key_id_hash,
                request_uid_hash,
                debug_correlation_incident = incident,
                debug_correlation_expires_at = expires,
                "kms.request"
            );
            "ok"
        }
        Err(e) => {
            let (code, _, class) = e.parts();
            let status = code_label(code);
            tracing::warn!(
                operation,
                status,
                error_class = class,
                panic_recovered = matches!(e, KmsError::Panic),
                duration_ms,
                key_id_hash,
                request_uid_hash,
                debug_correlation_incident = incident,
                debug_correlation_expires_at = expires,
                "kms.request"
            );
            status
        }
    };
    if let Some(metrics) = metrics {
        metrics.kms_request(method, status, elapsed);
        if let Err(e) = result {
            match e.class() {
                "concurrency_limit" => metrics.concurrency_rejected(method),
                reason @ ("aad_missing" | "aad_mismatch" | "annotation_invalid") => {
                    metrics.aad_error(reason)
                }
                reason @ ("key_id_malformed" | "key_id_unknown") => metrics.key_id_error(reason),
                "panic" => metrics.panic_recovered(method),
                _ => {}
            }
        }
    }
}

#[tonic::async_trait]
impl KeyManagementService for KmsService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let started = Instant::now();
        let result = catch_panic(async { self.status_inner() })
            .await
            .unwrap_or(Err(KmsError::Panic));
        observe(
            self.metrics.as_deref(),
            "status",
            started,
            (None, None),
            &result,
        );
        result.map(Response::new).map_err(Status::from)
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let started = Instant::now();
        let mut request = request.into_inner();
        let hash = KeyId::parse(&request.key_id)
            .ok()
            .map(|id| hash_value(id.as_str()));
        let uid = std::mem::take(&mut request.uid);
        let result = catch_panic(self.decrypt_inner(request))
            .await
            .unwrap_or(Err(KmsError::Panic));
        observe(
            self.metrics.as_deref(),
            "decrypt",
            started,
            (hash.as_deref(), Some(&uid)),
            &result,
        );
        result.map(Response::new).map_err(Status::from)
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let started = Instant::now();
        let mut request = request.into_inner();
        let uid = std::mem::take(&mut request.uid);
        let result = catch_panic(self.encrypt_inner(request))
            .await
            .unwrap_or(Err(KmsError::Panic));
        let hash = result.as_ref().ok().map(|r| hash_value(&r.key_id));
        observe(
            self.metrics.as_deref(),
            "encrypt",
            started,
            (hash.as_deref(), Some(&uid)),
            &result,
        );
        result.map(Response::new).map_err(Status::from)
    }
}
