//! Reading the JSON reports of `probe` and `doctor` (`--output json`).

use serde_json::Value;

/// The check with `id`; a missing one fails the test with the report.
pub fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

/// Every check in `ids` passed.
pub fn assert_checks_pass(report: &Value, ids: &[&str]) {
    for id in ids {
        assert_eq!(check(report, id)["status"], "pass", "{id}: {report:#}");
    }
}

/// `probe` run by a user outside the socket group: the kernel refuses it at
/// the socket directory, so `socket.path` fails with permission denied and
/// the probe exits 4.
pub fn assert_refused_at_the_socket_directory(code: Option<i32>, report: &Value) {
    assert_eq!(code, Some(4), "{report:#}");
    let path = check(report, "socket.path");
    assert_eq!(path["status"], "fail", "{report:#}");
    assert!(
        path["message"]
            .as_str()
            .unwrap()
            .starts_with("permission denied"),
        "{report:#}"
    );
}
