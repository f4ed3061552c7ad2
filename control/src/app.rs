//! Startup and shutdown: environment → store → settings → model → engine → control API, and
//! back down in reverse on SIGINT/SIGTERM with requests in flight finished and logs flushed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine::{EngineConfig, EngineHandle, EventSink};
use store::{SettingRow, Store};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::encryption::KeyCipher;
use crate::logs::LogWriter;
use crate::settings::{SETTINGS, SystemSettings};
use crate::state::{Model, resolve};

/// Events the shards may queue before new ones are counted as dropped (~100 MB worst case).
const EVENT_QUEUE: usize = 100_000;
/// How long an admin change waits for every shard to run the new snapshot before replying.
const PUBLISH_WAIT: Duration = Duration::from_secs(1);
/// How often upstream host names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// Keys read per query when the model is first built.
const KEY_LOAD_BATCH: usize = 10_000;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub model: Mutex<Model>,
    pub engine: EngineHandle,
    pub started: Instant,
    /// `request_log_write_interval_minutes`, read by the log writer on every tick.
    pub log_interval: Arc<AtomicU64>,
    /// The one background task slot (import, delete, validation).
    pub tasks: Arc<crate::tasks::Tasks>,
    /// ENCRYPTION_KEY, derived once: encrypts, decrypts and hashes upstream keys.
    pub cipher: KeyCipher,
    /// The way to the engine's validation route (validation requests use its upstream client).
    pub validation: crate::validation::Bridge,
}

impl App {
    /// Builds a snapshot from `model` and sends it to every shard; returns once all of them run
    /// it (or after a second), so the caller's next proxy request sees the change.
    pub async fn publish(&self, model: &mut Model) {
        for (host, port) in model.unresolved_hosts() {
            let addrs = resolve(&host, port).await;
            model.resolved.insert((host, port), addrs);
        }
        let snapshot = model.snapshot();
        let version = snapshot.version;
        self.engine.publish(snapshot);
        let deadline = Instant::now() + PUBLISH_WAIT;
        while !self.engine.applied(version) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Settings the control plane itself reads.
    pub fn apply_settings(&self, settings: &SystemSettings) {
        self.log_interval.store(
            settings.int("request_log_write_interval_minutes").max(0) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Runs the server until a shutdown signal.
pub async fn run(config: Config) -> Result<(), String> {
    for warning in crate::encryption::strength_warnings("AUTH_KEY", &config.auth_key) {
        tracing::warn!("{warning}");
    }
    refuse_unbuilt_features(&config)?;
    if !config.encryption_key.is_empty() {
        for warning in
            crate::encryption::strength_warnings("ENCRYPTION_KEY", &config.encryption_key)
        {
            tracing::warn!("{warning}");
        }
    }
    let cipher = KeyCipher::new(&config.encryption_key);
    let store = Store::open(&config.database_dsn)
        .await
        .map_err(|e| e.to_string())?;
    crate::encryption::warn_on_mismatch(&store, &cipher).await;
    seed_settings(&store, &config).await?;
    let settings = load_settings(&store)
        .await?
        .with_env_proxy(config.env_proxy.clone());
    let groups = store.list_groups().await.map_err(|e| e.to_string())?;
    let sub_groups = store.list_sub_groups().await.map_err(|e| e.to_string())?;
    let group_count = groups.len();
    let mut model = Model::new(settings.clone(), groups, sub_groups, cipher.clone());
    // In batches, as v1 loads them: a million keys never sit in memory as rows all at once,
    // only as the slots built from them.
    let (mut loaded, mut after) = (0, i64::MIN);
    loop {
        let batch = store
            .all_keys_after(after, KEY_LOAD_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for key in &batch {
            model.add_key(key);
        }
        loaded += batch.len();
        match batch.last() {
            Some(last) if batch.len() == KEY_LOAD_BATCH => after = last.id,
            _ => break,
        }
    }
    tracing::info!(
        groups = group_count,
        keys = loaded,
        "loaded groups and keys"
    );
    for (host, port) in model.unresolved_hosts() {
        let addrs = resolve(&host, port).await;
        model.resolved.insert((host, port), addrs);
    }
    let snapshot = model.snapshot();

    let socket = control_socket_path();
    let _ = std::fs::remove_file(&socket);
    // Bound here, not when the server task first runs: once "listening" is logged, the shards
    // must be able to relay admin requests to the socket.
    let unix = poem::listener::UnixListener::bind(socket.clone());
    let listener = poem::listener::Listener::into_acceptor(unix)
        .await
        .map_err(|e| format!("control socket {}: {e}", socket.display()))?;
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    let internal_secret = crate::validation::new_secret();
    let engine = engine::start(
        engine_config(&config, socket.clone(), internal_secret.clone()),
        snapshot,
        EventSink::new(events_tx, EVENT_QUEUE, wake_tx),
    )
    .map_err(|e| format!("engine: {e}"))?;
    if engine.drivers.contains(&"epoll") {
        tracing::warn!(
            "io_uring is unavailable here (kernel, seccomp or memlock limits); the engine runs on epoll"
        );
    }
    let validation = crate::validation::Bridge::new(config.listen, internal_secret);
    let app = Arc::new(App {
        config,
        store: store.clone(),
        model: Mutex::new(model),
        engine,
        started: Instant::now(),
        log_interval: Arc::new(AtomicU64::new(1)),
        tasks: Arc::new(crate::tasks::Tasks::default()),
        cipher: cipher.clone(),
        validation,
    });
    app.apply_settings(&settings);
    let (blacklisted_tx, blacklisted_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = LogWriter::start(
        events_rx,
        wake_rx,
        store,
        app.log_interval.clone(),
        blacklisted_tx,
        cipher,
    );
    tokio::spawn(rebuild_rings(app.clone(), blacklisted_rx));
    tokio::spawn(refresh_dns(app.clone()));
    tokio::spawn(crate::validation::recheck_loop(app.clone()));
    tokio::spawn(crate::logs::retention::run(app.clone()));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = poem::Server::new_with_acceptor(listener).run_with_graceful_shutdown(
        crate::api::routes(app.clone()),
        async {
            let _ = stop_rx.await;
        },
        Some(Duration::from_secs(2)),
    );
    let server = tokio::spawn(server);
    // Installed before "listening" is logged: a SIGTERM sent the moment a supervisor (or a
    // test) sees that line must reach our graceful shutdown, not the default handler.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    tracing::info!(
        "gpt-load listening on {} with {} shards ({}), database {}",
        app.config.listen,
        app.engine.drivers.len(),
        app.engine.drivers.join(", "),
        store_kind(&app.config.database_dsn),
    );
    wait_for_signal(term).await;
    let engine_app = app.clone();
    let _ = tokio::task::spawn_blocking(move || engine_app.engine.stop_accepting()).await;
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let grace = app.config.graceful_shutdown_timeout;
    let engine_app = app.clone();
    let _ = tokio::task::spawn_blocking(move || engine_app.engine.shutdown(grace)).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    let _ = std::fs::remove_file(&socket);
    let dropped = app.engine.events.dropped();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "log records dropped because the writer fell behind"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Settings whose behaviour is not built yet: starting anyway would do the wrong thing with the
/// user's data (run a second master), so say so and stop.
fn refuse_unbuilt_features(config: &Config) -> Result<(), String> {
    if config.is_slave {
        return Err("IS_SLAVE=true: cluster mode is not supported by this build yet".into());
    }
    if !config.redis_dsn.is_empty() {
        tracing::warn!(
            "REDIS_DSN is set but cluster mode is not supported by this build yet; running as a single node"
        );
    }
    if config.enable_cors && config.allowed_origins.iter().any(|o| o == "*") {
        tracing::warn!("ALLOWED_ORIGINS=* lets any web page call this gateway from a browser");
    }
    Ok(())
}

fn store_kind(dsn: &str) -> &'static str {
    if dsn.starts_with("postgres") {
        "postgres"
    } else if dsn.contains("@tcp(") {
        "mysql"
    } else {
        "sqlite"
    }
}

fn engine_config(
    config: &Config,
    control_socket: std::path::PathBuf,
    internal_secret: String,
) -> EngineConfig {
    EngineConfig {
        threads: config.engine_threads,
        listen: config.listen,
        limits: engine::http::Limits::default(),
        max_body: config.max_body_bytes,
        max_admin_body: config.max_admin_body_bytes,
        read_timeout: config.read_timeout,
        write_timeout: config.write_timeout,
        idle_timeout: config.idle_timeout,
        shutdown_grace: config.graceful_shutdown_timeout,
        max_concurrent_requests: config.max_concurrent_requests,
        control_socket,
        extra_ca_file: std::env::var_os("SSL_CERT_FILE").map(Into::into),
        max_upstream_idle: Duration::from_secs(120),
        boot_id: boot_id(),
        trusted_proxies: config.trusted_proxies.clone(),
        cors: config.enable_cors.then(|| {
            std::sync::Arc::new(engine::cors::CorsConfig {
                origins: config.allowed_origins.clone(),
                methods: config.allowed_methods.clone(),
                headers: config.allowed_headers.clone(),
                credentials: config.allow_credentials,
            })
        }),
        internal_secret,
    }
}

fn boot_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

/// A private socket per process: the control plane is reachable only through the engine.
fn control_socket_path() -> std::path::PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("gpt-load-control-{}.sock", std::process::id()))
}

/// First start: every setting row with its default; `app_url` from HOST/PORT and `proxy_keys`
/// from AUTH_KEY, as v1 seeds them. Existing rows are left alone.
async fn seed_settings(store: &Store, config: &Config) -> Result<(), String> {
    let host = if config.host == "0.0.0.0" || config.host == "::" {
        "localhost"
    } else {
        config.host.as_str()
    };
    let rows = SETTINGS
        .iter()
        .map(|d| {
            let value = match d.key {
                "app_url" => format!("http://{host}:{}", config.port),
                "proxy_keys" => config.auth_key.clone(),
                _ => d.default.to_string(),
            };
            SettingRow {
                key: d.key.into(),
                value,
                description: d.description.into(),
            }
        })
        .collect();
    store.seed_settings(rows).await.map_err(|e| e.to_string())
}

async fn load_settings(store: &Store) -> Result<SystemSettings, String> {
    let rows = store.load_settings().await.map_err(|e| e.to_string())?;
    Ok(SystemSettings::from_rows(
        rows.iter().map(|r| (r.key.as_str(), r.value.as_str())),
    ))
}

/// Rebuilds the rings of groups whose keys were blacklisted (coalescing bursts).
async fn rebuild_rings(app: Arc<App>, mut groups: tokio::sync::mpsc::UnboundedReceiver<i64>) {
    while let Some(first) = groups.recv().await {
        let mut model = app.model.lock().await;
        model.touch_group(first);
        while let Ok(more) = groups.try_recv() {
            model.touch_group(more);
        }
        app.publish(&mut model).await;
    }
}

/// Re-resolves upstream hosts; a changed address rebuilds the groups.
async fn refresh_dns(app: Arc<App>) {
    loop {
        tokio::time::sleep(RESOLVE_EVERY).await;
        let hosts: Vec<(String, u16)> = app.model.lock().await.resolved.keys().cloned().collect();
        let mut fresh = Vec::with_capacity(hosts.len());
        for (host, port) in hosts {
            let addrs = resolve(&host, port).await;
            fresh.push(((host, port), addrs));
        }
        let mut model = app.model.lock().await;
        let mut changed = false;
        for (hp, addrs) in fresh {
            if !addrs.is_empty() && model.resolved.get(&hp) != Some(&addrs) {
                model.resolved.insert(hp, addrs);
                changed = true;
            }
        }
        if changed {
            model.touch_all();
            app.publish(&mut model).await;
        }
    }
}

async fn wait_for_signal(term: std::io::Result<tokio::signal::unix::Signal>) {
    let mut term = match term {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
