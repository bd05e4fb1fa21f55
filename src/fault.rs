//! Test-only fault points, compiled only with the `fault-injection` feature
//! (which the test build turns on through a dev-dependency on this crate and
//! release builds never have). `BAO_KMS_FAULT` names one point; the
//! supervision tests use them to kill or panic a task of a running provider
//! and check that the process exits with code 5.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The places a fault can be planted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The status scheduler panics on its first tick.
    SchedulerPanic,
    /// The status scheduler returns on its first tick.
    SchedulerExit,
    /// The health listener task returns right after start.
    HealthExit,
    /// The metrics listener task panics right after start.
    MetricsPanic,
    /// The gRPC server task returns right after start.
    GrpcExit,
    /// The first Decrypt handler call panics (later ones are served).
    DecryptPanicOnce,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Self::SchedulerPanic => "scheduler-panic",
            Self::SchedulerExit => "scheduler-exit",
            Self::HealthExit => "health-exit",
            Self::MetricsPanic => "metrics-panic",
            Self::GrpcExit => "grpc-exit",
            Self::DecryptPanicOnce => "decrypt-panic-once",
        }
    }
}

fn planted() -> Option<&'static str> {
    static PLANTED: OnceLock<Option<String>> = OnceLock::new();
    PLANTED
        .get_or_init(|| std::env::var("BAO_KMS_FAULT").ok())
        .as_deref()
}

/// True when `point` is the planted fault (one-shot points fire once).
pub fn hit(point: Point) -> bool {
    static FIRED: AtomicBool = AtomicBool::new(false);
    if planted() != Some(point.name()) {
        return false;
    }
    point != Point::DecryptPanicOnce || !FIRED.swap(true, Ordering::SeqCst)
}

/// Panics when `point` is the planted fault.
#[allow(clippy::panic)]
pub fn panic_at(point: Point) {
    if hit(point) {
        panic!("planted fault {}", point.name());
    }
}
