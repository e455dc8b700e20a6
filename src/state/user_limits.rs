//! Per-user limits of one node: the budget of REST writes (`RATE_LIMIT_PER_SEC`, bursts of
//! twice that), of `message:send` across the user's sockets (the same rate), of connection
//! state recovery resumes (`RECOVERY_RESUMES_PER_MIN`), and the count of the user's sockets
//! here, which the handshake checks against `MAX_SOCKETS_PER_USER` together with presence's
//! cluster-wide count.
//!
//! The budgets are per node, kept in memory: a write, a message or a resume costs no Redis
//! round trip. Behind a load balancer that spreads one user's requests over N nodes, that
//! user's budgets are N times the rate (see `docs/security.md`); the socket limit is
//! cluster-wide through presence.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One user's budget: a token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One kind of per-user budget: a token bucket per user, `rate` a second on average and
/// `capacity` at once.
struct Budgets {
    rate: f64,
    capacity: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Budgets {
    fn new(rate: f64, capacity: f64) -> Budgets {
        Budgets {
            rate,
            capacity,
            buckets: Mutex::default(),
        }
    }

    /// Takes one from `user_id`'s bucket; `Err(wait)` when it is spent, with how long until the
    /// next one would pass.
    fn take(&self, user_id: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut budgets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget users whose bucket has refilled (a full bucket is the same as none), when the
        // map has doubled since the last pass: amortized O(1) per take.
        if budgets.len() >= 1024 && budgets.len().is_power_of_two() {
            let full = Duration::from_secs_f64(self.capacity / self.rate);
            budgets.retain(|_, b| now.duration_since(b.last) < full);
        }
        let bucket = match budgets.get_mut(user_id) {
            Some(b) => b,
            None => budgets.entry(user_id.to_owned()).or_insert(Bucket {
                tokens: self.capacity,
                last: now,
            }),
        };
        let tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * self.rate)
            .min(self.capacity);
        bucket.last = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// Which user's count a socket was added to (the hash of the user id, see `sockets`): lets a
/// guard give the place back without keeping the id.
#[derive(Clone, Copy, Debug)]
pub struct SocketKey(u64);

/// The node's per-user limits. Each check holds a plain mutex for a few instructions, never
/// across `.await`.
pub struct UserLimits {
    /// REST writes: `RATE_LIMIT_PER_SEC`, bursts of twice that.
    writes: Budgets,
    /// `message:send` over all of the user's sockets on this node: the same rate, so 32 sockets
    /// do not send 32 times what one may (issue 25, item 7: each message is logged for the
    /// recovery window).
    messages: Budgets,
    /// Connection state recovery resumes (`RECOVERY_RESUMES_PER_MIN`, that many at once): each
    /// one reads the log and replays up to 500 events.
    resumes: Budgets,
    /// Sockets past the handshake on this node, by a 64-bit hash of the user id (entries
    /// removed at zero). A hash, not the id: the map holds an entry per connected user, and an
    /// owned id would cost a heap allocation per entry. Two users whose ids collide (a chance
    /// of about n^2 / 2^65 for n users, with keys random per process) would share one count,
    /// which can only refuse early, never admit more.
    sockets: Mutex<HashMap<u64, u32>>,
    keys: RandomState,
}

impl UserLimits {
    /// `rate` writes (and messages) per second per user on average, bursts of `2 * rate`;
    /// `resumes_per_min` resumes a minute, as many at once.
    pub fn new(rate: u32, resumes_per_min: u32) -> Self {
        let rate = f64::from(rate.max(1));
        let resumes = f64::from(resumes_per_min.max(1));
        UserLimits {
            writes: Budgets::new(rate, rate * 2.0),
            messages: Budgets::new(rate, rate * 2.0),
            resumes: Budgets::new(resumes / 60.0, resumes),
            sockets: Mutex::default(),
            keys: RandomState::new(),
        }
    }

    /// Takes one REST write from `user_id`'s budget; `Err(wait)` when it is spent, with how
    /// long until the next write would pass.
    pub fn take_write(&self, user_id: &str) -> Result<(), Duration> {
        self.writes.take(user_id)
    }

    /// Takes one `message:send` from `user_id`'s budget, shared by all their sockets here.
    pub fn take_message(&self, user_id: &str) -> Result<(), Duration> {
        self.messages.take(user_id)
    }

    /// Takes one resume (a handshake carrying a `pid`) from `user_id`'s budget.
    pub fn take_resume(&self, user_id: &str) -> Result<(), Duration> {
        self.resumes.take(user_id)
    }

    /// Counts a new socket of `user_id` on this node unless the user would then hold more than
    /// `max` here or, with `elsewhere` sockets presence counts cluster-wide, in the cluster.
    /// `None`: refused, nothing counted. The key given back is what [`UserLimits::release`]
    /// takes (the handshake's admission guard keeps it, `realtime/admission.rs`).
    pub fn add_socket(&self, user_id: &str, elsewhere: u64, max: u32) -> Option<SocketKey> {
        let key = self.keys.hash_one(user_id);
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let here = sockets.get(&key).copied().unwrap_or(0);
        // Presence also counts this node's registered sockets: the larger of the two counts is
        // the best lower bound of the user's sockets in the cluster.
        if u64::from(here).max(elsewhere) >= u64::from(max) {
            return None;
        }
        *sockets.entry(key).or_insert(0) += 1;
        Some(SocketKey(key))
    }

    /// Does `user_id` hold a socket on this node? One hash lookup: what the send path asks to
    /// know whether its broadcast hands a message to the user here (`docs/delivery.md`).
    pub fn has_socket_here(&self, user_id: &str) -> bool {
        let key = self.keys.hash_one(user_id);
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.contains_key(&key)
    }

    /// Forgets one socket of `user_id` on this node (it disconnected).
    pub fn remove_socket(&self, user_id: &str) {
        self.release(SocketKey(self.keys.hash_one(user_id)));
    }

    /// Forgets one socket counted by [`UserLimits::add_socket`] under `key`.
    pub fn release(&self, SocketKey(key): SocketKey) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = sockets.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                sockets.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_passes_and_the_next_write_waits() {
        let limits = UserLimits::new(5, 60);
        assert!((0..10).all(|_| limits.take_write("u").is_ok()));
        let wait = limits.take_write("u").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200));
        assert!(limits.take_write("other").is_ok(), "budgets are per user");
        assert!(
            limits.take_message("u").is_ok(),
            "messages have a budget of their own"
        );
    }

    #[test]
    fn resumes_beyond_the_budget_wait() {
        let limits = UserLimits::new(5, 3);
        assert!((0..3).all(|_| limits.take_resume("u").is_ok()));
        let wait = limits.take_resume("u").unwrap_err();
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20));
    }

    #[test]
    fn sockets_beyond_the_maximum_are_refused_until_one_leaves() {
        let limits = UserLimits::new(5, 60);
        assert!((0..3).all(|_| limits.add_socket("u", 0, 3).is_some()));
        assert!(limits.add_socket("u", 0, 3).is_none());
        limits.remove_socket("u");
        assert!(limits.add_socket("u", 2, 3).is_some());
        assert!(
            limits.add_socket("v", 3, 3).is_none(),
            "presence counts sockets elsewhere"
        );
    }

    #[test]
    fn a_user_is_here_from_the_first_socket_until_the_last_leaves() {
        let limits = UserLimits::new(5, 60);
        assert!(!limits.has_socket_here("u"));
        assert!(limits.add_socket("u", 0, 3).is_some() && limits.add_socket("u", 0, 3).is_some());
        limits.remove_socket("u");
        assert!(limits.has_socket_here("u"), "one socket left");
        limits.remove_socket("u");
        assert!(!limits.has_socket_here("u"));
        assert!(!limits.has_socket_here("v"));
    }
}
