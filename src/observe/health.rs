//! The small HTTP side doors: `/live` and `/ready` on `server.healthAddress`,
//! `/metrics` on `server.metricsAddress` (`operations.md` §3).
//!
//! GET and HEAD only, JSON bodies for health, bounded `reasons`; neither
//! endpoint ever contacts OpenBao: both read the status cache.
//!
//! Both listeners sit next to the KMS socket in the same process, so a
//! misbehaving client must not be able to take file descriptors or tasks
//! from it: connections are capped per listener (over the cap they are
//! closed at once), a request head must arrive within a few seconds (which
//! also closes idle keep-alive connections and slowloris clients), every
//! connection has a bounded lifetime, and accept errors such as EMFILE back
//! off instead of spinning, with rate-limited warnings, never ending the task.

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
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Time allowed for a whole request head. hyper arms it whenever it waits
/// for a request, so it is also how long a keep-alive connection may sit
/// idle after its last response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections per listener; scrapers and probes need a handful.
pub const MAX_CONNECTIONS: usize = 64;
/// After this, a connection finishes its current request and is closed, so
/// a client that keeps a connection busy (or never reads) cannot hold it.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30);
/// How long a connection past its age may take to finish that request.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// At most one warning per listener and kind in this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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

/// The pause after the `failures`-th consecutive accept error: 10 ms,
/// doubling, at most 1 s. Accept errors are mostly EMFILE/ENFILE, which only
/// clear when other connections close, so retrying at once would spin.
pub fn accept_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    ACCEPT_BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(ACCEPT_BACKOFF_MAX)
}

/// Lets one warning through per [`WARN_INTERVAL`], counting the rest.
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(suppressed since the last warning)` when a warning may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Serves `endpoints` on `listener` until `shutdown` turns true. Accept
/// errors never end it.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener_name = endpoints.name();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (mut accept_warn, mut refuse_warn) = (WarnLimiter::default(), WarnLimiter::default());
    let mut failures: u32 = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                failures = 0;
                stream
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = accept_backoff(failures);
                if let Some(suppressed) = accept_warn.allow(Instant::now()) {
                    tracing::warn!(
                        listener = listener_name,
                        error_class = "accept_failed",
                        error = %e,
                        consecutive_failures = failures,
                        suppressed,
                        backoff_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        "http.accept_failed"
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        // Over the cap the stream is dropped here, i.e. closed at once.
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if let Some(suppressed) = refuse_warn.allow(Instant::now()) {
                tracing::warn!(
                    listener = listener_name,
                    reason = "connection_limit",
                    max_connections = MAX_CONNECTIONS,
                    suppressed,
                    "http.connection_refused"
                );
            }
            continue;
        };
        tokio::spawn(serve_connection(stream, endpoints.clone(), permit));
    }
}

/// One connection, holding its slot until it is closed.
async fn serve_connection(stream: TcpStream, endpoints: Endpoints, _slot: OwnedSemaphorePermit) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = route(&endpoints, request.method(), request.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    if tokio::time::timeout(MAX_CONNECTION_AGE, connection.as_mut())
        .await
        .is_err()
    {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
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

    #[test]
    fn accept_backoff_doubles_from_10ms_to_at_most_1s() {
        let ms = |n| accept_backoff(n).as_millis();
        assert_eq!(
            [0, 1, 2, 3, 7, 8, 9, 1000, u32::MAX].map(ms),
            [10, 10, 20, 40, 640, 1000, 1000, 1000, 1000]
        );
    }

    #[test]
    fn warnings_are_limited_to_one_per_interval_and_count_the_rest() {
        let mut limiter = WarnLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(limiter.allow(t0 + WARN_INTERVAL), Some(2));
        assert_eq!(limiter.allow(t0 + WARN_INTERVAL), None);
    }

    /// A health listener on a free loopback port, as `serve` runs it.
    async fn listener() -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let endpoints = Endpoints::Health {
            live: Arc::new(AtomicBool::new(true)),
            source: Arc::new(NotReady),
        };
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(listener, endpoints, shutdown));
        (address, stop)
    }

    const LIVE_BODY: &str = r#"{"status":"ok"}"#;

    /// Sends `GET /live` on a keep-alive connection and reads the answer.
    async fn get_live(stream: &mut TcpStream) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).ends_with(LIVE_BODY) {
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk))
                .await
                .expect("answer in time")
                .unwrap();
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(answer).unwrap()
    }

    /// How long until the server closes `stream` (EOF or reset), at most `limit`.
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
        use tokio::io::AsyncReadExt as _;
        let started = Instant::now();
        let mut chunk = [0u8; 64];
        loop {
            match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        let (address, _stop) = listener().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        assert!(get_live(&mut stream).await.starts_with("HTTP/1.1 200"));
        let closed = closed_within(&mut stream, HEADER_READ_TIMEOUT + Duration::from_secs(3))
            .await
            .expect("idle connection closed");
        assert!(
            closed >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "{closed:?}"
        );
    }

    #[tokio::test]
    async fn a_slowloris_client_that_never_finishes_its_headers_is_dropped() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop) = listener().await;
        let stream = TcpStream::connect(address).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // One header byte every 200 ms, never the blank line.
        let drip = tokio::spawn(async move {
            let _ = write
                .write_all(b"GET /live HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .await;
            while write.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(
            HEADER_READ_TIMEOUT + Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(&mut read, &mut buf),
        )
        .await
        .expect("slowloris dropped in time");
        // Closed (EOF or reset), or at most told 408 on the way out.
        assert!(!matches!(read, Ok(n) if n > 0 && !buf.starts_with(b"HTTP/1.1 408")));
        assert!(started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1));
        drip.abort();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once_and_the_listener_keeps_serving() {
        let (address, _stop) = listener().await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut stream = TcpStream::connect(address).await.unwrap();
            get_live(&mut stream).await;
            held.push(stream);
        }
        let mut over = TcpStream::connect(address).await.unwrap();
        assert!(
            closed_within(&mut over, Duration::from_secs(1))
                .await
                .is_some(),
            "connection over the cap must be closed at once"
        );
        // Connections inside the cap keep being served.
        assert!(get_live(&mut held[0]).await.starts_with("HTTP/1.1 200"));
        drop(held);
        // Once they are gone, new connections are served again.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut stream = TcpStream::connect(address).await.unwrap();
            if closed_within(&mut stream, Duration::from_millis(100))
                .await
                .is_none()
            {
                assert!(get_live(&mut stream).await.starts_with("HTTP/1.1 200"));
                break;
            }
            assert!(Instant::now() < deadline, "listener stopped serving");
        }
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
