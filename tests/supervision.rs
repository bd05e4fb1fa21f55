//! The supervised runtime, with faults planted in the real binary (the
//! test-only `fault-injection` feature, `src/fault.rs`): every supervised
//! task that ends or panics makes the process exit 5 with its socket
//! removed; a handler panic is one INTERNAL answer and a counted metric; a
//! SIGTERM drains gRPC while the listeners still answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use nix::sys::signal::{Signal, kill};
use std::time::Duration;
use support::http::{http, value};
use support::kms::{decrypt, encrypt, status};
use support::openbao::Lab;
use support::provider::{Provider, Setup};
use tonic::Code;

#[test]
fn each_supervised_task_that_dies_ends_the_process_with_exit_5() {
    let lab = Lab::start();
    let cases = [
        ("scheduler-panic", "status scheduler", "panicked"),
        ("scheduler-exit", "status scheduler", "returned"),
        ("health-exit", "health listener", "returned"),
        ("metrics-panic", "metrics listener", "panicked"),
        ("grpc-exit", "kms server", "returned"),
    ];
    for (fault, task, outcome) in cases {
        let setup = Setup {
            fault: Some(fault),
            ..Setup::new(&lab)
        };
        let mut provider = Provider::prepare(&lab, &setup);
        provider.spawn();
        let exit = provider.wait_exit(Duration::from_secs(30));
        let logs = provider.logs();
        assert_eq!(exit.code(), Some(5), "{fault}: {logs}");
        assert!(
            logs.contains("serve.ready"),
            "{fault} struck after start: {logs}"
        );
        let line = logs
            .lines()
            .find(|l| l.contains("serve.task_exited"))
            .unwrap_or_else(|| panic!("{fault}: no serve.task_exited in {logs}"));
        assert!(
            line.contains(&format!("\"task\":\"{task}\""))
                && line.contains(&format!("\"outcome\":\"{outcome}\"")),
            "{fault}: {line}"
        );
        assert!(!provider.socket.exists(), "{fault}: socket left behind");
        // The panic payload is never printed, only where it happened.
        assert!(!logs.contains("planted fault"), "{fault}: {logs}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_panic_is_one_internal_answer_and_is_counted() {
    let lab = Lab::start();
    let setup = Setup {
        fault: Some("decrypt-panic-once"),
        ..Setup::new(&lab)
    };
    let provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;
    let panicked = decrypt(&mut client, &sealed).await.unwrap_err();
    assert_eq!(panicked.code(), Code::Internal);
    assert_eq!(panicked.message(), "kms request failed");
    // Nothing is wedged: the next calls on the same connection are served.
    assert_eq!(
        decrypt(&mut client, &sealed).await.unwrap(),
        support::marked_seed(1)
    );
    assert_eq!(status(&mut client).await.0, "ok");
    let (_, scrape) = http("GET", &provider.metrics_address, "/metrics");
    assert_eq!(
        value(
            &scrape,
            "openbao_kms_panic_recoveries_total{method=\"decrypt\"}"
        ),
        1.0
    );
    let logs = provider.logs();
    assert!(logs.contains("\"panic_recovered\":true"), "{logs}");
    assert!(logs.contains("process.panic"), "{logs}");
    assert!(!logs.contains("planted fault"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_grpc_before_the_listeners_stop() {
    let lab = Lab::start();
    let setup = Setup {
        timeout: "3s",
        ..Setup::quiet(&lab)
    };
    let mut provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 2).await;
    // A Decrypt held in flight by a frozen OpenBao.
    lab.pause();
    let in_flight = tokio::spawn(async move { decrypt(&mut client, &sealed).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(provider.pid(), Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: the socket takes no new calls, the metrics listener still answers.
    assert!(
        std::os::unix::net::UnixStream::connect(&provider.socket).is_err(),
        "no new connections while draining"
    );
    let (code, _) = http("GET", &provider.metrics_address, "/metrics");
    assert_eq!(code, 200, "metrics still served during the drain");
    let answer = in_flight.await.unwrap();
    lab.resume();
    assert_eq!(
        answer.unwrap_err().code(),
        Code::DeadlineExceeded,
        "the in-flight call got its own answer"
    );
    let exit = provider.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(0), "{}", provider.logs());
    assert!(!provider.socket.exists());
    assert!(std::net::TcpStream::connect(&provider.metrics_address).is_err());
    let logs = provider.logs();
    let drain = logs.find("\"phase\":\"drain\"").unwrap();
    let done = logs.find("\"phase\":\"done\"").unwrap();
    assert!(drain < done, "{logs}");
}
