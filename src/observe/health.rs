//! The small HTTP side doors: `/live` and `/ready` on `server.healthAddress`,
//! `/metrics` on `server.metricsAddress` (`operations.md` §3).
//!
//! GET and HEAD only, JSON bodies for health, bounded `reasons`; neither
//! endpoint ever contacts OpenBao: both read the status cache.

use super::metrics::Metrics;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The `/ready` view of the status cache.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    #[serde(skip)]
    pub ready: bool,
    pub status: &'static str,
    pub healthz: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_age_ms: Option<u64>,
    pub stale: bool,
    pub rotation_state: &'static str,
    pub reasons: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep_error_class: Option<&'static str>,
}

/// Where `/ready` comes from (implemented by the runtime wiring).
pub trait ReadinessSource: Send + Sync + 'static {
    fn readiness(&self) -> Readiness;
}

/// What one listener serves.
#[derive(Clone)]
pub enum Endpoints {
    Health {
        live: Arc<AtomicBool>,
        source: Arc<dyn ReadinessSource>,
    },
    Metrics(Arc<Metrics>),
}

impl Endpoints {
    /// Which config address this listener serves, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Health { .. } => "server.healthAddress",
            Self::Metrics(_) => "server.metricsAddress",
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    head: bool,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn json(status: StatusCode, body: &impl Serialize, head: bool) -> Response<Full<Bytes>> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    respond(status, "application/json", text, head)
}

/// Routes one request; pure apart from reading the sources.
pub fn route(endpoints: &Endpoints, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"status": "method_not_allowed"}),
            false,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match (endpoints, path) {
        (Endpoints::Health { live, .. }, "/live") => {
            if live.load(Ordering::Acquire) {
                json(StatusCode::OK, &serde_json::json!({"status": "ok"}), head)
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "unavailable"}),
                    head,
                )
            }
        }
        (Endpoints::Health { source, .. }, "/ready") => {
            let readiness = source.readiness();
            let status = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &readiness, head)
        }
        (Endpoints::Metrics(metrics), "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
            head,
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"status": "not_found"}),
            head,
        ),
    }
}

/// Serves `endpoints` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = route(&endpoints, request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct NotReady;

    impl ReadinessSource for NotReady {
        fn readiness(&self) -> Readiness {
            Readiness {
                ready: false,
                status: "unavailable",
                healthz: "unhealthy",
                cache_age_ms: None,
                stale: true,
                rotation_state: "unknown",
                reasons: vec!["metadata_unverified"],
                metadata_error_class: Some("tls_failed"),
                deep_error_class: None,
            }
        }
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn routes_methods_paths_and_bodies() {
        let live = Arc::new(AtomicBool::new(true));
        let health = Endpoints::Health {
            live: Arc::clone(&live),
            source: Arc::new(NotReady),
        };
        let r = route(&health, &Method::GET, "/live");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, r#"{"status":"ok"}"#);
        let r = route(&health, &Method::GET, "/ready");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ready: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(ready["reasons"][0], "metadata_unverified");
        assert_eq!(ready["metadata_error_class"], "tls_failed");
        assert!(ready.get("deep_error_class").is_none());
        let r = route(&health, &Method::HEAD, "/ready");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r).await, "");
        let r = route(&health, &Method::POST, "/live");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            route(&health, &Method::GET, "/metrics").status(),
            StatusCode::NOT_FOUND
        );
        live.store(false, Ordering::Release);
        assert_eq!(
            route(&health, &Method::GET, "/live").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
