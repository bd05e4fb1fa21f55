//! Settings that are fine for an investigation and wrong to forget (doctor's
//! `host.debug`): debug logging, a debug correlation window (with the time
//! it has left on the running provider) and metrics or health listeners
//! reachable beyond loopback. Every finding is a warning.

use super::running_provider::Holder;
use crate::config::rules::parse_host_port;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// What `host.debug` looks at, from the config.
pub struct DebugSettings<'a> {
    pub level_debug: bool,
    /// `(incidentId, ttl)` when `logging.debugCorrelation.enabled`.
    pub correlation: Option<(&'a str, Duration)>,
    pub metrics_address: &'a str,
    pub health_address: &'a str,
}

/// Addresses longer than this are cut in messages (hostnames may be 253 bytes).
const MAX_ADDRESS_CHARS: usize = 80;

/// The findings, in config order; `provider` is asked only when debug
/// correlation is enabled (it reads `/proc`).
pub fn inspect_debug(
    settings: &DebugSettings<'_>,
    provider: impl FnOnce() -> Result<Holder, &'static str>,
    now: SystemTime,
) -> Vec<String> {
    let mut findings = Vec::new();
    if let Some((incident, ttl)) = settings.correlation {
        findings.push(correlation_finding(incident, ttl, provider(), now));
    }
    if settings.level_debug {
        findings.push(
            "logging.level is debug: set it back to info when the investigation ends".to_owned(),
        );
    }
    let listeners = [
        (
            "server.metricsAddress",
            settings.metrics_address,
            "the metrics endpoint",
        ),
        (
            "server.healthAddress",
            settings.health_address,
            "the health endpoints",
        ),
    ];
    findings.extend(
        listeners
            .into_iter()
            .filter_map(|(field, address, what)| exposed_listener(field, address, what)),
    );
    findings
}

/// The correlation window is process start + TTL (spec operations §2.5).
pub fn correlation_finding(
    incident: &str,
    ttl: Duration,
    provider: Result<Holder, &'static str>,
    now: SystemTime,
) -> String {
    match provider {
        Ok(Holder::Serve { pid, started }) => {
            let end = started + ttl;
            match end.duration_since(now) {
                Ok(left) if !left.is_zero() => format!(
                    "debug correlation for incident {incident} is on: {} left (provider pid {pid})",
                    span(left)
                ),
                _ => format!(
                    "debug correlation for incident {incident} ended {} ago (provider pid {pid})",
                    span(now.duration_since(end).unwrap_or_default())
                ),
            }
        }
        Ok(Holder::NoProvider) => format!(
            "debug correlation for incident {incident} is configured: a provider started now logs correlation for {}",
            span(ttl)
        ),
        Err(reason) => format!(
            "debug correlation for incident {incident} is configured for {}; its time left is unknown: {reason}",
            span(ttl)
        ),
    }
}

/// A finding when `address` (a `host:port`, empty when disabled) listens
/// beyond loopback. `localhost` counts as loopback; any other name, and an
/// unspecified or empty host, do not.
pub fn exposed_listener(field: &str, address: &str, what: &str) -> Option<String> {
    if address.is_empty() {
        return None;
    }
    // Validation already parsed it; unparsable here means unknown, not loopback.
    let loopback = parse_host_port(address).is_ok_and(|hp| {
        hp.host.eq_ignore_ascii_case("localhost")
            || hp
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
    });
    if loopback {
        return None;
    }
    let mut shown: String = address.chars().take(MAX_ADDRESS_CHARS).collect();
    if shown.len() < address.len() {
        shown.push('…');
    }
    Some(format!(
        "{field} listens on {shown}, not on loopback: anyone who reaches this host reads {what}"
    ))
}

/// `1h 5m`, `12m 30s`, `15m`, `45s`: the two largest units, whole seconds.
pub fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const MIN: Duration = Duration::from_secs(60);

    fn exposed(address: &str) -> Option<String> {
        exposed_listener("server.healthAddress", address, "the health endpoints")
    }

    #[test]
    fn only_loopback_listeners_and_disabled_ones_are_quiet() {
        for quiet in [
            "",
            "127.0.0.1:8082",
            "127.1.2.3:8082",
            "[::1]:8082",
            "[::ffff:127.0.0.1]:8082",
            "localhost:8082",
            "LocalHost:0",
        ] {
            assert_eq!(exposed(quiet), None, "{quiet}");
        }
        for loud in [
            "0.0.0.0:8082",
            "[::]:8082",
            ":8082",
            "10.0.0.5:8082",
            "[2001:db8::1]:8082",
            "node1.example:8082",
            "localhost.example:8082",
            "127.0.0.1",
        ] {
            let message = exposed(loud).unwrap_or_else(|| panic!("{loud} is not loopback"));
            assert!(message.starts_with("server.healthAddress listens on "));
            assert!(message.contains(loud), "{message}");
        }
        assert_eq!(
            exposed("0.0.0.0:8082").unwrap(),
            "server.healthAddress listens on 0.0.0.0:8082, not on loopback: anyone who reaches this host reads the health endpoints"
        );
        let long = format!("{}:1", "a".repeat(300));
        let message = exposed(&long).unwrap();
        assert!(
            message.contains(&format!("{}…,", "a".repeat(80))),
            "{message}"
        );
    }

    #[test]
    fn spans_show_the_two_largest_units() {
        let s = Duration::from_secs;
        assert_eq!(span(s(0)), "0s");
        assert_eq!(span(s(45)), "45s");
        assert_eq!(span(s(15 * 60)), "15m");
        assert_eq!(span(s(12 * 60 + 30)), "12m 30s");
        assert_eq!(span(s(3600)), "1h");
        assert_eq!(span(s(3600 + 5 * 60 + 9)), "1h 5m");
        assert_eq!(span(Duration::from_millis(59_999)), "59s");
    }

    #[test]
    fn the_correlation_window_runs_from_the_provider_start() {
        let started = UNIX_EPOCH + Duration::from_secs(1_778_277_600);
        let serve = Ok(Holder::Serve { pid: 1234, started });
        let at = |d: Duration| started + d;
        assert_eq!(
            correlation_finding(
                "INC-42",
                15 * MIN,
                serve,
                at(2 * MIN + Duration::from_secs(30))
            ),
            "debug correlation for incident INC-42 is on: 12m 30s left (provider pid 1234)"
        );
        assert_eq!(
            correlation_finding("INC-42", 15 * MIN, serve, at(18 * MIN)),
            "debug correlation for incident INC-42 ended 3m ago (provider pid 1234)"
        );
        assert_eq!(
            correlation_finding("INC-42", 15 * MIN, serve, at(15 * MIN)),
            "debug correlation for incident INC-42 ended 0s ago (provider pid 1234)"
        );
        assert_eq!(
            correlation_finding("INC-42", 15 * MIN, Ok(Holder::NoProvider), at(MIN)),
            "debug correlation for incident INC-42 is configured: a provider started now logs correlation for 15m"
        );
        assert_eq!(
            correlation_finding("INC-42", 15 * MIN, Err("cannot read /proc/locks"), at(MIN)),
            "debug correlation for incident INC-42 is configured for 15m; its time left is unknown: cannot read /proc/locks"
        );
    }

    #[test]
    fn findings_follow_the_config_and_proc_is_read_only_for_correlation() {
        let quiet = DebugSettings {
            level_debug: false,
            correlation: None,
            metrics_address: "127.0.0.1:8081",
            health_address: "",
        };
        let never = || -> Result<Holder, &'static str> { panic!("read /proc without correlation") };
        assert!(inspect_debug(&quiet, never, UNIX_EPOCH).is_empty());
        let loud = DebugSettings {
            level_debug: true,
            correlation: Some(("INC-42", 15 * MIN)),
            metrics_address: "0.0.0.0:8081",
            health_address: "[::]:8082",
        };
        let findings = inspect_debug(&loud, || Ok(Holder::NoProvider), UNIX_EPOCH);
        assert_eq!(findings.len(), 4, "{findings:?}");
        assert!(findings[0].contains("incident INC-42 is configured"));
        assert!(findings[1].starts_with("logging.level is debug"));
        assert!(findings[2].starts_with("server.metricsAddress listens on 0.0.0.0:8081"));
        assert!(findings[3].starts_with("server.healthAddress listens on [::]:8082"));
    }
}
