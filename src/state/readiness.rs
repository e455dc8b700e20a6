//! What `/readyz` answers from: whether the store and Redis answered the last probes of the
//! node's watcher (`http::health::watch_dependencies`), and since when they have not.
//!
//! A node that has been ready turns `503` only once a dependency has been unreachable for
//! [`READINESS_GRACE`], so a Redis blip of a second or two (a restart, a Sentinel or cluster
//! failover) does not make every node of a cluster refuse new clients at once; a dependency
//! that never answered since start-up gets no grace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a dependency may be unreachable before `/readyz` turns `503` (PROTOCOL.md allows
/// at most 5 s). Counted from the first failed probe, which comes at most
/// `2 * PROBE_INTERVAL` after the outage began: `503` between 3 and 4 s into an outage.
pub const READINESS_GRACE: Duration = Duration::from_secs(3);

/// How often the store and Redis are probed; also the bound on one probe.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// What the watcher last learnt about one dependency.
#[derive(Default)]
pub struct Watched {
    /// `None` while reachable; else since when it has been unreachable. A std lock, held for a
    /// copy.
    down: Mutex<Option<Down>>,
    /// It answered at least once: only then does the grace apply.
    ever_up: AtomicBool,
    /// Some real operation on it succeeded since the last probe (`note_answer`): a probe that
    /// times out meanwhile found it slow under load, not unreachable.
    answered: AtomicBool,
}

#[derive(Clone, Copy)]
struct Down {
    since: Instant,
}

impl Watched {
    /// A dependency not yet probed: unreachable since now, with no grace.
    fn unknown() -> Self {
        Self {
            down: Mutex::new(Some(Down {
                since: Instant::now(),
            })),
            ever_up: Default::default(),
            answered: Default::default(),
        }
    }

    /// An operation on the dependency succeeded (one relaxed store per operation).
    pub fn note_answer(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }

    /// Whether an operation succeeded since the last call.
    pub fn take_answered(&self) -> bool {
        self.answered.swap(false, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a probe's outcome; returns whether reachability changed.
    pub fn record(&self, up: bool, now: Instant) -> bool {
        let mut down = self.lock();
        let was_up = down.is_none();
        if up {
            *down = None;
            self.ever_up.store(true, Ordering::Relaxed);
        } else if was_up {
            *down = Some(Down { since: now });
        }
        was_up != up
    }

    /// The last probe succeeded.
    pub fn reachable(&self) -> bool {
        self.lock().is_none()
    }

    /// The node may take clients as far as this dependency goes: reachable, or unreachable
    /// for less than [`READINESS_GRACE`] after having been reachable.
    pub fn usable(&self, now: Instant) -> bool {
        match *self.lock() {
            None => true,
            Some(d) => {
                self.ever_up.load(Ordering::Relaxed)
                    && now.saturating_duration_since(d.since) < READINESS_GRACE
            }
        }
    }
}

/// The node's readiness inputs, kept current by [`watch_dependencies`].
pub struct Readiness {
    /// The store (MongoDB or the embedded one); shared with the store's timing, which notes
    /// every answer.
    pub store: Arc<Watched>,
    /// Redis (the adapter and presence); always reachable on a node without `REDIS_URL`.
    pub adapter: Watched,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            store: Arc::new(Watched::unknown()),
            adapter: Watched::unknown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_never_reached_is_not_usable() {
        let w = Watched::unknown();
        assert!(!w.usable(Instant::now()));
    }

    #[test]
    fn an_outage_is_tolerated_for_the_grace_then_not() {
        let w = Watched::unknown();
        let t0 = Instant::now();
        assert!(w.record(true, t0));
        assert!(w.usable(t0));
        assert!(w.record(false, t0));
        assert!(!w.record(false, t0 + Duration::from_secs(1)), "no change");
        assert!(!w.reachable());
        assert!(w.usable(t0 + READINESS_GRACE - Duration::from_millis(1)));
        assert!(!w.usable(t0 + READINESS_GRACE));
        assert!(w.record(true, t0 + READINESS_GRACE));
        assert!(w.usable(t0 + READINESS_GRACE));
    }

    #[test]
    fn answers_between_probes_are_taken_once() {
        let w = Watched::unknown();
        assert!(!w.take_answered());
        w.note_answer();
        w.note_answer();
        assert!(w.take_answered());
        assert!(!w.take_answered(), "until the next answer");
    }

    #[test]
    fn the_grace_counts_from_the_first_failed_probe() {
        let w = Watched::unknown();
        let t0 = Instant::now();
        w.record(true, t0);
        w.record(false, t0);
        w.record(false, t0 + Duration::from_secs(2));
        assert!(!w.usable(t0 + READINESS_GRACE + Duration::from_millis(1)));
    }
}
