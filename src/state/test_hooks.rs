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
