//! Timeouts whose timer lives on the heap, armed only when the future has to wait.
//!
//! monoio's own `Timeout` embeds its timer entry: about 500 bytes aligned to 128. Every future
//! that holds one, and every future holding that one, grows by it and takes its alignment, and
//! a request's chain of futures is copied level by level as it is built: that copying was a
//! twentieth of the proxy's time. Here a timeout adds a pointer and a deadline, and a future
//! that is ready on its first poll never touches the timer wheel.
//!
//! A finished timer goes back to its thread's spares and the next timeout resets it rather
//! than allocating one: monoio's timer entry is aligned to 128 bytes, which mimalloc serves
//! through its slow aligned path, and a proxied request arms four timers.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use monoio::time::Sleep;

/// The future did not finish within its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

pin_project_lite::pin_project! {
    /// `future`, or [`Elapsed`] once `deadline` has passed.
    pub struct Timeout<F> {
        #[pin]
        future: F,
        deadline: Instant,
        timer: Timer,
    }
}

/// Finished timers kept per thread for reuse: half a megabyte at most (an entry is about 500
/// bytes; a spare may still sit in the timer wheel until its old deadline). The number of
/// timers armed swings with the requests in flight (each connection holds one between
/// requests and up to four during one), and at 64 connections a bound of 64 spares let
/// a tenth of timers be freed and made anew.
const SPARES_KEPT: usize = 1024;

thread_local! {
    static SPARES: RefCell<Vec<Armed>> = const { RefCell::new(Vec::new()) };
}

/// Drops this thread's spare timers. A timer belongs to the runtime it was made under: a
/// thread that starts a new runtime calls this first, or a reused timer would wait on a
/// driver that no longer runs.
pub fn forget_spare_timers() {
    let _ = SPARES.try_with(|spares| spares.borrow_mut().clear());
}

/// A monoio timer and the waker it is polled with. monoio keeps the first waker a timer is
/// polled with until it fires, so a timer dropped while armed would, reused by another task,
/// wake the task it was armed for and never the new one. Its waker is therefore always the
/// relay's, and the relay holds the waker of whoever waits on it now.
struct Armed {
    sleep: Pin<Box<Sleep>>,
    relay: Arc<Relay>,
    waker: Waker,
}

/// Passes a timer's wake to the task that waits on it now.
#[derive(Default)]
struct Relay(AtomicWaker);

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

impl Armed {
    fn new(deadline: monoio::time::Instant) -> Armed {
        let relay = Arc::new(Relay::default());
        Armed {
            sleep: Box::pin(monoio::time::sleep_until(deadline)),
            waker: Waker::from(relay.clone()),
            relay,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.relay.0.register(cx.waker());
        self.sleep
            .as_mut()
            .poll(&mut Context::from_waker(&self.waker))
    }
}

/// A timer armed on first need, returned to the spares when dropped.
#[derive(Default)]
struct Timer(Option<Armed>);

impl Timer {
    /// Waits for `deadline` (the deadline of the first call; later calls keep it).
    fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self.0.get_or_insert_with(|| {
            let deadline = monoio::time::Instant::from_std(deadline);
            let spare = SPARES
                .try_with(|spares| spares.borrow_mut().pop())
                .ok()
                .flatten();
            match spare {
                Some(mut timer) => {
                    timer.sleep.as_mut().reset(deadline);
                    timer
                }
                None => Armed::new(deadline),
            }
        });
        timer.poll(cx)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(timer) = self.0.take() {
            // The task that waited lets go: a spare neither wakes it nor keeps it allocated.
            drop(timer.relay.0.take());
            let _ = SPARES.try_with(|spares| {
                let mut spares = spares.borrow_mut();
                if spares.len() < SPARES_KEPT {
                    spares.push(timer);
                }
            });
        }
    }
}

/// Runs `future` for at most `limit`.
pub fn timeout<F: Future>(limit: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        deadline: deadline_after(limit),
        timer: Timer::default(),
    }
}

/// `limit` from now; beyond what an Instant can hold is "never": thirty years is as good.
fn deadline_after(limit: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match this.timer.poll_until(*this.deadline, cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits for `limit`; the timer on the heap and reused, as above.
pub async fn sleep(limit: Duration) {
    let deadline = deadline_after(limit);
    let mut timer = Timer::default();
    std::future::poll_fn(|cx| timer.poll_until(deadline, cx)).await
}

/// Runs `future` to completion on a fresh single-threaded runtime with timers: for tests.
#[cfg(test)]
pub(crate) fn run<F: Future>(future: F) -> F::Output {
    forget_spare_timers();
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::run;

    #[test]
    fn a_ready_future_wins_without_a_timer() {
        assert_eq!(run(timeout(Duration::ZERO, async { 7 })), Ok(7));
    }

    #[test]
    fn a_future_that_waits_too_long_elapses() {
        let slow = crate::time::sleep(Duration::from_secs(60));
        assert_eq!(run(timeout(Duration::from_millis(5), slow)), Err(Elapsed));
    }

    #[test]
    fn a_future_that_finishes_in_time_wins() {
        let quick = async {
            crate::time::sleep(Duration::from_millis(1)).await;
            "done"
        };
        assert_eq!(run(timeout(Duration::from_secs(60), quick)), Ok("done"));
    }

    /// A timer taken from the spares keeps its new deadline: not its old one, not never.
    #[test]
    fn a_reused_timer_keeps_its_new_deadline() {
        run(async {
            let first = timeout(Duration::from_millis(1), sleep(Duration::from_secs(60)));
            assert_eq!(first.await, Err(Elapsed));
            let spares = SPARES.with(|s| s.borrow().len());
            assert_eq!(spares, 2, "both timers went back");
            let later = async {
                sleep(Duration::from_millis(5)).await;
                "done"
            };
            assert_eq!(timeout(Duration::from_secs(60), later).await, Ok("done"));
            let due = timeout(Duration::from_millis(5), sleep(Duration::from_secs(60)));
            assert_eq!(due.await, Err(Elapsed));
        });
        forget_spare_timers();
        assert_eq!(SPARES.with(|s| s.borrow().len()), 0);
    }

    /// A timer that went back to the spares while armed, from one task, wakes the task that
    /// reuses it: monoio keeps the first waker a timer was polled with, so a spare must not
    /// carry its last task's.
    #[test]
    fn a_reused_timer_wakes_its_new_task() {
        run(async {
            let armed = monoio::spawn(async {
                let mut pending = std::pin::pin!(timeout(
                    Duration::from_secs(60),
                    std::future::pending::<()>()
                ));
                std::future::poll_fn(|cx| {
                    assert!(pending.as_mut().poll(cx).is_pending());
                    Poll::Ready(())
                })
                .await;
            });
            armed.await;
            assert_eq!(
                SPARES.with(|s| s.borrow().len()),
                1,
                "the armed timer went back"
            );
            let reuser = monoio::spawn(sleep(Duration::from_millis(5)));
            let bound = monoio::time::timeout(Duration::from_secs(5), reuser).await;
            assert!(bound.is_ok(), "the task reusing the timer was never woken");
        });
    }

    #[test]
    fn an_unrepresentable_limit_means_never() {
        assert_eq!(run(timeout(Duration::MAX, async { 1 })), Ok(1));
    }
}
