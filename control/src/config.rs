//! Process configuration from the environment (spec §5.1), read once at start. `.env` in the
//! working directory is loaded first when present, as GPT-Load does. Every error names the
//! variable, the value and what is expected.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// DATABASE_DSN when unset: v1's SQLite file.
pub const DEFAULT_DATABASE_DSN: &str = "./data/gpt-load.db";

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub host: String,
    pub listen: SocketAddr,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub is_slave: bool,
    pub auth_key: String,
    pub encryption_key: String,
    pub database_dsn: String,
    pub redis_dsn: String,
    pub max_concurrent_requests: usize,
    pub enable_cors: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: String,
    pub allowed_headers: String,
    pub allow_credentials: bool,
    pub log_level: String,
    pub log_format: String,
    pub log_enable_file: bool,
    pub log_file_path: String,
    /// ENGINE_THREADS: shards; default the available cores.
    pub engine_threads: usize,
    /// MAX_REQUEST_BODY_MB: largest proxied request body.
    pub max_body_bytes: u64,
    /// MAX_ADMIN_BODY_MB: largest admin request body (key imports).
    pub max_admin_body_bytes: u64,
    /// TRUSTED_PROXIES: whose X-Forwarded-For is believed (default loopback).
    pub trusted_proxies: Vec<engine::client_ip::Cidr>,
    /// HTTP_PROXY/HTTPS_PROXY/NO_PROXY (or lower case): the outbound proxy of groups without a
    /// `proxy_url` setting.
    pub env_proxy: Option<std::sync::Arc<engine::upstream::OutboundProxy>>,
    /// KEY_VALIDATION_TICK_SECONDS: how often the re-check of invalid keys looks for groups
    /// that are due (v1: every 5 minutes, and at start).
    pub key_validation_tick: Duration,
}

/// Reads the environment through `get` (the process environment in production, a map in tests).
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let text = |name: &str, default: &str| {
        get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let int = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, String> {
        let raw = text(name, &default.to_string());
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{name}='{raw}': expected a whole number from {min} to {max}"
            )),
        }
    };
    let flag = |name: &str, default: bool| -> Result<bool, String> {
        match text(name, if default { "true" } else { "false" })
            .to_ascii_lowercase()
            .as_str()
        {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(format!("{name}='{other}': expected true or false")),
        }
    };
    let secs =
        |name: &str, default: u64| int(name, default, 1, 365 * 24 * 3600).map(Duration::from_secs);

    let auth_key = text("AUTH_KEY", "");
    if auth_key.is_empty() {
        return Err("AUTH_KEY is required: set it in the environment or in .env (it is the admin password and the first proxy key)".into());
    }
    let port = int("PORT", 3001, 1, 65535)? as u16;
    let host = text("HOST", "0.0.0.0");
    let listen = resolve_listen(&host, port)?;
    let enable_cors = flag("ENABLE_CORS", false)?;
    let allowed_origins: Vec<String> = crate::settings::split_list(&text("ALLOWED_ORIGINS", ""));
    if enable_cors && allowed_origins.is_empty() {
        return Err(
            "ENABLE_CORS=true needs ALLOWED_ORIGINS (a comma list of origins, or *)".into(),
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let log_format = text("LOG_FORMAT", "text");
    if log_format != "text" && log_format != "json" {
        return Err(format!("LOG_FORMAT='{log_format}': expected text or json"));
    }
    Ok(Config {
        port,
        listen,
        host,
        read_timeout: secs("SERVER_READ_TIMEOUT", 60)?,
        write_timeout: secs("SERVER_WRITE_TIMEOUT", 600)?,
        idle_timeout: secs("SERVER_IDLE_TIMEOUT", 120)?,
        // v1 forces values below 10 s up to 10 s.
        graceful_shutdown_timeout: Duration::from_secs(
            int("SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", 10, 0, 3600)?.max(10),
        ),
        is_slave: flag("IS_SLAVE", false)?,
        auth_key,
        encryption_key: text("ENCRYPTION_KEY", ""),
        database_dsn: text("DATABASE_DSN", DEFAULT_DATABASE_DSN),
        redis_dsn: text("REDIS_DSN", ""),
        max_concurrent_requests: int("MAX_CONCURRENT_REQUESTS", 100, 1, 10_000_000)? as usize,
        enable_cors,
        allowed_origins,
        allowed_methods: text("ALLOWED_METHODS", "GET,POST,PUT,DELETE,OPTIONS"),
        allowed_headers: text("ALLOWED_HEADERS", "*"),
        allow_credentials: flag("ALLOW_CREDENTIALS", false)?,
        log_level: text("LOG_LEVEL", "info"),
        log_format,
        log_enable_file: flag("LOG_ENABLE_FILE", false)?,
        log_file_path: text("LOG_FILE_PATH", "./data/logs/app.log"),
        engine_threads: int("ENGINE_THREADS", cores as u64, 1, 1024)? as usize,
        max_body_bytes: int("MAX_REQUEST_BODY_MB", 32, 1, 4096)? * 1024 * 1024,
        max_admin_body_bytes: int("MAX_ADMIN_BODY_MB", 512, 1, 4096)? * 1024 * 1024,
        trusted_proxies: trusted_proxies(get("TRUSTED_PROXIES"))?,
        env_proxy: engine::upstream::OutboundProxy::from_env(&get)?.map(std::sync::Arc::new),
        key_validation_tick: secs("KEY_VALIDATION_TICK_SECONDS", 300)?,
    })
}

/// A comma list of addresses and CIDR ranges; unset means loopback only, empty means nobody.
fn trusted_proxies(raw: Option<String>) -> Result<Vec<engine::client_ip::Cidr>, String> {
    let Some(raw) = raw else {
        return Ok(engine::client_ip::default_trusted());
    };
    crate::settings::split_list(&raw)
        .iter()
        .map(|entry| {
            engine::client_ip::Cidr::parse(entry).map_err(|e| format!("TRUSTED_PROXIES: {e}"))
        })
        .collect()
}

fn resolve_listen(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("HOST='{host}': not an IP address or a resolvable name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn v1_defaults() {
        let c = from_env(env(&[("AUTH_KEY", "k")])).unwrap();
        assert_eq!(c.port, 3001);
        assert_eq!(c.listen.to_string(), "0.0.0.0:3001");
        assert_eq!(c.database_dsn, "./data/gpt-load.db");
        assert_eq!(c.read_timeout, Duration::from_secs(60));
        assert_eq!(c.write_timeout, Duration::from_secs(600));
        assert_eq!(c.graceful_shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.max_concurrent_requests, 100);
        assert!(c.engine_threads >= 1);
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(from_env(env(&[])).unwrap_err().contains("AUTH_KEY"));
        let e = from_env(env(&[
            ("AUTH_KEY", "k"),
            ("https_proxy", "gopher://u:pw@h"),
        ]))
        .unwrap_err();
        assert!(e.starts_with("https_proxy: ") && !e.contains("pw@"), "{e}");
        let c = from_env(env(&[("AUTH_KEY", "k"), ("HTTP_PROXY", "proxy.lan:3128")])).unwrap();
        assert!(c.env_proxy.is_some());
        assert!(
            from_env(env(&[("AUTH_KEY", "k")]))
                .unwrap()
                .env_proxy
                .is_none()
        );
        assert!(
            from_env(env(&[("AUTH_KEY", "k"), ("PORT", "70000")]))
                .unwrap_err()
                .contains("PORT='70000'")
        );
        assert!(
            from_env(env(&[("AUTH_KEY", "k"), ("ENABLE_CORS", "true")]))
                .unwrap_err()
                .contains("ALLOWED_ORIGINS")
        );
        assert!(
            from_env(env(&[("AUTH_KEY", "k"), ("IS_SLAVE", "maybe")]))
                .unwrap_err()
                .contains("IS_SLAVE")
        );
        let c = from_env(env(&[
            ("AUTH_KEY", "k"),
            ("SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", "3"),
        ]))
        .unwrap();
        assert_eq!(c.graceful_shutdown_timeout, Duration::from_secs(10));
    }
}
