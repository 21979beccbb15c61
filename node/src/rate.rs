//! Pacing background work to a byte rate.

use std::sync::Arc;
use std::time::Duration;

/// Told `true` when a limiter starts making its user wait, `false` after.
pub type WaitObserver = Arc<dyn Fn(bool) + Send + Sync>;

/// Paces background work to a number of bytes per second.
pub struct RateLimiter {
    bytes_per_sec: u64,
    started: tokio::time::Instant,
    consumed: u64,
    observer: Option<WaitObserver>,
}

impl RateLimiter {
    /// At most `bytes_per_sec` on average.
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            started: tokio::time::Instant::now(),
            consumed: 0,
            observer: None,
        }
    }

    /// The same limiter, telling `observer` when it makes its user wait.
    pub fn observed(mut self, observer: WaitObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Accounts for `bytes` and sleeps as long as needed to stay at the rate.
    pub async fn consume(&mut self, bytes: u64) {
        self.consumed += bytes;
        let due = Duration::from_secs_f64(self.consumed as f64 / self.bytes_per_sec as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            if let Some(tell) = &self.observer {
                tell(true);
            }
            tokio::time::sleep(due - elapsed).await;
            if let Some(tell) = &self.observer {
                tell(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_paces_to_its_rate() {
        let mut limiter = RateLimiter::new(1000);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            limiter.consume(500).await;
        }
        // 5000 bytes at 1000 B/s: about five seconds of (paused) time.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4900), "{took:?}");
        assert!(took <= Duration::from_millis(5100), "{took:?}");
    }
}
