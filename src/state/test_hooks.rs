//! Test-only hooks (the `test-support` feature) that make a race a test must win or lose every
//! time happen every time, instead of now and then.
//!
//! [`TestHooks::hold_registrations`]: a presence registration (a late `user:online`) that has
//! passed its first "is the socket gone" check waits until that socket's disconnect has been
//! handled completely, then writes. This is the ghost-presence race of issue #13 at its worst
//! moment: only the check after the write can save it.
//!
//! [`TestHooks::kill_emissions`]: every emission stops where a node SIGKILLed between its save
//! and its emission would: after what is written ahead of it (its webhook, unless the store
//! gives that back), before anything else (a re-derived webhook's publishing, the recovery
//! log, the broadcast).
//!
//! [`TestHooks::kill_after_saves`]: the same, one step earlier: right after the save, before
//! its webhook is written (only a pledge written ahead of the save survives).
//!
//! [`TestHooks::hold_assignment_writes`]: an assignment pass stops right before its store
//! write, as one whose write hangs past the gate's lease would, until the test lets it go.
//!
//! [`TestHooks::hold_broadcasts`]: every `message:new` stops right before its broadcast (saved
//! and logged for recovery), as one still being handled when a drain closes the sockets would,
//! until the test lets it go.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a held registration waits for its socket's disconnect before going on anyway.
const HOLD_AT_MOST: Duration = Duration::from_secs(10);

/// Hooks a test turns on through the node's state.
#[derive(Default)]
pub struct TestHooks {
    /// While set, registrations wait for their socket's disconnect (see the module docs).
    hold: AtomicBool,
    /// Registrations waiting now.
    held: AtomicUsize,
    /// Sockets whose disconnect has been handled since the hold began.
    departed: Mutex<HashSet<String>>,
    /// Woken at each departure.
    departure: Notify,
    /// While set, emissions stop right after their save's written-ahead webhook.
    emissions_killed: AtomicBool,
    /// While set, emissions stop right after their save, before anything else.
    saves_killed: AtomicBool,
    /// Assignment writes wait here (a pass stalled past its gate's lease).
    assignments: Hold,
    /// Broadcasts wait here (an event still being handled when a drain closes the sockets).
    broadcasts: Hold,
    /// Staff `PATCH`es that found the assignment gate held and waited for it.
    patches_waiting: AtomicUsize,
}

impl TestHooks {
    /// From now on, a registration waits until its socket has disconnected and been taken out
    /// of presence. Turn it on once the sockets are registered: their connect handler's own
    /// registration would wait too.
    pub fn hold_registrations(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Called by a registration before it writes.
    pub async fn before_registration(&self, socket_id: &str) {
        if !self.hold.load(Ordering::SeqCst) {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let waited = tokio::time::timeout(HOLD_AT_MOST, async {
            loop {
                let departure = self.departure.notified();
                if self.lock().contains(socket_id) {
                    return;
                }
                departure.await;
            }
        })
        .await;
        self.held.fetch_sub(1, Ordering::SeqCst);
        if waited.is_err() {
            tracing::warn!(
                socket_id,
                "held registration: the socket never disconnected"
            );
        }
    }

    /// From now on (`true`) or no longer, every emission stops where a node killed between
    /// its save and its emission would (see the module docs).
    pub fn kill_emissions(&self, killed: bool) {
        self.emissions_killed.store(killed, Ordering::SeqCst);
    }

    /// From now on (`true`) or no longer, every emission stops where a node killed right
    /// after its save would: before anything is written for it (its webhook included), so only
    /// what was written ahead of the save (`webhooks/pledges.rs`) and the store know of it.
    pub fn kill_after_saves(&self, killed: bool) {
        self.saves_killed.store(killed, Ordering::SeqCst);
    }

    /// Whether emissions stop right after their save (see [`TestHooks::kill_after_saves`]).
    pub fn saves_killed(&self) -> bool {
        self.saves_killed.load(Ordering::SeqCst)
    }

    /// From now on (`true`) or no longer, an assignment pass stops right before its store
    /// write (after confirming the gate) until let go: a pass stalled past its lease.
    pub fn hold_assignment_writes(&self, held: bool) {
        self.assignments.set(held);
    }

    /// How many assignment writes wait now (see [`TestHooks::hold_assignment_writes`]).
    pub fn assignment_writes_waiting(&self) -> usize {
        self.assignments.waiting()
    }

    /// Called by an assignment pass right before its store write.
    pub async fn before_assignment_write(&self) {
        self.assignments
            .wait(HOLD_AT_MOST * 6, "held assignment write: never let go")
            .await;
    }

    /// From now on (`true`) or no longer, every `message:new` stops right before its broadcast
    /// until let go (see the module docs); other events (the drain's own `user:status`) pass.
    pub fn hold_broadcasts(&self, held: bool) {
        self.broadcasts.set(held);
    }

    /// How many emissions wait before their broadcast now (see [`TestHooks::hold_broadcasts`]).
    pub fn broadcasts_waiting(&self) -> usize {
        self.broadcasts.waiting()
    }

    /// Called by an emission of `event` right before its broadcast.
    pub async fn before_broadcast(&self, event: &str) {
        if event != "message:new" {
            return;
        }
        self.broadcasts
            .wait(HOLD_AT_MOST, "held broadcast: never let go")
            .await;
    }

    /// Called by a staff `PATCH` that found the assignment gate held (it waits for it).
    pub fn patch_waits_for_gate(&self) {
        self.patches_waiting.fetch_add(1, Ordering::SeqCst);
    }

    /// How many staff `PATCH`es waited for the assignment gate.
    pub fn patches_waited_for_gate(&self) -> usize {
        self.patches_waiting.load(Ordering::SeqCst)
    }

    /// Whether emissions stop after their save (see [`TestHooks::kill_emissions`]).
    pub fn emissions_killed(&self) -> bool {
        self.emissions_killed.load(Ordering::SeqCst)
    }

    /// Registrations waiting for their socket's disconnect now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Called once a socket's disconnect has been handled (it is out of presence).
    pub fn departed(&self, socket_id: &str) {
        if self.hold.load(Ordering::SeqCst) {
            self.lock().insert(socket_id.to_owned());
            self.departure.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.departed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A point where, while held, callers wait until let go (bounded).
#[derive(Default)]
struct Hold {
    /// While set, callers of [`Hold::wait`] wait.
    held: AtomicBool,
    /// Callers waiting now.
    waiting: AtomicUsize,
    /// Woken when the hold is let go.
    released: Notify,
}

impl Hold {
    fn set(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
        if !held {
            self.released.notify_waiters();
        }
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Returns at once when not held; else once let go, or after `at_most` (logging `late`).
    async fn wait(&self, at_most: Duration, late: &'static str) {
        if !self.held.load(Ordering::SeqCst) {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waited = tokio::time::timeout(at_most, async {
            loop {
                let released = self.released.notified();
                if !self.held.load(Ordering::SeqCst) {
                    return;
                }
                released.await;
            }
        })
        .await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if waited.is_err() {
            tracing::warn!("{late}");
        }
    }
}
