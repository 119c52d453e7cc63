//! A token bucket over the tokio clock (so it follows virtual time in tests): the per-connection frame
//! and byte rate limits and the per-IP accept throttle.

use tokio::time::Instant;

/// Up to `burst` tokens, refilled at `rate` tokens per second.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens held.
    burst: f64,
    /// Tokens now.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens if there are that many; false (taking none) otherwise.
    pub(crate) fn try_take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// True if the bucket has refilled completely by `now` (it then says no more than a new one would).
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// When the bucket was last used.
    pub(crate) fn last_used(&self) -> Instant {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_burst_then_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, start);
        assert!((0..5).all(|_| b.try_take(1.0, start)));
        assert!(!b.try_take(1.0, start));
        assert!(b.try_take(1.0, start + Duration::from_millis(100)));
        assert!(!b.try_take(1.0, start + Duration::from_millis(100)));
        // Never more than the burst, however long idle.
        let later = start + Duration::from_secs(100);
        assert!(b.is_full(later));
        assert!((0..5).all(|_| b.try_take(1.0, later)));
        assert!(!b.try_take(1.0, later));
        assert!(!b.is_full(later));
    }

    #[tokio::test(start_paused = true)]
    async fn takes_many_tokens_at_once_or_none() {
        let start = Instant::now();
        let mut b = TokenBucket::new(100.0, 300.0, start);
        assert!(b.try_take(250.0, start));
        assert!(!b.try_take(100.0, start), "only 50 left");
        assert!(b.try_take(50.0, start), "a refused take took nothing");
        assert!(b.try_take(100.0, start + Duration::from_secs(1)));
    }
}
