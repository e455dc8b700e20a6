//! The publishing seam the use cases see ([`Publisher`]) and what it shares with this node's
//! writer ([`Running`]): a queue bounded in bytes.
//!
//! Two ways in, by what a node killed right after the save would leave:
//!
//! - **Re-derived** (`message.created`, and the events pledged before their save:
//!   [`Event::is_rederived`]): [`Publisher::publish`] queues it without waiting. When the queue
//!   is full (the outbox cannot be written, or not as fast as events come) the event is left out
//!   and counted (`switchboard_webhook_events_deferred_total`): the sender's reconcile pass
//!   queues it from the saved message or settles its pledge, as it does for a node that died.
//! - **Written ahead** (`user.*`, presence transitions, no save): [`Publisher::publish_durable`]
//!   waits for room in the queue (back-pressure: its emission waits too) and then for the
//!   outbox write, at most [`WRITE_AHEAD_WAIT`], before the emission goes out.
//!
//! The queue's bound is `WEBHOOK_QUEUE_BYTES` (each event costs its size, in KiB rounded up, at
//! least one), so memory stays bounded however long the outbox is away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{Data, Endpoint, Event, Lease, Outbox};
use crate::domain::{Role, Timestamp};
use crate::metrics::WebhookMetrics;

/// The longest a written-ahead event's emission waits for the outbox write. Past it (the outbox
/// is slow or away) the emission goes out and the event stays queued in memory until written.
pub const WRITE_AHEAD_WAIT: Duration = Duration::from_secs(5);

/// The queue's unit of account: one permit per KiB.
const UNIT: usize = 1024;

/// One queued event, with its room in the queue (given back once it is written) and whoever
/// waits for its write.
pub(crate) struct Queued {
    pub event: Event,
    /// Dropped once the event is in the outbox.
    pub _room: OwnedSemaphorePermit,
    /// Told once the event is in the outbox (written-ahead events).
    pub written: Option<oneshot::Sender<()>>,
}

/// What the running webhooks share with the publisher, the writer and the operator's routes.
pub struct Running {
    pub(crate) tx: mpsc::UnboundedSender<Queued>,
    /// Events published here and not yet in the outbox (a drain waits for them).
    pub(crate) unwritten: AtomicUsize,
    /// The queue's room, in KiB.
    pub(crate) room: Arc<Semaphore>,
    /// The queue's size, in KiB.
    pub(crate) capacity: usize,
    /// Whether `chat.unread` looks are planned (message events are queued for them even when
    /// no endpoint takes `message.created`).
    pub(crate) plans_unread: bool,
    pub(crate) metrics: WebhookMetrics,
    pub outbox: Arc<dyn Outbox>,
    pub endpoints: Vec<Endpoint>,
    /// Wakes this node's senders (a new delivery, a re-send).
    pub wake: Arc<Notify>,
    /// Whether this node sends (released when it drains).
    pub lease: Arc<Lease>,
    /// The `message.created` events written here, for the reconcile pass (`queued.rs`).
    pub(crate) queued_messages: Arc<super::queued::QueuedMessages>,
    /// Test-only: the writer waits while set (an outbox that cannot be written).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) writes_held: std::sync::atomic::AtomicBool,
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) writes_released: Notify,
}

impl Running {
    /// The bytes the queue holds now (for the gauge).
    pub(crate) fn note_queue(&self) {
        let used = self.capacity - self.room.available_permits().min(self.capacity);
        self.metrics.set_queue_bytes(used * UNIT);
    }

    /// Test-only: waits while writes are held.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) async fn writes_allowed(&self) {
        loop {
            let released = self.writes_released.notified();
            if !self.writes_held.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }

    #[cfg(not(any(test, feature = "test-support")))]
    pub(crate) async fn writes_allowed(&self) {}

    /// The event's cost in KiB: at least one, at most the whole queue.
    fn cost(&self, event: &Event) -> u32 {
        let bytes = match &event.data {
            Data::Json(j) => j.len(),
            Data::UserStatus { user_id } => user_id.len() + 64,
        } + event.id.len()
            + event.key.len()
            + 64;
        bytes.div_ceil(UNIT).clamp(1, self.capacity) as u32
    }

    /// Whether anything is done with events of this kind here.
    fn takes(&self, event: &Event) -> bool {
        self.endpoints.iter().any(|e| e.wants(event.kind))
            || (self.plans_unread && event.unread.is_some())
    }

    fn queue(
        &self,
        event: Event,
        room: OwnedSemaphorePermit,
        written: Option<oneshot::Sender<()>>,
    ) {
        self.unwritten.fetch_add(1, Ordering::AcqRel);
        let queued = Queued {
            event,
            _room: room,
            written,
        };
        if self.tx.send(queued).is_err() {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
        }
        self.note_queue();
    }
}

/// The publishing seam the use cases see: off (no endpoint configured) until `app.rs` starts
/// the webhooks.
#[derive(Default)]
pub struct Publisher {
    pub(crate) running: OnceLock<Arc<Running>>,
    /// The role of each user with a socket on this node, for `user.*` events (a user who went
    /// offline is forgotten once announced).
    roles: Mutex<HashMap<String, Role>>,
}

impl Publisher {
    /// Whether any endpoint is configured (callers skip building events otherwise).
    pub fn enabled(&self) -> bool {
        self.running.get().is_some()
    }

    pub fn running(&self) -> Option<&Arc<Running>> {
        self.running.get()
    }

    /// Events published on this node and not yet written to the outbox: a drain waits until
    /// there are none.
    pub fn unwritten(&self) -> usize {
        self.running
            .get()
            .map_or(0, |r| r.unwritten.load(Ordering::Acquire))
    }

    /// Queues a re-derived event (see the module doc) without waiting: a channel send, or,
    /// with the queue full, nothing but a count (the reconcile pass queues it from the store).
    pub fn publish(&self, event: Event) {
        let Some(running) = self.running.get() else {
            return;
        };
        let event = self.with_role(event);
        if !running.takes(&event) {
            return;
        }
        match running
            .room
            .clone()
            .try_acquire_many_owned(running.cost(&event))
        {
            Ok(room) => running.queue(event, room, None),
            Err(_) => {
                running.metrics.deferred.inc();
                tracing::debug!(id = %event.id, "webhook queue full: left to the reconcile pass");
            }
        }
    }

    /// Queues an event the store cannot give back and waits until it is in the outbox (at most
    /// [`WRITE_AHEAD_WAIT`]); with the queue full, waits for room first.
    pub async fn publish_durable(&self, event: Event) {
        let Some(running) = self.running.get() else {
            return;
        };
        let event = self.with_role(event);
        if !running.takes(&event) {
            return;
        }
        let Ok(room) = running
            .room
            .clone()
            .acquire_many_owned(running.cost(&event))
            .await
        else {
            return;
        };
        let (written, done) = oneshot::channel();
        running.queue(event, room, Some(written));
        if tokio::time::timeout(WRITE_AHEAD_WAIT, done).await.is_err() {
            tracing::warn!("webhook outbox slow: an event goes out before its webhook is written");
        }
    }

    /// Remembers a user's role for their `user.*` events.
    pub fn note_role(&self, user_id: &str, role: Role) {
        if self.enabled() {
            let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
            roles.insert(user_id.to_owned(), role);
        }
    }

    /// Whether this node remembers `user_id`'s role (a `user.offline` claimed here for a user
    /// whose sockets were on another node does not: the caller looks it up in the directory).
    pub fn knows_role(&self, user_id: &str) -> bool {
        let roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
        roles.contains_key(user_id)
    }

    /// Test-only: holds this node's outbox writes (as an outbox that cannot be written would)
    /// until called with `false`.
    #[cfg(any(test, feature = "test-support"))]
    pub fn hold_writes(&self, held: bool) {
        if let Some(r) = self.running.get() {
            r.writes_held.store(held, Ordering::SeqCst);
            r.writes_released.notify_waiters();
        }
    }

    /// A `user.*` event's data, with the role this node remembers.
    fn with_role(&self, mut event: Event) -> Event {
        let Data::UserStatus { user_id } = &event.data else {
            return event;
        };
        let role = {
            let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
            match event.kind {
                "user.offline" => roles.remove(user_id),
                _ => roles.get(user_id).copied(),
            }
        };
        event.data = Data::Json(status_data(user_id, role, event.at));
        event
    }

    /// The data of `user_id`'s `user.*` event at `at`, with the role this node remembers (kept:
    /// the event itself is yet to come).
    pub(crate) fn status_data_now(&self, user_id: &str, at: Timestamp) -> String {
        let role = {
            let roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
            roles.get(user_id).copied()
        };
        status_data(user_id, role, at)
    }
}

/// `user.*` data: `{ userId, role, at }`.
fn status_data(user_id: &str, role: Option<Role>, at: Timestamp) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct UserData<'a> {
        user_id: &'a str,
        role: Option<&'static str>,
        #[serde(serialize_with = "crate::domain::rfc3339")]
        at: Timestamp,
    }
    serde_json::to_string(&UserData {
        user_id,
        role: role.map(Role::as_str),
        at,
    })
    .unwrap_or_default()
}
