//! Once per socket: a recoverable event (one recovery offset) reaches no socket twice, even when
//! the cluster broadcasts it twice.
//!
//! The one emission the cluster broadcasts again under the same offset is the outage replay
//! (`src/cluster/redis/outage.rs`): after a Redis outage a node re-publishes the events the
//! other nodes may have missed: the ones whose publish failed, and every emission of the 2 s
//! before a pub/sub reconnect. Many of them did reach the other nodes. Two filters keep them
//! from reaching a socket again:
//!
//! - [`SeenOffsets`], one per node, asked once per broadcast that reaches the node (the vendored
//!   socketioxide's `admit_broadcasts`, before any socket is chosen, even when none matches): an
//!   offset this node already broadcast is not delivered again. Every socket that was in the
//!   event's rooms then got it (live, or held and released during its own recovery); a socket
//!   that came later is either new (its client loads what is saved) or resumed, and a resumed
//!   client had the event from its previous node (which got the same publish as this one) or
//!   from its replay (the log holds every event before it is broadcast). So the whole node
//!   drops it; a broadcast it never saw before is delivered as always.
//! - The replay's skip set ([`Replayed`]): a resumed socket gets, from the log, events whose
//!   broadcast may reach its node only later (the outage replay, or a publish still on its way);
//!   those are dropped for that socket alone (the vendored socketioxide's `skip_broadcasts`).
//!
//! Neither is a high-water mark: offsets from different nodes reach a socket out of offset
//! order (and an outage replay is, by construction, late), so "drop what is not newer than the
//! last one" would drop legitimate events. Both compare exact offsets. For the same reason a
//! resumed socket's handshake offset is not used as a floor: a client that got a later event
//! from its own node may still lack an earlier one that only the outage replay brings.
//!
//! What this trades: the node-wide filter trusts that a client which resumed here after the
//! event reached this node had it already. That fails only when its previous node missed the
//! publish this node got (that node's own Redis connection broke, not Redis) and the client
//! got later events there before resuming past the event's offset: it then misses that event
//! live (as it would have without the outage replay) and catches up with `chat:sync`. The
//! alternative, a socket delivered whatever it was not itself sent, duplicates the event for
//! every client that moved nodes, the common case after a failover.
//!
//! Cost: a broadcast without an offset (typing indicators) pays a look at its last bytes; one
//! with an offset, a parse of it and one lock, hash insert and queue push per node (no
//! allocation once the set has grown). Memory: the offsets of the last `horizon` (the recovery
//! window), at most [`MAX_SEEN`] (about 40 bytes each). A socket without a replay pays one
//! atomic load per packet for the skip hook.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use socketioxide_core::Value;

use super::{Offset, offset_of_packet};

/// The most offsets a node remembers (about 4 MB): beyond it the oldest are forgotten, and a
/// replay of one of those would be delivered again.
pub const MAX_SEEN: usize = 100_000;

/// The offsets this node has broadcast (see the module documentation).
pub struct SeenOffsets {
    inner: Mutex<Seen>,
    horizon_ms: u64,
}

#[derive(Default)]
struct Seen {
    set: HashSet<Offset>,
    /// The same offsets in the order they came, for forgetting the oldest.
    order: VecDeque<Offset>,
    /// The newest `ms` seen: offsets older than it by more than the horizon are forgotten.
    newest_ms: u64,
}

impl SeenOffsets {
    /// Remembers offsets for `horizon` (of log time): an outage replay comes within the
    /// recovery window or not at all from the log's point of view.
    pub fn new(horizon: Duration) -> SeenOffsets {
        SeenOffsets {
            inner: Mutex::default(),
            horizon_ms: horizon.as_millis() as u64,
        }
    }

    /// Whether this node delivers the broadcast event `data` (its encoded `[event, ...args]`):
    /// yes unless it carries a recovery offset this node already broadcast.
    pub fn admit(&self, data: &Value) -> bool {
        match data {
            Value::Str(text, _) => offset_of_packet(text).is_none_or(|o| self.first(o)),
            Value::Bytes(_) => true,
        }
    }

    /// Notes `offset`; whether it is the first time.
    pub fn first(&self, offset: Offset) -> bool {
        let mut seen = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.set.insert(offset) {
            return false;
        }
        seen.order.push_back(offset);
        seen.newest_ms = seen.newest_ms.max(offset.ms);
        let oldest = seen.newest_ms.saturating_sub(self.horizon_ms);
        while let Some(&front) = seen.order.front() {
            if front.ms >= oldest && seen.order.len() <= MAX_SEEN {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&front);
        }
        true
    }

    /// Offsets remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The offsets one resumed socket got from its replay, sorted: the broadcasts it must not get
/// again (see the module documentation).
pub struct Replayed(Box<[Offset]>);

impl Replayed {
    pub fn new(offsets: impl IntoIterator<Item = Offset>) -> Replayed {
        let mut all: Vec<Offset> = offsets.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        Replayed(all.into_boxed_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `offset` was replayed.
    pub fn contains(&self, offset: Offset) -> bool {
        self.0.binary_search(&offset).is_ok()
    }

    /// Whether the encoded packet `value` carries an offset that was replayed.
    pub fn covers(&self, value: &Value) -> bool {
        match value {
            Value::Str(text, _) => offset_of_packet(text).is_some_and(|o| self.contains(o)),
            Value::Bytes(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: &str) -> Value {
        Value::Str(
            format!(r#"["message:new",{{"message":{{"seq":1}}}},"{offset}"]"#).into(),
            None,
        )
    }

    #[test]
    fn an_offset_is_admitted_once_and_events_without_one_always() {
        let seen = SeenOffsets::new(Duration::from_secs(120));
        assert!(seen.admit(&event("1000-0")));
        assert!(seen.admit(&event("1000-1")));
        assert!(!seen.admit(&event("1000-0")), "the same offset again");
        // Out of offset order is not a duplicate.
        assert!(seen.admit(&event("999-5")));
        let typing = Value::Str(r#"["user:typing",{"chatId":"c"}]"#.into(), None);
        assert!(seen.admit(&typing) && seen.admit(&typing));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn offsets_older_than_the_horizon_are_forgotten() {
        let seen = SeenOffsets::new(Duration::from_secs(10));
        assert!(seen.first(Offset { ms: 1_000, seq: 0 }));
        assert!(seen.first(Offset { ms: 5_000, seq: 0 }));
        assert!(seen.first(Offset { ms: 12_000, seq: 0 }));
        assert_eq!(seen.len(), 2, "1000 is more than 10 s older than 12000");
        assert!(!seen.first(Offset { ms: 5_000, seq: 0 }));
    }

    #[test]
    fn a_replay_covers_exactly_its_offsets() {
        let replayed = Replayed::new(["7-1", "3-0", "7-1"].map(|o| Offset::parse(o).unwrap()));
        let packet = |o: &str| Value::Str(format!(r#"2["message:new",{{}},"{o}"]"#).into(), None);
        assert!(replayed.covers(&packet("3-0")) && replayed.covers(&packet("7-1")));
        assert!(!replayed.covers(&packet("5-0")));
        assert!(!replayed.covers(&Value::Str(r#"2["user:typing",{}]"#.into(), None)));
    }
}
