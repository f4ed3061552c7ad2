//! The shards: one thread, one monoio runtime, one listener (SO_REUSEPORT) and one upstream pool
//! each. Everything a shard owns is `!Send` (`Rc`, `RefCell`, `Cell`); what crosses threads is an
//! `Arc` of immutable data or an atomic, and it crosses in `start` and `Shared`, nowhere else.

pub mod conn;
pub mod respond;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use monoio::io::{CancelHandle, Canceller};
use monoio::net::{ListenerOpts, TcpListener};
use monoio_rustls::TlsConnector;

use crate::EngineConfig;
use crate::events::EventSink;
use crate::snapshot::{LookupSet, Snapshot};
use crate::upstream::{Conn, Pool};

/// How often a shard looks for a new snapshot and for shutdown. Bounds how stale a shard's
/// config can be (the hot-reload promise is one second) at a cost of 100 wake-ups a second.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(10);

/// State shared by all shards and the control plane.
#[derive(Default)]
pub struct Shared {
    draining: AtomicBool,
    /// Shards whose listener is still open.
    listening: AtomicUsize,
    /// Proxy requests in flight over all shards (MAX_CONCURRENT_REQUESTS).
    pub proxy_in_flight: AtomicUsize,
    /// Request ids: a process-wide counter keeps them unique across shards.
    pub request_seq: AtomicU64,
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// One shard's state. Lives on its thread only.
pub struct Shard {
    pub id: usize,
    pub config: Arc<EngineConfig>,
    pub shared: Arc<Shared>,
    snapshot: RefCell<Arc<Snapshot>>,
    pub pool: Pool,
    /// Keep-alive connections to the control plane's socket.
    pub control_pool: RefCell<Vec<Conn>>,
    pub tls: TlsConnector,
    pub events: EventSink,
    /// Requests being handled on this shard (drained before the shard exits).
    pub active: Cell<usize>,
    /// Client sockets with a read in flight (a next request, or a body), so that a drain can
    /// end those reads: their read side is shut down, and each read ends as if the client had
    /// closed. Cancelling them through monoio instead (`cancelable_read`) put every read into a
    /// SipHash set of its own, ~500 instructions a request; this set hashes a descriptor with
    /// foldhash.
    reading: RefCell<LookupSet<RawFd>>,
    /// Cancels the pending accept when the shard drains.
    accept_canceller: RefCell<Canceller>,
}

impl Shard {
    /// The snapshot a new request starts with; it keeps it to the end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Marks `fd` as reading until the guard is dropped (see [`Shard::end_reads`]).
    pub fn reading(&self, fd: RawFd) -> Reading<'_> {
        self.reading.borrow_mut().insert(fd);
        Reading { shard: self, fd }
    }

    /// Ends every client read in flight: its socket's read side is shut down, so the read
    /// returns end of stream and the connection closes once it sees it.
    fn end_reads(&self) {
        for &fd in self.reading.borrow().iter() {
            // SAFETY: `fd` belongs to a client socket whose read is in flight: the socket is
            // open until that read's guard has removed it from the set.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
    }
}

/// A client read in flight, listed while it lasts.
pub struct Reading<'a> {
    shard: &'a Shard,
    fd: RawFd,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.shard.reading.borrow_mut().remove(&self.fd);
    }
}

/// The control plane's handle on the running shards.
pub struct EngineHandle {
    senders: Vec<Sender<Arc<Snapshot>>>,
    applied: Vec<Arc<AtomicU64>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    pub shared: Arc<Shared>,
    /// Which io driver each shard runs ("io_uring" or "epoll").
    pub drivers: Vec<&'static str>,
    pub events: EventSink,
}

impl EngineHandle {
    /// Sends a snapshot to every shard; each swaps it in between requests.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        for tx in &self.senders {
            let _ = tx.send(snapshot.clone());
        }
    }

    /// Whether every shard runs a snapshot at least as new as `version`.
    pub fn applied(&self, version: u64) -> bool {
        self.applied
            .iter()
            .all(|a| a.load(Ordering::Acquire) >= version)
    }

    /// Stops accepting new connections on every shard; returns once every listener is closed
    /// (within a few housekeeping ticks), so a client connecting afterwards is refused.
    pub fn stop_accepting(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.shared.listening.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops accepting, waits for requests in flight up to `grace`, and joins the shards.
    pub fn shutdown(&self, grace: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace + Duration::from_secs(1);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Starts `config.threads` shards listening on `config.listen`; returns once every shard is
/// listening, or with the first bind error.
pub fn start(
    config: EngineConfig,
    initial: Arc<Snapshot>,
    events: EventSink,
) -> std::io::Result<EngineHandle> {
    let config = Arc::new(config);
    let shared = Arc::new(Shared::default());
    let tls = TlsConnector::from(Arc::new(
        crate::upstream::conn::tls_config(config.extra_ca_file.as_deref())
            .map_err(std::io::Error::other)?,
    ));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handle = EngineHandle {
        senders: Vec::new(),
        applied: Vec::new(),
        threads: std::sync::Mutex::new(Vec::new()),
        shared: shared.clone(),
        drivers: Vec::new(),
        events: events.clone(),
    };
    for id in 0..config.threads {
        let (tx, rx) = crossbeam_channel::unbounded();
        let applied = Arc::new(AtomicU64::new(initial.version));
        let ctx = ShardStart {
            id,
            config: config.clone(),
            shared: shared.clone(),
            snapshot: initial.clone(),
            snapshots: rx,
            applied: applied.clone(),
            tls: tls.clone(),
            events: events.clone(),
            ready: ready_tx.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || run_thread(ctx))?;
        handle.senders.push(tx);
        handle.applied.push(applied);
        handle
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(thread);
    }
    drop(ready_tx);
    for _ in 0..config.threads {
        match ready_rx.recv() {
            Ok(Ok(driver)) => handle.drivers.push(driver),
            Ok(Err(e)) => {
                shared.draining.store(true, Ordering::SeqCst);
                return Err(e);
            }
            Err(_) => return Err(std::io::Error::other("a shard thread exited during start")),
        }
    }
    Ok(handle)
}

struct ShardStart {
    id: usize,
    config: Arc<EngineConfig>,
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    snapshots: Receiver<Arc<Snapshot>>,
    applied: Arc<AtomicU64>,
    tls: TlsConnector,
    events: EventSink,
    ready: std::sync::mpsc::Sender<std::io::Result<&'static str>>,
}

fn run_thread(ctx: ShardStart) {
    crate::time::forget_spare_timers();
    let builder = || {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .with_entries(4096)
            .enable_timer()
    };
    #[cfg(target_os = "linux")]
    let built = builder()
        .uring_builder(cooperative_ring())
        .build()
        .or_else(|_| builder().build());
    #[cfg(not(target_os = "linux"))]
    let built = builder().build();
    let mut runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ctx.ready.send(Err(e));
            return;
        }
    };
    let driver = match &runtime {
        #[cfg(target_os = "linux")]
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "epoll",
    };
    runtime.block_on(shard_main(ctx, driver));
}

/// The ring's setup: completions wait for the shard's next entry into the kernel instead of
/// interrupting it. By default the kernel sends a running shard an inter-processor interrupt for
/// every socket that becomes ready, to run the completion at once; a busy shard enters the
/// kernel every few requests anyway (and a sleeping one is woken as before), so the interrupts
/// bought nothing and cost a twentieth of the shard's time (perf: `asm_sysvec_reschedule_ipi`,
/// and the socket lock contended with the other core). Kernels before 5.19 refuse the flags;
/// the shard then builds the ring without them.
#[cfg(target_os = "linux")]
fn cooperative_ring() -> io_uring::Builder {
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun().setup_taskrun_flag();
    ring
}

async fn shard_main(ctx: ShardStart, driver: &'static str) {
    let opts = ListenerOpts::new()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(4096);
    let listener = match TcpListener::bind_with_config(ctx.config.listen, &opts) {
        Ok(l) => l,
        Err(e) => {
            let _ = ctx.ready.send(Err(std::io::Error::new(
                e.kind(),
                format!("listen on {}: {e}", ctx.config.listen),
            )));
            return;
        }
    };
    let shard = Rc::new(Shard {
        id: ctx.id,
        config: ctx.config,
        shared: ctx.shared,
        snapshot: RefCell::new(ctx.snapshot),
        pool: Pool::default(),
        control_pool: RefCell::new(Vec::new()),
        tls: ctx.tls,
        events: ctx.events,
        active: Cell::new(0),
        reading: RefCell::new(LookupSet::default()),
        accept_canceller: RefCell::new(Canceller::new()),
    });
    shard.shared.listening.fetch_add(1, Ordering::SeqCst);
    let _ = ctx.ready.send(Ok(driver));
    let accept_cancel = shard.accept_canceller.borrow().handle();
    monoio::spawn(housekeeping(shard.clone(), ctx.snapshots, ctx.applied));
    accept_loop(&shard, &listener, accept_cancel).await;
    drop(listener);
    shard.shared.listening.fetch_sub(1, Ordering::SeqCst);
    drain(&shard).await;
}

async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener, cancel: CancelHandle) {
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                monoio::spawn(conn::serve(shard.clone(), stream, peer));
            }
            Err(_) if shard.shared.is_draining() => return,
            Err(e) => {
                // Out of descriptors or a transient error: back off briefly instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                crate::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits for this shard's requests in flight to finish, up to the graceful-shutdown bound.
async fn drain(shard: &Shard) {
    let deadline = Instant::now() + shard.config.shutdown_grace;
    while shard.active.get() > 0 && Instant::now() < deadline {
        crate::time::sleep(HOUSEKEEPING_TICK).await;
    }
}

/// Swaps in new snapshots, evicts idle upstream connections and starts draining on shutdown.
async fn housekeeping(
    shard: Rc<Shard>,
    snapshots: Receiver<Arc<Snapshot>>,
    applied: Arc<AtomicU64>,
) {
    let mut last_evict = Instant::now();
    loop {
        crate::time::sleep(HOUSEKEEPING_TICK).await;
        while let Ok(snapshot) = snapshots.try_recv() {
            let version = snapshot.version;
            *shard.snapshot.borrow_mut() = snapshot;
            applied.store(version, Ordering::Release);
        }
        shard.pool.trim();
        if last_evict.elapsed() >= Duration::from_secs(1) {
            last_evict = Instant::now();
            shard.pool.evict_idle(shard.config.max_upstream_idle);
        }
        if shard.shared.is_draining() {
            std::mem::take(&mut *shard.accept_canceller.borrow_mut()).cancel();
            shard.end_reads();
            return;
        }
    }
}

/// The address a shard listens on, for logs.
pub fn describe(listen: SocketAddr, drivers: &[&str]) -> String {
    format!(
        "{listen} ({} shards: {})",
        drivers.len(),
        drivers.join(", ")
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    use std::time::{Duration, Instant};

    use io_uring::{opcode, types};

    /// On the shard's ring a completion that arrives while the shard runs in user space waits
    /// for its next entry into the kernel (flagged in the submission queue) instead of
    /// interrupting it; it is delivered then. Any return from the kernel also runs it (a timer
    /// tick, being scheduled out, as happens often while other tests run), so one try may see
    /// the completion first: the flag must be seen in one of many tries (on a ring without the
    /// flags it never is). Skipped where io_uring is unavailable (the shard then runs on epoll).
    #[test]
    fn a_completion_waits_for_the_shard_to_enter_the_kernel() {
        if io_uring::IoUring::new(8).is_err() {
            eprintln!("io_uring is unavailable here; the shards would use epoll");
            return;
        }
        let mut ring = super::cooperative_ring()
            .build(8)
            .expect("ring with the flags");
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        // The writer spins on a counter rather than blocking: waking it would be a syscall of
        // ours, and the kernel would likely run it on our core, both of which deliver the
        // completion before we can look. Each thread on its own core where there are two.
        let cores = allowed_cores();
        let wanted = Arc::new(AtomicU64::new(0));
        let writer = {
            let wanted = wanted.clone();
            let core = cores.get(1).copied();
            std::thread::spawn(move || {
                if let Some(core) = core {
                    pin_to(core);
                }
                let (mut theirs, mut written) = (theirs, 0);
                loop {
                    match wanted.load(AtomicOrdering::Acquire) {
                        u64::MAX => return,
                        n if n > written => {
                            theirs.write_all(b"ping").expect("write");
                            written = n;
                        }
                        _ => std::hint::spin_loop(),
                    }
                }
            })
        };
        if let Some(&core) = cores.first() {
            pin_to(core);
        }
        let flagged = (1..=1000).any(|n| completion_waited(&mut ring, &ours, &wanted, n));
        wanted.store(u64::MAX, AtomicOrdering::Release);
        writer.join().expect("writer");
        assert!(
            flagged,
            "no completion waited for the ring's owner in 1000 tries"
        );
    }

    fn allowed_cores() -> Vec<usize> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call fills it for this thread.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `set` is a valid cpu_set_t of `size` bytes.
        if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
            return Vec::new();
        }
        // SAFETY: CPU_ISSET reads the set filled above, for indices below CPU_SETSIZE.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    }

    fn pin_to(cpu: usize) {
        // SAFETY: as above; CPU_SET writes one bit of a set we own.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: a valid set of the right size, for the calling thread (0).
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    }

    /// One receive, completed by the writer's `n`th write: whether it was flagged as waiting
    /// before it was delivered. Either way it arrives, with the bytes written.
    fn completion_waited(
        ring: &mut io_uring::IoUring,
        ours: &std::os::unix::net::UnixStream,
        wanted: &AtomicU64,
        n: u64,
    ) -> bool {
        let mut buf = [0u8; 8];
        let recv = opcode::Recv::new(types::Fd(ours.as_raw_fd()), buf.as_mut_ptr(), 8)
            .build()
            .user_data(7);
        // SAFETY: `buf` and `ours` outlive the operation: it completes before this returns.
        unsafe { ring.submission().push(&recv).expect("queue has room") };
        ring.submit().expect("submit");
        wanted.store(n, AtomicOrdering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut flagged = false;
        while Instant::now() < deadline && ring.completion().is_empty() {
            if ring.submission().taskrun() {
                flagged = true;
                break;
            }
            std::hint::spin_loop();
        }
        ring.submit_and_wait(1).expect("enter the kernel");
        let done = ring.completion().next().expect("the completion");
        assert_eq!((done.user_data(), done.result()), (7, 4));
        assert_eq!(&buf[..4], b"ping");
        flagged
    }
}
