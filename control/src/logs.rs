//! The log pipeline: drains attempt records and key-health changes from the shards, batches
//! them and writes each batch in one transaction (request logs, per-key request counts, hourly
//! stats, key states). Runs on its own threads so a slow disk never touches the request path.
//!
//! Two threads take turns at the one writer. `log-writer` does the work as long as it keeps
//! up, at the lowest priority a thread can take and give back (nice 19), so that on a core it
//! shares with a shard it runs in the shard's idle time and gives way the moment a request
//! arrives. `log-catchup` (nice 3) takes over only when records queue up, which happens when
//! the shard leaves no idle time: then logging needs its share of the core (see
//! [`Priority`]).
//!
//! `request_log_write_interval_minutes = 0` is v1's "write in real time": a record is written
//! as soon as the writer wakes for it, which is at once (it blocks on the queue), so a log row
//! is in the database one SQLite transaction (milliseconds) after its attempt ends. Unlike v1
//! it is not written before the client's response completes: the request path never waits for
//! the disk. [`retention`] prunes old rows.

pub mod retention;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use engine::events::{AttemptLog, Event, KeyHealth, TextField};
use engine::keys::KeySlot;
use engine::snapshot::LookupMap;
use store::{FlushBatch, KeyStateUpdate, KeyUsage, LogRow, Store};
use tokio::sync::mpsc::UnboundedSender;

use crate::encryption::KeyCipher;

/// A batch is written once it holds this many records, whatever the interval.
const MAX_BATCH: usize = 2000;
/// The same for `log-writer`, whose batches are smaller: the catch-up thread waits for the
/// batch in hand, and at nice 19 beside a busy shard (1.4% of the core) a 2,000-row batch
/// (~10 ms of work) could take it most of a second; 512 rows, a fifth of that.
const BACKGROUND_BATCH: usize = 512;
/// Records queued before `log-catchup` takes over: ~70 ms of requests at full load, a few KiB
/// each.
const CATCH_UP_AT: usize = 4096;
/// Records still queued when `log-catchup` has caught up.
const CAUGHT_UP_BELOW: usize = 256;
/// Records a tick may bring (~20,000 a second) for `log-catchup` to hand back to `log-writer`.
const RELEASE_BELOW: usize = 1024;
/// Pending records kept through database errors before the oldest are dropped (with a warning).
const MAX_PENDING: usize = 200_000;
/// Keys whose usage is held before it is written regardless of the interval (~30 MB).
const MAX_USAGE_KEYS: usize = 1_000_000;
/// How often the writer wakes up to check the interval and shutdown.
const TICK: Duration = Duration::from_millis(50);
/// How long records may wait in a queue `log-writer` never empties before `log-catchup` writes
/// them however few they are: on a machine busy with other work a nice-19 thread can wait
/// seconds for the core, and a key's blacklisting or a log row should not.
const STARVED_AFTER: Duration = Duration::from_millis(200);

pub struct LogWriter {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl LogWriter {
    /// `interval_minutes` is `request_log_write_interval_minutes`, re-read every tick; blacklisted
    /// keys' group ids go to `blacklisted` so their rings get rebuilt; `cipher` encrypts each
    /// log's key as `api_keys` stores it.
    pub fn start(
        events: Receiver<Event>,
        wake: Receiver<()>,
        store: Store,
        interval_minutes: Arc<AtomicU64>,
        blacklisted: UnboundedSender<i64>,
        cipher: KeyCipher,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let queue = events.clone();
        let writer = Writer::new(
            events,
            wake,
            store,
            interval_minutes,
            blacklisted,
            cipher,
            stop.clone(),
        );
        let wanted = writer.give_way.clone();
        let starvation = Starvation::new(writer.emptied.clone(), Instant::now());
        let writer = Arc::new(Mutex::new(writer));
        let mut threads = Vec::new();
        let background = writer.clone();
        match std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || run_in_background(&background))
        {
            Ok(thread) => threads.push(thread),
            Err(e) => tracing::error!(error = %e, "cannot start the request log writer"),
        }
        let catch_up_stop = stop.clone();
        match std::thread::Builder::new()
            .name("log-catchup".into())
            .spawn(move || catch_up(&writer, &queue, &wanted, &catch_up_stop, starvation))
        {
            Ok(thread) => threads.push(thread),
            // `log-writer` alone still writes everything, at its own pace.
            Err(e) => tracing::warn!(error = %e, "cannot start the request log catch-up thread"),
        }
        Self { threads, stop }
    }

    /// Writes everything still queued and stops.
    pub fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in &self.threads {
            thread.thread().unpark();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The writer, whichever thread holds it. A thread that panicked while holding it left it as
/// it was between two records, which is still worth writing.
fn hold(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `log-writer`: waits for records or the tick without holding the writer, then takes what is
/// queued and writes what is due. It alone finishes: at shutdown or when the shards are gone
/// it writes everything left.
fn run_in_background(writer: &Mutex<Writer>) {
    Priority::Background.apply();
    let (events, wake, interval_minutes, stop) = {
        let w = hold(writer);
        (
            w.events.clone(),
            w.wake.clone(),
            w.interval_minutes.clone(),
            w.stop.clone(),
        )
    };
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut first = None;
        let mut disconnected = false;
        if events.is_empty() {
            if interval_minutes.load(Ordering::Relaxed) == 0 {
                // Real time: wake for the first record.
                match events.recv_timeout(TICK) {
                    Ok(event) => first = Some(event),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            } else {
                // Wait for the tick or a key's health change, not on the queue: a shard
                // sending to a waiting receiver must wake it, a syscall on the request path
                // for every record.
                let _ = wake.recv_timeout(TICK);
            }
        }
        let mut w = hold(writer);
        if let Some(event) = first {
            w.take(event);
        }
        if disconnected || stopping || w.work(Priority::Background) == Queue::Disconnected {
            w.finish();
            // Also ends `log-catchup` when the shards went first.
            stop.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// `log-catchup`: every tick, if records have queued up (`log-writer` is behind) or have waited
/// too long (`log-writer` is starved), takes the writer and writes until the queue is short
/// again. Leaves the end to `log-writer`.
fn catch_up(
    writer: &Mutex<Writer>,
    queue: &Receiver<Event>,
    wanted: &AtomicBool,
    stop: &AtomicBool,
    mut starvation: Starvation,
) {
    Priority::CatchUp.apply();
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(TICK);
        let starved = starvation.starved(queue.is_empty(), Instant::now());
        if catch_up_once(writer, queue, wanted, stop, starved) == Some(Queue::Disconnected) {
            return;
        }
    }
}

/// Whether `log-writer` is starved: the queue has not been seen empty, by either thread, for
/// [`STARVED_AFTER`]. A writer that keeps up empties it between records; one that is only
/// behind is caught by the queue's length instead.
struct Starvation {
    /// How many times `log-writer` found the queue empty ([`Writer::emptied`]).
    emptied: Arc<AtomicU64>,
    seen: u64,
    last_empty: Instant,
}

impl Starvation {
    fn new(emptied: Arc<AtomicU64>, now: Instant) -> Self {
        let seen = emptied.load(Ordering::Relaxed);
        Self {
            emptied,
            seen,
            last_empty: now,
        }
    }

    fn starved(&mut self, queue_empty: bool, now: Instant) -> bool {
        let emptied = self.emptied.load(Ordering::Relaxed);
        if queue_empty || emptied != self.seen {
            self.seen = emptied;
            self.last_empty = now;
        }
        now.duration_since(self.last_empty) >= STARVED_AFTER
    }
}

/// If records have queued up, or `starved`, takes the writer and keeps it, writing full
/// batches each tick as a lone writer would, until a tick brings fewer records than
/// [`RELEASE_BELOW`]; `None` when there was nothing to catch up. Handing back as soon as the
/// queue is short would leave the writer starved again at once under full load, and its share
/// of the core with it: at 74,000 requests/s it then fell 100,000 records behind in ten
/// seconds.
///
/// `log-writer`, starved at nice 19, may hold the writer in the middle of a batch that would
/// take it most of a second to finish: `wanted` asks it to give way at its next statement
/// (undoing the batch's inserts and keeping its records for the next flush).
fn catch_up_once(
    writer: &Mutex<Writer>,
    queue: &Receiver<Event>,
    wanted: &AtomicBool,
    stop: &AtomicBool,
    starved: bool,
) -> Option<Queue> {
    let queued = queue.len();
    if queued < CATCH_UP_AT && !starved {
        return None;
    }
    tracing::debug!(queued, starved, "log-catchup takes the writer");
    wanted.store(true, Ordering::SeqCst);
    let mut w = hold(writer);
    wanted.store(false, Ordering::SeqCst);
    let mut arrived = queued;
    // A starved writer's queue may be shorter than a batch: take it at least once.
    if w.work(Priority::CatchUp) == Queue::Disconnected {
        return Some(Queue::Disconnected);
    }
    loop {
        while queue.len() >= CAUGHT_UP_BELOW && !stop.load(Ordering::SeqCst) {
            if w.work(Priority::CatchUp) == Queue::Disconnected {
                return Some(Queue::Disconnected);
            }
        }
        if arrived < RELEASE_BELOW || stop.load(Ordering::SeqCst) {
            return Some(Queue::Open);
        }
        std::thread::park_timeout(TICK);
        arrived = queue.len();
    }
}

/// Whether the shards' side of the queue is still there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Queue {
    Open,
    Disconnected,
}

struct Writer {
    events: Receiver<Event>,
    /// Rung by the shards when a key's health changed (see `EventSink`).
    wake: Receiver<()>,
    store: Store,
    interval_minutes: Arc<AtomicU64>,
    blacklisted: UnboundedSender<i64>,
    cipher: KeyCipher,
    stop: Arc<AtomicBool>,
    /// Set by `log-catchup` while it waits for the writer: `log-writer` then stops where it is.
    give_way: Arc<AtomicBool>,
    /// Times the queue was found empty, for `log-catchup` to tell a starved writer (see
    /// [`Starvation`]).
    emptied: Arc<AtomicU64>,
    logs: Vec<LogRow>,
    /// Rows already written, kept to be filled again (see [`Writer::recycle`]).
    spare_rows: Vec<LogRow>,
    ids: LogIds,
    logged_keys: LoggedKeys,
    /// Successful requests per key id and the latest time, since usage was last written.
    key_usage: LookupMap<i64, (i64, chrono::DateTime<chrono::Utc>)>,
    last_usage_flush: Instant,
    /// Latest state per key: later changes of the same key supersede earlier ones.
    key_states: HashMap<i64, KeyStateUpdate>,
    last_flush: Instant,
    pace: Pace,
}

impl Writer {
    fn new(
        events: Receiver<Event>,
        wake: Receiver<()>,
        store: Store,
        interval_minutes: Arc<AtomicU64>,
        blacklisted: UnboundedSender<i64>,
        cipher: KeyCipher,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            events,
            wake,
            store,
            interval_minutes,
            blacklisted,
            cipher,
            stop,
            give_way: Arc::new(AtomicBool::new(false)),
            emptied: Arc::new(AtomicU64::new(0)),
            logs: Vec::new(),
            spare_rows: Vec::new(),
            ids: LogIds::new(),
            logged_keys: LoggedKeys::default(),
            key_states: HashMap::new(),
            key_usage: LookupMap::default(),
            last_usage_flush: Instant::now(),
            last_flush: Instant::now(),
            pace: Pace::new(),
        }
    }

    /// Takes what is queued, up to a batch of records, and writes if a batch is due; the
    /// background thread stops short when `log-catchup` asks for the writer.
    fn work(&mut self, thread: Priority) -> Queue {
        let batch = thread.batch();
        let mut queue = Queue::Open;
        loop {
            if self.asked_to_give_way(thread) {
                return queue;
            }
            match self.events.try_recv() {
                Ok(event) => {
                    self.take(event);
                    self.pace.offer();
                    if self.logs.len() >= batch {
                        break;
                    }
                }
                Err(TryRecvError::Empty) => {
                    self.emptied.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    queue = Queue::Disconnected;
                    break;
                }
            }
        }
        if self.due(batch) {
            self.flush(false, thread);
        }
        queue
    }

    fn asked_to_give_way(&self, thread: Priority) -> bool {
        matches!(thread, Priority::Background) && self.give_way.load(Ordering::Relaxed)
    }

    /// Takes and writes everything still queued.
    fn finish(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.take(event);
        }
        self.flush(true, Priority::CatchUp);
    }

    fn take(&mut self, event: Event) {
        match event {
            Event::Attempt(log) => {
                if let (true, Some(key)) = (log.is_success, &log.key) {
                    let used = self.key_usage.entry(key.id()).or_insert((0, log.timestamp));
                    used.0 += 1;
                    used.1 = used.1.max(log.timestamp);
                }
                if cfg!(feature = "bench-no-log-rows") {
                    return;
                }
                let mut row = self.spare_rows.pop().unwrap_or_default();
                let millis = log.timestamp.timestamp_millis().max(0) as u64;
                self.ids.write_next(millis, &mut row.id);
                let key = log
                    .key
                    .as_ref()
                    .map(|k| self.logged_keys.get(k, &self.cipher));
                fill_log_row(&mut row, key, &log);
                self.logs.push(row);
            }
            Event::Key(health) => self.key_health(health),
        }
    }

    fn key_health(&mut self, health: KeyHealth) {
        if health.blacklisted {
            let _ = self.blacklisted.send(health.group_id);
        }
        let status = if health.active { "active" } else { "invalid" };
        self.key_states.insert(
            health.key_id,
            KeyStateUpdate {
                key_id: health.key_id,
                failure_count: health.failure_count as i64,
                status: status.into(),
            },
        );
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_minutes.load(Ordering::Relaxed) * 60)
    }

    /// Key states are written at once (they are few and matter); logs per the interval, which
    /// for 0 means on every wake-up.
    fn due(&self, batch: usize) -> bool {
        if !self.key_states.is_empty() || self.logs.len() >= batch {
            return true;
        }
        let interval = self.interval();
        (!self.logs.is_empty() && self.last_flush.elapsed() >= interval)
            || (!self.key_usage.is_empty() && self.last_usage_flush.elapsed() >= interval)
    }

    /// Writes the logs and key states taken so far, and the key usage summed since it was last
    /// written if the interval has passed (or `all`, at shutdown): a busy key's counter is then
    /// one update per interval rather than one per batch of rows, which with a million keys
    /// was most of what logging cost.
    fn flush(&mut self, all: bool, thread: Priority) {
        self.last_flush = Instant::now();
        let usage_due = all
            || self.key_usage.len() >= MAX_USAGE_KEYS
            || self.last_usage_flush.elapsed() >= self.interval();
        let key_usage: Vec<KeyUsage> = if usage_due {
            self.last_usage_flush = Instant::now();
            self.key_usage
                .drain()
                .map(|(key_id, (requests, last_used_at))| KeyUsage {
                    key_id,
                    requests,
                    last_used_at,
                })
                .collect()
        } else {
            Vec::new()
        };
        let batch = FlushBatch {
            logs: std::mem::take(&mut self.logs),
            key_states: self.key_states.drain().map(|(_, v)| v).collect(),
            key_usage,
        };
        if batch.is_empty() {
            return;
        }
        self.pace.offer();
        let give_way = || self.asked_to_give_way(thread);
        match self.store.write_batch_unless(&batch, &give_way) {
            Ok(true) => {}
            Ok(false) => {
                self.requeue(batch);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, logs = batch.logs.len(), "writing request logs failed; will retry");
                self.requeue(batch);
                return;
            }
        }
        self.pace.offer();
        self.recycle(batch.logs);
    }

    /// Keeps written rows to be filled again: their strings are overwritten in place for the
    /// next records instead of allocated anew (five a row) and freed (twelve a row, most of them
    /// on a shard's heap). A row that grew past [`RECYCLED_ROW_BYTES`] (a logged body) is freed.
    fn recycle(&mut self, mut logs: Vec<LogRow>) {
        while let Some(row) = logs.pop() {
            if self.spare_rows.len() < MAX_BATCH && row_capacity(&row) <= RECYCLED_ROW_BYTES {
                self.spare_rows.push(row);
            }
            if logs.len().is_multiple_of(256) {
                self.pace.offer();
            }
        }
        // The next batch fills the same space: grown from empty, a batch's rows were copied
        // over and over as the vector doubled (2.5% of the writer's work at full load).
        if self.logs.is_empty() {
            self.logs = logs;
        }
    }

    /// Keeps a failed batch for the next flush, bounded.
    fn requeue(&mut self, batch: FlushBatch) {
        let mut logs = batch.logs;
        logs.append(&mut self.logs);
        if logs.len() > MAX_PENDING {
            let excess = logs.len() - MAX_PENDING;
            tracing::warn!(
                dropped = excess,
                "request log backlog full; dropping the oldest records"
            );
            logs.drain(..excess);
        }
        self.logs = logs;
        for state in batch.key_states {
            self.key_states.entry(state.key_id).or_insert(state);
        }
        for used in batch.key_usage {
            let pending = self
                .key_usage
                .entry(used.key_id)
                .or_insert((0, used.last_used_at));
            pending.0 += used.requests;
            pending.1 = pending.1.max(used.last_used_at);
        }
    }
}

/// Offers the core back to other threads once the writer has worked for [`Pace::SLICE`].
///
/// The writer shares the core with a shard when the process is pinned to one, and the kernel
/// only takes the core back from it at the scheduler tick (4 ms at HZ=250): a flush running
/// through its thousands of rows unasked held requests for that long (`perf sched timehist`:
/// the writer on the core for 4 to 8 ms at a stretch, the shard runnable and waiting). Offered
/// back every fifth of a millisecond, a waiting shard may run; EEVDF still picks the writer
/// again while it is owed time, which its nice value (see [`Priority`]) shortens. When
/// nothing waits, `sched_yield` returns straight away.
struct Pace {
    since: Instant,
}

impl Pace {
    const SLICE: Duration = Duration::from_micros(200);

    fn new() -> Self {
        Self {
            since: Instant::now(),
        }
    }

    fn offer(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.since) >= Self::SLICE {
            std::thread::yield_now();
            self.since = Instant::now();
        }
    }
}

/// `request_logs.key_value` and `key_hash` of the keys used lately, by key id: the key encrypted
/// as `api_keys` stores it and hashed as every lookup by key hashes it (v1's columns), neither of
/// which slots keep. Per row, that would be a SHA-256, and with `ENCRYPTION_KEY` an AES-GCM seal
/// and a nonce from the OS (a syscall); most traffic goes through few keys, so most rows find
/// both here. Past [`LoggedKeys::LIMIT`] keys it starts over.
#[derive(Default)]
struct LoggedKeys {
    /// With the key in clear, to tell an entry from another key that took its id. Hashed with
    /// foldhash, as the usage counts are: one lookup a row each, and key ids are ours.
    by_id: LookupMap<i64, (String, LoggedKey)>,
}

/// What a log row stores of the key it used.
#[derive(Clone, Default)]
struct LoggedKey {
    value: String,
    hash: String,
}

impl LoggedKeys {
    const LIMIT: usize = 4096;

    fn get(&mut self, key: &KeySlot, cipher: &KeyCipher) -> &LoggedKey {
        let id = key.id();
        if self.by_id.len() >= Self::LIMIT && !self.by_id.contains_key(&id) {
            self.by_id.clear();
        }
        let logged = |key: &KeySlot| {
            let columns = LoggedKey {
                value: stored_key_value(key.value(), cipher),
                hash: cipher.hash(key.value()),
            };
            (key.value().to_string(), columns)
        };
        let entry = self.by_id.entry(id).or_insert_with(|| logged(key));
        if entry.0 != key.value() {
            *entry = logged(key);
        }
        &entry.1
    }
}

/// Request log ids: UUIDs (v1's format) of version 7, time-ordered, so each insert lands at the
/// end of the primary-key index instead of at a random page, which is most of what a log row
/// costs SQLite. The 74 random bits come from a generator seeded once from the OS: `now_v7`
/// asks the OS for them on every id, a syscall per request at full load.
struct LogIds {
    rng: fastrand::Rng,
}

impl LogIds {
    fn new() -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        Self {
            rng: fastrand::Rng::with_seed(seed.0 ^ seed.1.rotate_left(17)),
        }
    }

    /// Writes an id for a row of time `millis` (Unix milliseconds) into `id`.
    fn write_next(&mut self, millis: u64, id: &mut String) {
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        // Encoded directly rather than through `Display` (`to_string`), whose formatting
        // machinery cost more than the encoding.
        let encoded = uuid::Builder::from_unix_timestamp_millis(millis, &random)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut text);
        id.clear();
        id.push_str(encoded);
    }
}

/// A recycled row holding more than this in its strings is freed rather than kept (rows are
/// a few hundred bytes; a logged request body can be 65,000).
const RECYCLED_ROW_BYTES: usize = 4096;

fn row_capacity(row: &LogRow) -> usize {
    [
        &row.id,
        &row.group_name,
        &row.parent_group_name,
        &row.key_value,
        &row.key_hash,
        &row.model,
        &row.source_ip,
        &row.request_path,
        &row.error_message,
        &row.user_agent,
        &row.request_type,
        &row.upstream_addr,
        &row.request_body,
        &row.request_id,
    ]
    .iter()
    .map(|text| text.capacity())
    .sum()
}

/// Fills `row` (its id already written) from `log`; `key` is what the row stores of the key
/// the attempt used (none: empty). Every string is overwritten in place.
fn fill_log_row(row: &mut LogRow, key: Option<&LoggedKey>, log: &AttemptLog) {
    fn set(column: &mut String, text: &str) {
        column.clear();
        column.push_str(text);
    }
    row.timestamp = log.timestamp;
    row.group_id = log.group_id;
    set(&mut row.group_name, &log.group_name);
    row.parent_group_id = log.parent_group_id;
    set(
        &mut row.parent_group_name,
        log.parent_group_name.as_deref().unwrap_or_default(),
    );
    set(&mut row.key_value, key.map_or("", |k| &k.value));
    set(&mut row.key_hash, key.map_or("", |k| &k.hash));
    set(&mut row.model, log.text.get(TextField::Model));
    row.is_success = log.is_success;
    set(&mut row.source_ip, log.text.get(TextField::SourceIp));
    row.status_code = log.status_code as i64;
    set(&mut row.request_path, log.text.get(TextField::RequestPath));
    row.duration_ms = log.duration_ms as i64;
    set(
        &mut row.error_message,
        log.text.get(TextField::ErrorMessage),
    );
    set(&mut row.user_agent, log.text.get(TextField::UserAgent));
    set(
        &mut row.request_type,
        if log.is_final { "final" } else { "retry" },
    );
    set(
        &mut row.upstream_addr,
        log.text.get(TextField::UpstreamAddr),
    );
    row.is_stream = log.is_stream;
    set(&mut row.request_body, log.text.get(TextField::RequestBody));
    set(&mut row.request_id, log.text.get(TextField::RequestId));
}

/// `request_logs.key_value`: the key encrypted as `api_keys` stores it (v1). Should the random
/// source ever fail, the column stays empty rather than hold the key in clear.
fn stored_key_value(key: &str, cipher: &KeyCipher) -> String {
    cipher.encrypt(key).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encrypt the key of a request log; storing none");
        String::new()
    })
}

/// How the writer's two threads share a core with a shard. Both are batch threads
/// (`SCHED_BATCH`: a wake-up of theirs never preempts a shard) with a short time slice (0.1 ms;
/// Linux 6.6+'s EEVDF honours `sched_runtime` as the slice); they differ in weight.
///
/// At nice 0 the writer held the core for 1.9–2.5 ms at a stretch (p90 of its turns under
/// `perf sched timehist`, 4–8 ms at worst) while the shard waited; at nice 5 for 1.0 ms (p99
/// 2.5 ms against 4). Its share of a contended core must cover what logging every request at
/// full load needs: at nice 10 (a tenth) it fell 280,000 rows behind in 20 s at 64
/// connections. Nice 5 (a quarter) kept up where a request cost the shard ~17 µs, but not on
/// a machine where it costs ~11 and the writer ~3 µs a row (22%): 16,000–28,000 of 850,000
/// rows dropped in 12 s, against none of 818,000–832,000 at nice 3 (a third), whose tail at
/// 16 connections was the same within the noise. So the writer that must keep up with full
/// load runs at nice 3.
///
/// At light load a weight like that costs a tail: each time a shard wakes for a request and
/// preempts the writer in a batch, EEVDF counts the time the writer waited as owed to it, and
/// then pays it back in one stretch of 0.3–1 ms while the shard, woken, waits (`perf sched
/// timehist` at one connection: 11–21 such waits in 4 s, their stacks ending in the writer's
/// own `sched_yield`; none of 0.3 ms with the writer at nice 19, one with it `SCHED_IDLE`).
/// The debt grows with the writer's weight, so the thread that writes while it keeps up runs
/// at nice 19 (1.4% of a contended core), and a second one at nice 3 takes over only when
/// records queue up. Unprivileged, a thread may raise its nice value but not lower it again
/// (nor leave `SCHED_IDLE`), hence two threads rather than one that changes.
#[derive(Clone, Copy, Debug)]
enum Priority {
    /// `log-writer`.
    Background,
    /// `log-catchup`.
    CatchUp,
}

impl Priority {
    /// Records a batch holds before it is written.
    fn batch(self) -> usize {
        match self {
            Priority::Background => BACKGROUND_BATCH,
            Priority::CatchUp => MAX_BATCH,
        }
    }

    fn nice(self) -> i32 {
        match self {
            Priority::Background => 19,
            Priority::CatchUp => 3,
        }
    }

    /// Applies to the calling thread; an older kernel keeps the policy and nice value and
    /// ignores the slice.
    fn apply(self) {
        lower_priority(self.nice());
    }
}

fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` (include/uapi/linux/sched/types.h), not in the libc crate.
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
            util_min: u32,
            util_max: u32,
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_BATCH as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: 100_000,
            deadline: 0,
            period: 0,
            util_min: 0,
            util_max: 0,
        };
        // SAFETY: sched_setattr on the calling thread (pid 0) with a valid, fully initialised
        // struct whose size field says how much of it the kernel may read.
        let set =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if set != 0 {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above, the older call with a valid parameter struct.
            let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
            if set != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "log writer stays SCHED_OTHER");
            }
            // SAFETY: PRIO_PROCESS with id 0 is the calling thread on Linux; no pointers.
            let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
            if set != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "log writer stays at nice 0");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use engine::keys::{KeySlot, KeyStatus};

    use engine::events::{AttemptLog, AttemptText};
    use store::LogRow;

    use super::{KeyCipher, LogIds, LoggedKey, LoggedKeys, fill_log_row};

    /// Log ids are v1's text form of a UUID (lowercase, hyphenated), version 7, carrying the
    /// row's time, so that later rows sort after earlier ones.
    #[test]
    fn log_ids_are_time_ordered_uuid_v7_text() {
        let mut ids = LogIds::new();
        let (mut first, mut later) = (String::new(), "left over".to_string());
        ids.write_next(1_764_000_000_000, &mut first);
        ids.write_next(1_764_000_000_001, &mut later);
        for id in [&first, &later] {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 7);
            assert_eq!(*id, parsed.hyphenated().to_string());
        }
        let millis = |id: &str| {
            let (seconds, nanos) = uuid::Uuid::parse_str(id)
                .expect("a UUID")
                .get_timestamp()
                .expect("v7 has a time")
                .to_unix();
            seconds * 1_000 + u64::from(nanos) / 1_000_000
        };
        assert_eq!(millis(&first), 1_764_000_000_000);
        assert_eq!(millis(&later), 1_764_000_000_001);
        assert!(first < later);
    }

    /// The writer's threads give way: batch policy and nice values above a shard's, the
    /// background one's the highest.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_threads_run_at_lower_priority() {
        use super::Priority;
        // SAFETY: a query about the calling thread (id 0); no pointers.
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        for (priority, nice) in [(Priority::Background, 19), (Priority::CatchUp, 3)] {
            let (policy, got) = std::thread::spawn(move || {
                priority.apply();
                // SAFETY: queries about the calling thread (id 0); no pointers.
                unsafe {
                    (
                        libc::sched_getscheduler(0),
                        libc::getpriority(libc::PRIO_PROCESS, 0),
                    )
                }
            })
            .join()
            .expect("thread runs");
            assert_eq!(policy, libc::SCHED_BATCH, "{priority:?}");
            assert_eq!(got, ours.max(nice), "{priority:?}");
        }
        // SAFETY: as above.
        let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(after, ours, "only the writer's own threads change");
    }

    fn attempt(parent: bool, texts: [&str; 8], is_final: bool) -> AttemptLog {
        let parts = texts.map(|text| [text]);
        let text = AttemptText::new(std::array::from_fn(|i| (&parts[i][..], usize::MAX)));
        AttemptLog {
            timestamp: chrono::DateTime::from_timestamp_millis(1_764_000_000_123).expect("time"),
            group_id: 3,
            group_name: "child".into(),
            parent_group_id: if parent { 9 } else { 0 },
            parent_group_name: parent.then(|| "parent".into()),
            key: None,
            is_success: !parent,
            status_code: if parent { 502 } else { 200 },
            duration_ms: 42,
            is_final,
            is_stream: parent,
            text,
        }
    }

    /// A row filled again for a new record holds that record and nothing of the one before:
    /// equal to a row filled from fresh, every text column overwritten.
    #[test]
    fn a_recycled_row_holds_only_the_new_record() {
        let full = attempt(
            true,
            [
                "m1",
                "10.0.0.1",
                "/v1/x?a=1",
                "bad gateway",
                "curl",
                "http://u/v1/x",
                "{}",
                "req-1",
            ],
            false,
        );
        let sparse = attempt(false, ["", "", "/p", "", "", "", "", ""], true);
        let key = LoggedKey {
            value: "enc".into(),
            hash: "hash".into(),
        };

        let mut recycled = LogRow {
            id: "first".into(),
            ..LogRow::default()
        };
        fill_log_row(&mut recycled, Some(&key), &full);
        assert_eq!(
            (
                recycled.parent_group_name.as_str(),
                recycled.key_hash.as_str()
            ),
            ("parent", "hash")
        );
        assert_eq!(recycled.request_type, "retry");
        assert_eq!(recycled.error_message, "bad gateway");
        fill_log_row(&mut recycled, None, &sparse);

        let mut fresh = LogRow {
            id: "first".into(),
            ..LogRow::default()
        };
        fill_log_row(&mut fresh, None, &sparse);
        assert_eq!(recycled, fresh);
        assert_eq!(recycled.request_path, "/p");
        assert_eq!(recycled.request_type, "final");
        assert_eq!(recycled.group_name, "child");
        assert_eq!(
            (
                recycled.parent_group_id,
                recycled.parent_group_name.as_str()
            ),
            (0, "")
        );
        assert_eq!(
            (recycled.key_value.as_str(), recycled.key_hash.as_str()),
            ("", "")
        );
        assert_eq!(recycled.timestamp.timestamp_millis(), 1_764_000_000_123);
    }

    /// A writer over a fresh database, as `LogWriter::start` makes it, without its threads.
    struct Fixture {
        runtime: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
        store: store::Store,
        shards: crossbeam_channel::Sender<engine::events::Event>,
        queue: crossbeam_channel::Receiver<engine::events::Event>,
        writer: std::sync::Mutex<super::Writer>,
    }

    impl Fixture {
        fn new() -> Self {
            use std::sync::Arc;
            use std::sync::atomic::{AtomicBool, AtomicU64};

            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("logs.db");
            let store = runtime
                .block_on(store::Store::open(path.to_str().expect("utf-8 path")))
                .expect("store opens");
            let (shards, queue) = crossbeam_channel::unbounded();
            let (_wake_tx, wake) = crossbeam_channel::unbounded();
            let (blacklisted, _blacklisted_rx) = tokio::sync::mpsc::unbounded_channel();
            let writer = std::sync::Mutex::new(super::Writer::new(
                queue.clone(),
                wake,
                store.clone(),
                Arc::new(AtomicU64::new(0)),
                blacklisted,
                KeyCipher::new(""),
                Arc::new(AtomicBool::new(false)),
            ));
            Self {
                runtime,
                _dir: dir,
                store,
                shards,
                queue,
                writer,
            }
        }

        fn stored(&self) -> usize {
            let epoch = chrono::DateTime::from_timestamp(0, 0).expect("epoch");
            self.runtime
                .block_on(self.store.count_final_logs(epoch, None))
                .expect("count") as usize
        }

        fn send(&self, n: usize) {
            for _ in 0..n {
                let record = attempt(false, ["m", "", "/p", "", "", "", "", ""], true);
                self.shards
                    .send(engine::events::Event::Attempt(Box::new(record)))
                    .expect("queue open");
            }
        }
    }

    /// Records that queue up while `log-writer` cannot run (a shard keeping its core busy) are
    /// written by `log-catchup` until the queue is short; a shorter queue it leaves alone.
    #[test]
    fn a_backlog_is_written_by_the_catch_up_thread() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use super::{CATCH_UP_AT, CAUGHT_UP_BELOW, MAX_BATCH, Priority, Queue, catch_up_once};

        let f = Fixture::new();
        let (writer, queue) = (&f.writer, &f.queue);
        let (wanted, stop) = (AtomicBool::new(false), AtomicBool::new(false));

        f.send(CATCH_UP_AT - 1);
        assert_eq!(catch_up_once(writer, queue, &wanted, &stop, false), None);
        assert_eq!((queue.len(), f.stored()), (CATCH_UP_AT - 1, 0));

        // Asked to give way, `log-writer` takes nothing.
        let mut w = writer.lock().expect("not poisoned");
        w.give_way.store(true, Ordering::SeqCst);
        assert_eq!(w.work(Priority::Background), Queue::Open);
        assert_eq!((queue.len(), w.logs.len()), (CATCH_UP_AT - 1, 0));
        w.give_way.store(false, Ordering::SeqCst);
        drop(w);

        f.send(MAX_BATCH + 1);
        assert_eq!(
            catch_up_once(writer, queue, &wanted, &stop, false),
            Some(Queue::Open)
        );
        let left = queue.len();
        assert!(left < CAUGHT_UP_BELOW, "{left} still queued");
        assert_eq!(f.stored(), CATCH_UP_AT + MAX_BATCH - left);
    }

    /// A few records that `log-writer` never gets the core to write (a machine busy with
    /// other work) are written by `log-catchup` once they have waited [`STARVED_AFTER`].
    #[test]
    fn records_a_starved_writer_leaves_are_written_by_the_catch_up_thread() {
        use std::sync::atomic::AtomicBool;

        use super::{Queue, catch_up_once};

        let f = Fixture::new();
        let (wanted, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        f.send(3);
        assert_eq!(
            catch_up_once(&f.writer, &f.queue, &wanted, &stop, false),
            None
        );
        assert_eq!((f.queue.len(), f.stored()), (3, 0));
        assert_eq!(
            catch_up_once(&f.writer, &f.queue, &wanted, &stop, true),
            Some(Queue::Open)
        );
        assert_eq!((f.queue.len(), f.stored()), (0, 3));
    }

    /// Starved means the queue has not been seen empty for [`STARVED_AFTER`]: not while it
    /// is empty, nor while `log-writer` keeps emptying it, however busy.
    #[test]
    fn starvation_is_a_queue_not_seen_empty_for_a_while() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{Duration, Instant};

        use super::{STARVED_AFTER, Starvation};

        let emptied = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut starvation = Starvation::new(emptied.clone(), start);
        let after = STARVED_AFTER.as_millis() as u64;
        assert!(!starvation.starved(true, at(after * 2)), "empty queue");
        assert!(
            !starvation.starved(false, at(after * 3 - 1)),
            "waiting, not yet long"
        );
        emptied.fetch_add(1, Ordering::Relaxed);
        assert!(
            !starvation.starved(false, at(after * 4)),
            "log-writer emptied it"
        );
        assert!(!starvation.starved(false, at(after * 5 - 1)));
        assert!(
            starvation.starved(false, at(after * 5)),
            "not seen empty for long"
        );
        assert!(!starvation.starved(true, at(after * 6)), "empty again");
    }

    /// The cached columns are the key's own: encrypted so that they decrypt to it, hashed as a
    /// lookup hashes it, reused for the next row, and recomputed when another key has the id.
    #[test]
    fn logged_keys_are_the_keys_own_columns() {
        let cipher = KeyCipher::new("a-test-encryption-key-of-32-chars!");
        let mut logged = LoggedKeys::default();
        let first = KeySlot::new(7, "sk-first-aaaa", KeyStatus::Active, 0);
        let a = logged.get(&first, &cipher).clone();
        assert_eq!(cipher.decrypt(&a.value).expect("decrypts"), "sk-first-aaaa");
        assert_eq!(a.hash, cipher.hash("sk-first-aaaa"));
        let again = logged.get(&first, &cipher);
        assert_eq!(again.value, a.value, "one encryption per key, not per row");
        let other = KeySlot::new(7, "sk-other-bbbb", KeyStatus::Active, 0);
        let b = logged.get(&other, &cipher);
        assert_eq!(cipher.decrypt(&b.value).expect("decrypts"), "sk-other-bbbb");
        assert_eq!(b.hash, cipher.hash("sk-other-bbbb"));
    }
}
