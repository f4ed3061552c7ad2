//! Timeouts whose timer lives on the heap, armed only when the future has to wait.
//!
//! monoio's own `Timeout` embeds its timer entry: about 500 bytes aligned to 128. Every future
//! that holds one, and every future holding that one, grows by it and takes its alignment, and
//! a request's chain of futures is copied level by level as it is built: that copying was a
//! twentieth of the proxy's time. Here a timeout adds a pointer and a deadline, and a future
//! that is ready on its first poll never touches the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// Runs `future` for at most `limit`.
pub fn timeout<F: Future>(limit: Duration, future: F) -> Timeout<F> {
    let now = Instant::now();
    Timeout {
        future,
        // Beyond what an Instant can hold is "never": thirty years is as good.
        deadline: now
            .checked_add(limit)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30)),
        timer: None,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let deadline = *this.deadline;
        let timer = this.timer.get_or_insert_with(|| {
            Box::pin(monoio::time::sleep_until(monoio::time::Instant::from_std(
                deadline,
            )))
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits for `limit`; the timer on the heap, as above.
pub async fn sleep(limit: Duration) {
    Box::pin(monoio::time::sleep(limit)).await
}

/// Runs `future` to completion on a fresh single-threaded runtime with timers: for tests.
#[cfg(test)]
pub(crate) fn run<F: Future>(future: F) -> F::Output {
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

    #[test]
    fn an_unrepresentable_limit_means_never() {
        assert_eq!(run(timeout(Duration::MAX, async { 1 })), Ok(1));
    }
}
