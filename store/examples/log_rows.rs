//! Writes request log rows the way the log writer does (batches of 2,000, one transaction
//! each) into a fresh SQLite database, to measure what one row costs the store:
//!
//!     cargo run --release -p store --example log_rows -- [rows=100000] [dir]
//!
//! `LOG_ROWS_SQL`, if set, is run on the fresh database first (to try a schema change).
//!
//! Under `valgrind --tool=callgrind --toggle-collect='store::sqlite::logs::write_batch'` the
//! instruction count per row is exact and repeatable whatever else the machine is doing
//! (bench/log-rows.sh does that); the wall time it prints is only a rough guide.

use std::time::Instant;

use chrono::{TimeZone, Utc};
use store::{FlushBatch, LogRow, Store};

const BATCH: usize = 2000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = match args.next() {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("log-rows-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("gpt-load.db");
    let store = Store::open(&path.to_string_lossy()).await?;
    // For trying a schema change before making it: SQL run on the fresh database first.
    if let Ok(sql) = std::env::var("LOG_ROWS_SQL") {
        rusqlite::Connection::open(&path)?.execute_batch(&sql)?;
    }
    let started = Instant::now();
    let mut written = 0;
    while written < rows {
        let logs = (written..(written + BATCH).min(rows)).map(row).collect();
        let batch = FlushBatch {
            logs,
            key_states: Vec::new(),
            key_usage: Vec::new(),
        };
        store.write_batch_blocking(&batch)?;
        written += batch.logs.len();
    }
    let elapsed = started.elapsed();
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{rows} rows in {:.2} s: {:.2} µs/row wall, {} bytes/row on disk",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / rows as f64,
        size / rows as u64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The `n`th row of a run at 30,000 requests/s through two keys: a successful final attempt,
/// with the lengths a proxied chat completion gives each column.
fn row(n: usize) -> LogRow {
    let millis = 1_764_758_400_000 + (n / 30) as i64;
    let key = n % 2;
    LogRow {
        id: format!(
            "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
            millis >> 16,
            millis & 0xffff,
            n & 0xfff,
            (n >> 12) & 0xfff,
            (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_ffff
        ),
        timestamp: Utc
            .timestamp_millis_opt(millis)
            .single()
            .unwrap_or_default(),
        group_id: 1,
        group_name: "bench".into(),
        parent_group_id: 0,
        parent_group_name: String::new(),
        key_value: format!("sk-upstream-{key}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        key_hash: format!("{key:x}").repeat(64),
        model: "gpt-4o-mini".into(),
        is_success: true,
        source_ip: "127.0.0.1".into(),
        status_code: 200,
        request_path: "/proxy/bench/v1/chat/completions".into(),
        duration_ms: 1,
        error_message: String::new(),
        user_agent: String::new(),
        request_type: "final".into(),
        upstream_addr: "http://127.0.0.1:19290/v1/chat/completions".into(),
        is_stream: false,
        request_body: String::new(),
        request_id: format!("{:012x}{:08x}", 0x1234_5678_9abc_u64, n),
    }
}
