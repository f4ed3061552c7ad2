//! The official Python SDKs through `/proxy`, whole and streamed: `openai` (Chat Completions and
//! Responses), `anthropic` (Messages, `stream=True` and the `messages.stream` helper) and
//! `google-genai` (`generate_content` and `generate_content_stream`). Each SDK is pointed at the
//! base URL the README documents with the group's proxy key as its API key; the test checks the
//! text the SDK parsed out of the mock's answer and what the mock received (path, and the
//! upstream key in the channel's place, never the proxy key).
//!
//! The scripts live in `tests/sdk/`; the SDKs are installed from `tests/sdk/requirements.txt`
//! into a virtualenv under the cargo target dir on the first run (this needs PyPI) and reused
//! until that file changes.

mod common;

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{PROXY_KEY, Server};
use mock_upstream::formats::{chunk_text, reply_text};
use mock_upstream::{MockUpstream, RecordedRequest};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Bound on one SDK script run: interpreter start, SDK import and every call of its modes.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// `pip install -r`, with 2 retries of 60 s: an unreachable PyPI fails the first run in minutes
/// rather than pip's default 5 retries.
const PIP_INSTALL: [&str; 10] = [
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    "--no-input",
    "--retries",
    "2",
    "--timeout",
    "60",
    "-r",
];
/// Pieces the mock answers with when the request does not say (`x-mock-chunks`).
const CHUNKS: usize = mock_upstream::controls::DEFAULT_CHUNKS;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

// The virtualenv: made once per target dir, shared by every test and every run.

/// The venv's `python`, with the pinned SDKs installed. Blocks while the first caller installs;
/// panics with what to do when Python or PyPI is not there.
async fn sdk_python() -> PathBuf {
    // The outcome, failure included: one failed install fails every test at once, with its
    // message, instead of each test trying PyPI again.
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let install = || PYTHON.get_or_init(|| panic_message(prepare_venv)).clone();
    let python = tokio::task::spawn_blocking(install).await.expect("join");
    python.unwrap_or_else(|message| panic!("{message}"))
}

/// Runs `f`, turning its panic into the panic's message.
fn panic_message<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    std::panic::catch_unwind(f).map_err(|panic| {
        let text = panic.downcast_ref::<String>().map(String::as_str);
        let text = text.or_else(|| panic.downcast_ref::<&str>().copied());
        text.unwrap_or("the SDK venv setup panicked").to_string()
    })
}

/// Creates (or reuses) `$CARGO_TARGET_TMPDIR/sdk-venv`. The stamp file, written last, holds the
/// hash of `requirements.txt` and the Python version; any mismatch (or an install cut short)
/// rebuilds the venv from scratch.
fn prepare_venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let requirements = sdk_dir().join("requirements.txt");
    // Another `cargo test` may be installing into the same dir right now.
    let _lock = lock_file(&dir.with_extension("lock"));
    let python = dir.join("bin/python");
    let stamp_path = dir.join("requirements.sha256");
    let stamp = venv_stamp(&requirements);
    if python.exists() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return python;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("remove the stale venv {}: {e}", dir.display()));
    }
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv"]).arg(&dir);
    run_setup(&mut venv, "create the SDK venv with `python3 -m venv`");
    let mut pip = Command::new(&python);
    pip.args(PIP_INSTALL).arg(&requirements);
    run_setup(
        &mut pip,
        "install the Python SDKs (pip install -r control/tests/sdk/requirements.txt); \
         the SDK tests need PyPI (or a PIP_INDEX_URL mirror) on their first run",
    );
    fs::write(&stamp_path, &stamp)
        .unwrap_or_else(|e| panic!("write {}: {e}", stamp_path.display()));
    python
}

/// An exclusive `flock` on `path`, held until the file is dropped.
fn lock_file(path: &Path) -> File {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    // SAFETY: flock(2) on a descriptor `file` owns and keeps open while the lock is needed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "flock {}", path.display());
    file
}

fn venv_stamp(requirements: &Path) -> String {
    let pinned =
        fs::read(requirements).unwrap_or_else(|e| panic!("read {}: {e}", requirements.display()));
    let version = run_setup(Command::new("python3").arg("--version"), "run `python3`");
    let mut hash = Sha256::new();
    hash.update(&pinned);
    hash.update(&version.stdout);
    hash.update(&version.stderr);
    hex::encode(hash.finalize())
}

/// Runs a setup command to the end; panics with `what` and its output if it fails.
fn run_setup(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not {what}: {e} (is python3 installed?)"));
    if !output.status.success() {
        panic!(
            "could not {what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            tail(&output.stdout),
            tail(&output.stderr)
        );
    }
    output
}

/// The last 4 kB of a command's output: pip's reason for failing is at the end.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_string()
}

// Running an SDK script.

/// Runs `tests/sdk/{script} BASE_URL PROXY_KEY MODES...` and returns its JSON line per mode, in
/// order. Panics with the script's output and the server's log if it fails.
async fn run_sdk(server: &Server, script: &str, base_url: &str, modes: &[&str]) -> Vec<Value> {
    let python = sdk_python().await;
    let mut command = tokio::process::Command::new(python);
    command
        .arg(sdk_dir().join(script))
        .arg(base_url)
        .arg(PROXY_KEY)
        .args(modes)
        // Nothing from the caller's environment: no HTTP proxy, no SDK key or endpoint variable.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &server.dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} {modes:?} took over {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failed = |why: &str| -> ! {
        panic!(
            "{script} {modes:?}: {why}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- server log\n{}",
            String::from_utf8_lossy(&output.stderr),
            server.logs()
        )
    };
    if !output.status.success() {
        failed(&output.status.to_string());
    }
    let results: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| failed("not a JSON line")))
        .collect();
    let ran: Vec<&str> = results.iter().filter_map(|r| r["mode"].as_str()).collect();
    if ran != modes {
        failed("not one result per mode");
    }
    results
}

/// What a stream must deliver: the mock's pieces, one event each.
fn streamed_pieces() -> Value {
    (0..CHUNKS).map(chunk_text).collect()
}

/// The proxy key must not reach the upstream, in any header or in the query.
fn assert_proxy_key_not_forwarded(sent: &[RecordedRequest]) {
    for request in sent {
        assert!(!request.path.contains(PROXY_KEY), "{request:?}");
        for (name, value) in &request.headers {
            assert!(!value.contains(PROXY_KEY), "header {name}: {request:?}");
        }
    }
}

/// Starts a server with group `name` of `channel` on `mock`, holding one upstream key.
async fn group(mock: &MockUpstream, name: &str, channel: &str, key: &str) -> Server {
    let server = Server::start().await;
    let id = server
        .create_group(name, channel, &mock.url(), json!({}))
        .await;
    server.add_keys(id, &[key]).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_chat_completions_whole_and_streamed() {
    sdk_python().await;
    let mock = MockUpstream::start().await;
    let server = group(&mock, "oai", "openai", "sk-upstream-openai").await;

    let base_url = server.url("/proxy/oai/v1");
    let modes = ["chat", "chat-stream"];
    let results = run_sdk(&server, "openai_sdk.py", &base_url, &modes).await;
    let (whole, streamed) = (&results[0], &results[1]);
    assert_eq!(whole["text"], reply_text(CHUNKS), "{whole}");
    assert_eq!(whole["id"], "chatcmpl-mock");
    assert_eq!(whole["model"], "gpt-4o-mini");
    assert_eq!(streamed["pieces"], streamed_pieces(), "{streamed}");
    assert_eq!(streamed["finish_reason"], "stop");

    let sent = mock.requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for (request, stream) in sent.iter().zip([None, Some(true)]) {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(
            request.header_values("authorization").collect::<Vec<_>>(),
            ["Bearer sk-upstream-openai"]
        );
        assert_eq!(request.json()["stream"].as_bool(), stream, "{request:?}");
    }
    assert_proxy_key_not_forwarded(&sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_responses_whole_and_streamed() {
    sdk_python().await;
    let mock = MockUpstream::start().await;
    let server = group(&mock, "resp", "openai-response", "sk-upstream-resp").await;

    let base_url = server.url("/proxy/resp/v1");
    let modes = ["responses", "responses-stream"];
    let results = run_sdk(&server, "openai_sdk.py", &base_url, &modes).await;
    let (whole, streamed) = (&results[0], &results[1]);
    assert_eq!(whole["text"], reply_text(CHUNKS), "{whole}");
    assert_eq!(whole["id"], "resp_mock");
    assert_eq!(whole["status"], "completed");
    assert_eq!(streamed["pieces"], streamed_pieces(), "{streamed}");
    assert_eq!(streamed["final"], reply_text(CHUNKS));
    let events = streamed["events"].as_array().expect("events");
    assert_eq!(events.first(), Some(&json!("response.created")));
    assert_eq!(events.last(), Some(&json!("response.completed")));

    let sent = mock.requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for (request, stream) in sent.iter().zip([None, Some(true)]) {
        assert_eq!(request.path, "/v1/responses");
        assert_eq!(
            request.header_values("authorization").collect::<Vec<_>>(),
            ["Bearer sk-upstream-resp"]
        );
        assert_eq!(request.json()["stream"].as_bool(), stream, "{request:?}");
    }
    assert_proxy_key_not_forwarded(&sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_messages_whole_streamed_and_stream_helper() {
    sdk_python().await;
    let mock = MockUpstream::start().await;
    let server = group(&mock, "claude", "anthropic", "sk-ant-upstream").await;

    let base_url = server.url("/proxy/claude");
    let modes = ["create", "create-stream", "stream"];
    let results = run_sdk(&server, "anthropic_sdk.py", &base_url, &modes).await;
    let (whole, streamed, helper) = (&results[0], &results[1], &results[2]);
    assert_eq!(whole["text"], reply_text(CHUNKS), "{whole}");
    assert_eq!(whole["id"], "msg_mock");
    assert_eq!(whole["stop_reason"], "end_turn");
    assert_eq!(streamed["pieces"], streamed_pieces(), "{streamed}");
    let events = streamed["events"].as_array().expect("events");
    assert_eq!(events.first(), Some(&json!("message_start")));
    assert_eq!(events.last(), Some(&json!("message_stop")));
    assert_eq!(helper["pieces"], streamed_pieces(), "{helper}");
    assert_eq!(helper["final"], reply_text(CHUNKS));
    assert_eq!(helper["stop_reason"], "end_turn");

    let sent = mock.requests();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    for (request, stream) in sent.iter().zip([None, Some(true), Some(true)]) {
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(
            request.header_values("x-api-key").collect::<Vec<_>>(),
            ["sk-ant-upstream"]
        );
        assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.json()["stream"].as_bool(), stream, "{request:?}");
    }
    assert_proxy_key_not_forwarded(&sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_genai_sdk_generate_content_whole_and_streamed() {
    sdk_python().await;
    let mock = MockUpstream::start().await;
    let server = group(&mock, "gem", "gemini", "AIza-upstream-gemini").await;

    let base_url = server.url("/proxy/gem");
    let modes = ["generate", "generate-stream"];
    let results = run_sdk(&server, "genai_sdk.py", &base_url, &modes).await;
    let (whole, streamed) = (&results[0], &results[1]);
    assert_eq!(whole["text"], reply_text(CHUNKS), "{whole}");
    assert_eq!(whole["model_version"], "gemini-2.0-flash");
    assert_eq!(streamed["pieces"], streamed_pieces(), "{streamed}");
    assert_eq!(streamed["finish_reason"], "STOP");

    let sent = mock.requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    // google-genai 3.x defaults to `api_version="v1"`; the proxy passes the version through.
    let model = "/v1/models/gemini-2.0-flash";
    assert_eq!(sent[0].path_only(), format!("{model}:generateContent"));
    assert_eq!(
        sent[1].path_only(),
        format!("{model}:streamGenerateContent")
    );
    assert_eq!(sent[1].query("alt").as_deref(), Some("sse"));
    for request in &sent {
        // The SDK authenticates with `x-goog-api-key`; the channel moves the key to `?key=`.
        assert_eq!(
            request.query("key").as_deref(),
            Some("AIza-upstream-gemini"),
            "{request:?}"
        );
        assert_eq!(request.header("x-goog-api-key"), None);
        assert_eq!(request.header("authorization"), None);
    }
    assert_proxy_key_not_forwarded(&sent);
}
