//! Connecting to one OpenBao name that resolves to several nodes.
//!
//! hyper's connector tries the resolved addresses in resolver order on every
//! new connection, and gives each one a slice of the connect timeout. That is
//! enough when a dead node refuses connections, but a node that is hung, or a
//! host that drops packets, accepts (or swallows) the TCP connect and then
//! never finishes the TLS handshake: every new connection went to the same
//! first address and timed out there, so the provider stayed on the dead
//! node for as long as it was down. This connector instead
//!
//! * treats TCP connect *and* TLS handshake as one attempt per address, with
//!   a short bound for every address but the last, so one request can still
//!   reach a second node within `openbao.timeout`;
//! * remembers an address whose attempt failed, timed out or was abandoned
//!   (the request's deadline dropped it), and an address a request timed out
//!   on ([`Failover::avoid`]), and tries it after the others for
//!   [`AVOID_FOR`]; it is never dropped, so a single-node setup is unchanged.
//!
//! The pool is still keyed by the configured name, and the TLS server name is
//! the configured one, so which node serves a request changes nothing else.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

type Inner = hyper_rustls::HttpsConnector<HttpConnector>;
pub type Stream = hyper_rustls::MaybeHttpsStream<TokioIo<TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a failed address is tried last.
const AVOID_FOR: Duration = Duration::from_secs(30);
/// Bound on one connect + handshake while other addresses remain; the
/// default `openbao.timeout` (2 s) leaves room for a second address.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The name could not be resolved (classified as `dns_failed`).
#[derive(Debug)]
pub struct DnsError;

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dns error: name did not resolve")
    }
}

impl std::error::Error for DnsError {}

/// When each recently failed address was last seen failing.
#[derive(Default)]
struct Avoided(Mutex<HashMap<SocketAddr, Instant>>);

impl Avoided {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<SocketAddr, Instant>) -> T) -> T {
        // Plain inserts and removes: a panic elsewhere leaves a usable map.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `addrs` with the healthy ones first (resolver order kept), then the
    /// avoided ones, longest-ago failure first.
    fn order(&self, addrs: Vec<SocketAddr>, now: Instant) -> Vec<SocketAddr> {
        self.with(|map| {
            map.retain(|_, failed| now.saturating_duration_since(*failed) < AVOID_FOR);
            let (mut avoided, mut healthy): (Vec<_>, Vec<_>) =
                addrs.into_iter().partition(|a| map.contains_key(a));
            avoided.sort_by_key(|a| map.get(a).copied());
            healthy.append(&mut avoided);
            healthy
        })
    }
}

/// The connector the pooled client uses (see the module comment).
#[derive(Clone)]
pub struct Failover {
    inner: Inner,
    avoided: Arc<Avoided>,
}

impl Failover {
    pub fn new(inner: Inner) -> Self {
        Self {
            inner,
            avoided: Arc::default(),
        }
    }

    /// Tries `addr` last for a while: a request on a connection to it timed out.
    pub fn avoid(&self, addr: SocketAddr) {
        self.avoided.with(|map| map.insert(addr, Instant::now()));
    }
}

/// Marks its address as failed unless the attempt succeeded, so an attempt
/// cancelled by the request's deadline counts too.
struct Attempt<'a> {
    addr: SocketAddr,
    avoided: &'a Avoided,
    succeeded: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let addr = self.addr;
        if self.succeeded {
            self.avoided.with(|map| map.remove(&addr));
        } else {
            self.avoided.with(|map| map.insert(addr, Instant::now()));
        }
    }
}

impl tower::Service<http::Uri> for Failover {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call clones the inner connector, which is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let inner = self.inner.clone();
        let avoided = Arc::clone(&self.avoided);
        Box::pin(async move {
            let host = uri.host().ok_or(DnsError)?;
            let port = uri.port_u16().unwrap_or(443);
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|_| DnsError)?
                    .collect(),
            };
            let ordered = avoided.order(addrs, Instant::now());
            let count = ordered.len();
            let mut last: BoxError = Box::new(DnsError);
            for (i, addr) in ordered.into_iter().enumerate() {
                let mut attempt = Attempt {
                    addr,
                    avoided: &avoided,
                    succeeded: false,
                };
                // The TLS server name is fixed, so an IP target changes nothing
                // but which node answers.
                let target = http::Uri::builder()
                    .scheme("https")
                    .authority(addr.to_string())
                    .path_and_query("/")
                    .build()?;
                let mut connect = inner.clone();
                let dial = tower::Service::call(&mut connect, target);
                let result = if i + 1 < count {
                    match tokio::time::timeout(ATTEMPT_TIMEOUT, dial).await {
                        Ok(result) => result,
                        Err(_) => Err(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut))
                            as BoxError),
                    }
                } else {
                    // The last address keeps the connector's own timeout; the
                    // request's deadline bounds it anyway.
                    dial.await
                };
                match result {
                    Ok(stream) => {
                        attempt.succeeded = true;
                        return Ok(stream);
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{AVOID_FOR, Avoided};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::time::Instant;

    fn a(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 8200))
    }

    #[test]
    fn failed_addresses_go_last_until_they_are_forgiven() {
        let avoided = Avoided::default();
        let now = Instant::now();
        let all = || vec![a(1), a(2), a(3)];
        assert_eq!(avoided.order(all(), now), all(), "resolver order kept");
        avoided.with(|m| m.insert(a(2), now));
        avoided.with(|m| m.insert(a(1), now + Duration::from_secs(1)));
        let later = now + Duration::from_secs(2);
        assert_eq!(
            avoided.order(all(), later),
            vec![a(3), a(2), a(1)],
            "healthy first, then the longest-ago failure"
        );
        let forgiven = now + AVOID_FOR + Duration::from_secs(1);
        assert_eq!(avoided.order(all(), forgiven), all());
        assert!(avoided.with(|m| m.is_empty()), "old entries are dropped");
    }

    #[test]
    fn a_single_address_is_always_tried() {
        let avoided = Avoided::default();
        let now = Instant::now();
        avoided.with(|m| m.insert(a(1), now));
        assert_eq!(avoided.order(vec![a(1)], now), vec![a(1)]);
    }
}
