//! Per-user limits of one node: the budget of REST writes (`RATE_LIMIT_PER_SEC`, bursts of
//! twice that) and the count of the user's sockets here, which the handshake checks against
//! `MAX_SOCKETS_PER_USER` together with presence's cluster-wide count.
//!
//! Both are per node, kept in memory: a REST write costs no Redis round trip. Behind a load
//! balancer that spreads one user's requests over N nodes, that user's write budget is N times
//! the rate (see `docs/security.md`); the socket limit is cluster-wide through presence.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One user's write budget: a token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Which user's count a socket was added to (the hash of the user id, see `sockets`): lets a
/// guard give the place back without keeping the id.
#[derive(Clone, Copy, Debug)]
pub struct SocketKey(u64);

/// The node's per-user limits. Each check holds a plain mutex for a few instructions, never
/// across `.await`.
pub struct UserLimits {
    rate: f64,
    capacity: f64,
    budgets: Mutex<HashMap<String, Bucket>>,
    /// Sockets past the handshake on this node, by a 64-bit hash of the user id (entries
    /// removed at zero). A hash, not the id: the map holds an entry per connected user, and an
    /// owned id would cost a heap allocation per entry. Two users whose ids collide (a chance
    /// of about n^2 / 2^65 for n users, with keys random per process) would share one count,
    /// which can only refuse early, never admit more.
    sockets: Mutex<HashMap<u64, u32>>,
    keys: RandomState,
}

impl UserLimits {
    /// `rate` writes per second per user on average, bursts of `2 * rate`.
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        UserLimits {
            rate,
            capacity: rate * 2.0,
            budgets: Mutex::default(),
            sockets: Mutex::default(),
            keys: RandomState::new(),
        }
    }

    /// Takes one REST write from `user_id`'s budget; `Err(wait)` when it is spent, with how
    /// long until the next write would pass.
    pub fn take_write(&self, user_id: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget users whose bucket has refilled (a full bucket is the same as none), when the
        // map has doubled since the last pass: amortized O(1) per write.
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
        let limits = UserLimits::new(5);
        assert!((0..10).all(|_| limits.take_write("u").is_ok()));
        let wait = limits.take_write("u").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200));
        assert!(limits.take_write("other").is_ok(), "budgets are per user");
    }

    #[test]
    fn sockets_beyond_the_maximum_are_refused_until_one_leaves() {
        let limits = UserLimits::new(5);
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
        let limits = UserLimits::new(5);
        assert!(!limits.has_socket_here("u"));
        assert!(limits.add_socket("u", 0, 3).is_some() && limits.add_socket("u", 0, 3).is_some());
        limits.remove_socket("u");
        assert!(limits.has_socket_here("u"), "one socket left");
        limits.remove_socket("u");
        assert!(!limits.has_socket_here("u"));
        assert!(!limits.has_socket_here("v"));
    }
}
