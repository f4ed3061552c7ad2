//! Test harness: starts the real `gpt-load` binary on a free loopback port with a fresh SQLite
//! file, waits for its "listening" line, and stops it with SIGTERM like an operator would.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

pub const AUTH_KEY: &str = "sk-test-admin-Zq8vN3kLp0Xw7Rt5";
pub const PROXY_KEY: &str = "sk-client-Hj4mW9qT2sLx8Vn6";

/// Bound on how long the server may take to start or stop; a failure, not a sleep.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Every line the server wrote to stderr so far.
    pub output: Arc<Mutex<Vec<String>>>,
    /// Woken on every new stderr line, for [`Server::wait_for_log`].
    new_line: Arc<Notify>,
    pub client: reqwest::Client,
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// Starts with extra environment variables on a new temporary directory.
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = Self::start_in(&dir, env).await;
        server._tmp = Some(tmp);
        server
    }

    /// Starts on `dir` (its `data/gpt-load.db`), e.g. again after a stop.
    pub async fn start_in(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt-load"));
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AUTH_KEY", AUTH_KEY)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ENGINE_THREADS", "2")
            .env("LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .env("XDG_RUNTIME_DIR", dir)
            .env("DATABASE_DSN", dir.join("data/gpt-load.db"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gpt-load");
        let stderr = child.stderr.take().expect("stderr");
        let output = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let (lines, notify) = (output.clone(), new_line.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("gpt-load listening") {
                    let _ = ready_tx.send(true);
                }
                lines.lock().unwrap().push(line);
                notify.notify_waiters();
            }
            let _ = ready_tx.send(false);
        });
        let ready = tokio::time::timeout(START_TIMEOUT, ready_rx.recv()).await;
        let client = reqwest::Client::builder().build().expect("client");
        let server = Server {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
            output,
            new_line,
            client,
        };
        match ready {
            Ok(Some(true)) => server,
            _ => panic!("gpt-load did not start:\n{}", server.logs()),
        }
    }

    pub fn logs(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle` (panics after START_TIMEOUT).
    pub async fn wait_for_log(&self, needle: &str) {
        let seen = async {
            loop {
                // Registered before the check, so a line pushed in between still wakes us.
                let notified = self.new_line.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self
                    .output
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains(needle))
                {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(START_TIMEOUT, seen).await.is_err() {
            panic!("no log line with '{needle}':\n{}", self.logs());
        }
    }

    /// Panics if the server's output contains any of `secrets` in full.
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        let logs = self.logs();
        for secret in secrets {
            assert!(
                !logs.contains(secret),
                "the log shows the secret '{secret}':\n{logs}"
            );
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("data/gpt-load.db")
    }

    /// An admin call with AUTH_KEY; returns (status, body as JSON or Null).
    /// `PUT /api/settings` with `settings`, which must be accepted.
    pub async fn set_settings(&self, settings: Value) {
        let (status, body) = self.api("PUT", "/api/settings", Some(settings)).await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(AUTH_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("admin body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a standard group on `upstream` with PROXY_KEY as its proxy key; returns its id.
    pub async fn create_group(
        &self,
        name: &str,
        channel: &str,
        upstream: &str,
        extra: Value,
    ) -> i64 {
        let mut body = json!({
            "name": name, "channel_type": channel, "test_model": "test-model",
            "upstreams": [{"url": upstream, "weight": 1}], "proxy_keys": PROXY_KEY,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, resp) = self.api("POST", "/api/groups", Some(body)).await;
        assert_eq!(status, 200, "create group: {resp}");
        resp["data"]["id"].as_i64().expect("group id")
    }

    /// Every key of a group as `GET /api/keys?group_id=` lists it (live status and failures).
    pub async fn list_keys(&self, group_id: i64) -> Vec<Value> {
        let path = format!("/api/keys?group_id={group_id}&page_size=1000");
        let (status, resp) = self.api("GET", &path, None).await;
        assert_eq!(status, 200, "list keys: {resp}");
        resp["data"]["items"]
            .as_array()
            .cloned()
            .expect("key items")
    }

    /// The listed entry of `key` in its group.
    pub async fn key_entry(&self, group_id: i64, key: &str) -> Value {
        let keys = self.list_keys(group_id).await;
        keys.into_iter()
            .find(|k| k["key_value"] == key)
            .unwrap_or_else(|| panic!("key {key} not listed in group {group_id}"))
    }

    pub async fn add_keys(&self, group_id: i64, keys: &[&str]) {
        let body = json!({"group_id": group_id, "keys_text": keys.join("\n")});
        let (status, resp) = self.api("POST", "/api/keys/add-multiple", Some(body)).await;
        assert_eq!(status, 200, "add keys: {resp}");
    }

    /// An admin call with AUTH_KEY and `body` sent as is (e.g. broken JSON).
    pub async fn api_text(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .client
            .request(method, self.url(path))
            .bearer_auth(AUTH_KEY)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("admin body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A proxy POST with PROXY_KEY as Bearer.
    pub async fn proxy_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.proxy_post_as(PROXY_KEY, path, body).await
    }

    /// A proxy POST with `key` as Bearer.
    pub async fn proxy_post_as(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("proxy request")
    }

    /// Sends SIGTERM and returns at once; see [`Server::wait_exit`].
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("server running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit (panics after START_TIMEOUT).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let pid = child.id() as i32;
        let exit = tokio::task::spawn_blocking(move || child.wait().expect("wait"));
        match tokio::time::timeout(START_TIMEOUT, exit).await {
            Ok(status) => status.expect("join"),
            Err(_) => {
                // SAFETY: kill(2) on our own child, which has not been reaped (wait is pending).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                panic!("gpt-load did not exit:\n{}", self.logs())
            }
        }
    }

    /// SIGTERM, then waits for the exit (graceful shutdown flushes the logs).
    pub async fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait_exit().await
    }

    /// Opens the server's SQLite database (after `stop`, or read-only while it runs).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends raw bytes on a new connection and returns everything read until the server closes
/// the connection or `limit` elapses.
pub async fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Like [`raw_exchange`], and also says whether the server closed the connection (EOF or reset)
/// within `limit`, rather than the wait running out.
pub async fn raw_exchange_closed(port: u16, bytes: &[u8], limit: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// A minimal OpenAI chat completion body.
pub fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

/// The chat completions path of `group` through the proxy.
pub fn chat_path(group: &str) -> String {
    format!("/proxy/{group}/v1/chat/completions")
}

/// Bound on every wait for the server or the mock; a failure, never a pause.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` every 50 ms until it holds (panics after WAIT).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}
