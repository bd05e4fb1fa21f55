//! `serve` wiring: build the clients, pass the bootstrap probes, bind the
//! socket, serve until SIGTERM/SIGINT, drain, remove the socket.
//!
//! The socket appears only after OpenBao answered both probes, so the
//! apiserver never sees a provider that cannot serve.

mod view;

use crate::assemble::{AssembleError, build_info, build_transit_with, open_keeper};
use crate::config::{AuthMethod, Config};
use crate::kms::proto::key_management_service_server::KeyManagementServiceServer;
use crate::kms::{
    KmsService, Limits, MAX_MESSAGE_BYTES, SocketOptions, bind_socket, remove_socket, resolve_group,
};
use crate::observe::health::{self, Endpoints};
use crate::observe::metrics::Metrics;
use crate::status::{Discovery, Prober, StatusCache, bootstrap, run_scheduler};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use view::{LiveView, Parts};

/// In-flight calls get this long to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The health and metrics listeners and the scheduler get this long after the drain.
const LISTENER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A failure after the config was accepted (exit code 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError(pub String);

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// Assembly failures are runtime failures of `serve` (exit 5).
impl From<AssembleError> for ServeError {
    fn from(e: AssembleError) -> Self {
        Self(e.to_string())
    }
}

fn fail(e: impl fmt::Display) -> ServeError {
    ServeError(e.to_string())
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<watch::Receiver<bool>, ServeError> {
    let mut term = signal(SignalKind::terminate()).map_err(fail)?;
    let mut int = signal(SignalKind::interrupt()).map_err(fail)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs the provider until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let started = Instant::now();
    install_panic_hook();
    let shutdown = shutdown_signal()?;
    let gid = resolve_group(&config.server.socket_group).map_err(fail)?;
    // The writer lock and the fail-closed state load come before anything
    // talks to OpenBao: a second provider on the same state, a rolled-back or
    // foreign state file stops start-up here.
    let keeper = Arc::new(open_keeper(&config)?);
    let view = Arc::new(LiveView::default());
    let metrics = Metrics::new(Box::new(Arc::clone(&view)), build_info());
    let transit = build_transit_with(&config, Some(&metrics))?;
    let cache = Arc::new(StatusCache::new(config.status.status_max_staleness));
    let prober = Arc::new(
        Prober::new(Arc::clone(&transit), keeper, Arc::clone(&cache))
            .with_breaker_trials(config.status.probe_interval)
            .with_metrics(Arc::clone(&metrics)),
    );
    let limits = Limits::new(
        config.server.max_concurrent_status,
        config.server.max_concurrent_encrypt,
        config.server.max_concurrent_decrypt,
    );
    view.set(Parts {
        cache: Arc::clone(&cache),
        limits: limits.clone(),
        tokens: Arc::clone(transit.tokens()),
        prober: Arc::clone(&prober),
        max_staleness: config.status.status_max_staleness,
        auth_method: config.auth.method.as_str(),
        certificate_source: match config.auth.method {
            AuthMethod::Cert => "pkcs11",
            AuthMethod::Jwt => "none",
        },
    });
    let discovery = Discovery::new(Arc::clone(&prober), config.status.probe_interval);
    tracing::info!(version = crate::identity::plugin_version(), "serve.start");

    let grace = config.bootstrap.grace_timeout;
    tokio::select! {
        result = bootstrap(&prober, grace, config.bootstrap.retry_interval) => result.map_err(fail)?,
        () = wait_for(shutdown.clone()) => {
            tracing::info!(phase = "bootstrap", "serve.shutdown");
            return Ok(());
        }
    }

    let socket = bind_socket(&SocketOptions {
        path: config.server.socket_path.clone(),
        mode: config.server.socket_mode,
        gid: Some(gid),
    })
    .await
    .map_err(fail)?;
    let inode = socket.inode;
    if socket.stale_removed {
        metrics.socket_restart();
    }
    let live = Arc::new(AtomicBool::new(false));
    // The side doors and the scheduler stop only after the gRPC drain
    // (`operations.md` §4.5): probes keep the cache fresh while calls finish.
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Supervised::default();
    let side_doors = [
        (
            config.server.health_address.as_str(),
            Endpoints::Health {
                live: Arc::clone(&live),
                source: view,
            },
        ),
        (
            config.server.metrics_address.as_str(),
            Endpoints::Metrics(Arc::clone(&metrics)),
        ),
    ];
    for (address, endpoints) in side_doors {
        if address.is_empty() {
            continue;
        }
        // A listener that cannot bind stops start-up (the socket is closed with it).
        let Ok(listener) = tokio::net::TcpListener::bind(address).await else {
            remove_socket(&config.server.socket_path, inode);
            return Err(ServeError(format!(
                "cannot listen on {} address",
                endpoints.name()
            )));
        };
        let name = match endpoints {
            Endpoints::Health { .. } => "health listener",
            Endpoints::Metrics(_) => "metrics listener",
        };
        let stop = stop.clone();
        tasks.spawn(name, async move {
            #[cfg(feature = "fault-injection")]
            if side_door_fault(name) {
                return;
            }
            health::serve(listener, endpoints, stop).await;
        });
    }
    let service = KmsService::new(
        Arc::clone(&cache),
        discovery,
        transit,
        limits,
        config.openbao.timeout,
    )
    .with_metrics(Arc::clone(&metrics));
    let server = KeyManagementServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    {
        let prober = Arc::clone(&prober);
        let (probe, deep) = (
            config.status.probe_interval,
            config.status.deep_probe_interval,
        );
        let stop = stop.clone();
        tasks.spawn("status scheduler", async move {
            run_scheduler(&prober, probe, deep, stop).await;
        });
    }
    let grpc_server = tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(socket.listener),
            wait_for(shutdown.clone()),
        );
    let mut grpc = tokio::spawn(async move {
        #[cfg(feature = "fault-injection")]
        if crate::fault::hit(crate::fault::Point::GrpcExit) {
            return Ok(());
        }
        grpc_server.await
    });
    live.store(true, Ordering::Release);
    tracing::info!(
        startup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stale_socket_removed = socket.stale_removed,
        "serve.ready"
    );

    // Until a signal, any supervised task that ends is fatal: exit 5 lets
    // systemd or kubelet restart a provider that could no longer keep its
    // promises (a dead scheduler would leave Status frozen, a dead listener
    // would blind the probes).
    // The gRPC server also ends on the signal: `biased` sees the signal
    // first, and a server that finished because of it is a drain, not a death.
    let mut finished_grpc = None;
    let ended = tokio::select! {
        biased;
        () = wait_for(shutdown.clone()) => None,
        result = &mut grpc => {
            if *shutdown.borrow() {
                finished_grpc = Some(result);
                None
            } else {
                Some(("kms server", task_outcome(result.map(|served| served.map_err(|_| ())))))
            }
        }
        (name, outcome) = tasks.next_exit() => Some((name, outcome)),
    };
    live.store(false, Ordering::Release);
    if let Some((task, outcome)) = ended {
        tracing::error!(task, outcome, "serve.task_exited");
        grpc.abort();
        tasks.stop_all();
        remove_socket(&config.server.socket_path, inode);
        return Err(ServeError(format!(
            "{task} stopped unexpectedly ({outcome})"
        )));
    }

    tracing::info!(phase = "drain", "serve.shutdown");
    let drained = match finished_grpc {
        Some(result) => Ok(result),
        None => tokio::time::timeout(DRAIN_TIMEOUT, &mut grpc).await,
    };
    if drained.is_err() {
        grpc.abort();
    }
    // Then the listeners and the scheduler; the socket goes last.
    let _ = stop_tx.send(true);
    tasks.finish(LISTENER_STOP_TIMEOUT).await;
    remove_socket(&config.server.socket_path, inode);
    match drained {
        Ok(Ok(Ok(()))) => {
            tracing::info!(phase = "done", "serve.shutdown");
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(fail(format_args!("kms server failed: {}", e))),
        Ok(Err(_)) => Err(ServeError("kms server task failed".into())),
        Err(_) => {
            tracing::warn!(phase = "drain_timeout", "serve.shutdown");
            Ok(())
        }
    }
}

/// Replaces the default hook, which prints the panic message, with one log
/// line that names only the source location: a payload could hold anything.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(location, "process.panic");
    }));
}

/// How a supervised task ended, as a bounded label (never a panic message).
fn task_outcome<T>(result: Result<Result<T, ()>, tokio::task::JoinError>) -> &'static str {
    match result {
        Ok(Ok(_)) => "returned",
        Ok(Err(())) => "failed",
        Err(e) if e.is_panic() => "panicked",
        Err(_) => "cancelled",
    }
}

/// The background tasks whose end, before shutdown, ends the process.
#[derive(Default)]
struct Supervised {
    set: tokio::task::JoinSet<()>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervised {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name);
    }

    /// The first task to end, and how; pending forever when there are none.
    async fn next_exit(&mut self) -> (&'static str, &'static str) {
        let (id, outcome) = match self.set.join_next_with_id().await {
            Some(Ok((id, ()))) => (id, "returned"),
            Some(Err(e)) => (e.id(), task_outcome::<()>(Err(e))),
            None => return std::future::pending().await,
        };
        (self.names.get(&id).copied().unwrap_or("task"), outcome)
    }

    fn stop_all(&mut self) {
        self.set.abort_all();
    }

    /// Waits up to `limit` for every task to stop by itself, then aborts the rest.
    async fn finish(&mut self, limit: Duration) {
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            self.set.abort_all();
        }
    }
}

/// Test-only faults in a side-door task: `true` means return at once.
#[cfg(feature = "fault-injection")]
fn side_door_fault(name: &str) -> bool {
    use crate::fault::{Point, hit, panic_at};
    match name {
        "metrics listener" => {
            panic_at(Point::MetricsPanic);
            false
        }
        _ => hit(Point::HealthExit),
    }
}
