//! Per-socket rate limiting: a token bucket refilled at `RATE_LIMIT_PER_SEC` and holding twice
//! that, so a socket may burst briefly but not sustain more than its rate. Part of each socket's
//! [`Session`](super::Session).

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket. Checked under a plain mutex held for a few instructions, never across
/// `.await`; each socket has its own, so there is no contention.
pub struct RateLimiter {
    rate: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` events per second on average, bursts of `2 * rate`.
    pub fn new(rate: u32) -> Self {
        Self::with_burst(rate, rate.saturating_mul(2))
    }

    /// `rate` events per second on average, bursts of `burst` (the bucket starts full).
    pub fn with_burst(rate: u32, burst: u32) -> Self {
        let capacity = f64::from(burst);
        Self {
            rate: f64::from(rate),
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes one token; `false` when the socket is over its rate.
    pub fn allow(&self) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = *g;
        let now = Instant::now();
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.capacity);
        if tokens >= 1.0 {
            *g = (tokens - 1.0, now);
            true
        } else {
            *g = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_passes_and_the_next_event_does_not() {
        let l = RateLimiter::new(5);
        assert!((0..10).all(|_| l.allow()));
        assert!(!l.allow());
    }

    #[test]
    fn a_bucket_with_its_own_burst_gives_that_many_at_once() {
        let l = RateLimiter::with_burst(1000, 3);
        assert!((0..3).all(|_| l.allow()));
        // Refilled at 1000 a second: one more within a few milliseconds, never three.
        assert!((0..20).filter(|_| l.allow()).count() < 3);
    }
}
