//! The `mock-upstream` binary announces its address once ready and serves the same routes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::RawClient;

/// Kills the child even when an assertion fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _already_gone = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Running, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mock-upstream");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (running, line.trim_end().to_owned())
}

#[tokio::test]
async fn binary_prints_its_url_and_answers() {
    let (_running, line) = start(&["--port", "0", "--threads", "2", "--latency-ms", "1"]);
    let url = line
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{line}"));
    let port: u16 = url.parse().unwrap();
    let mut client = RawClient::connect(port).await;
    let response = client
        .exchange("/v1/chat/completions", &[], r#"{"model":"bin"}"#)
        .await;
    assert_eq!(response.json()["model"], "bin");
}

#[test]
fn binary_rejects_unknown_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
        .arg("--prot")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument '--prot'"));
}
