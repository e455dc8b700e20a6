//! Webhooks (PROTOCOL.md, "Webhooks (Standard Webhooks)"): what happened, told to the
//! product's backend by signed HTTP POSTs that are retried until acknowledged.
//!
//! The path of one event:
//!
//! 1. **Publish** (`publisher.rs`): a server event that is also a webhook says so
//!    ([`crate::service::events::ServerEvent::webhook`]); `Emitter::emit` (`service/emit.rs`)
//!    hands it here in the event's emission turn. The event of a save the store cannot give
//!    back alone was pledged before the save (`pledges.rs`, through `Emitter::pledge`) and is
//!    queued without waiting, as `message.created` is; `user.*` (presence, no save) are written
//!    to the outbox before their emission goes out. The queue is bounded
//!    (`WEBHOOK_QUEUE_BYTES`): when it is full, `message.created` and pledged events are left
//!    to step 3 and the others wait for room.
//! 2. **Queue** (`writer.rs`): the writer batches events into the [`Outbox`] (one delivery per
//!    endpoint whose filter takes it; SQLite beside the embedded store, or MongoDB), retrying
//!    while the outbox is down, and plans the `chat.unread` looks.
//! 3. **Derive from what was saved** (`reconcile.rs`): a node that died between saving a message
//!    and emitting it never published it; the sender re-reads the recently changed chats and
//!    queues every saved message at its own place in its chat (its `webhook-id` is the
//!    message's, so a message queued twice is one delivery), and settles the pledges of dead
//!    nodes from the store (`pledges.rs`). What this node's writer queued is not read again
//!    (`queued.rs`).
//! 4. **Send** (`sender.rs`): one sender per endpoint, on one node of the cluster at a time
//!    (`lease.rs`: a Redis lease; another node takes over when it lapses), one event of a chat
//!    (or user) in flight at a time, a chat's messages in `seq` order (one whose predecessor may
//!    still come from step 3 waits for it), exponential backoff with jitter, kept as failed
//!    after `WEBHOOK_RETRY_FOR_SECS`.
//! 5. **Remind** (`unread.rs`): `chat.unread` for messages still unread after
//!    `UNREAD_REMINDER_SECS`.
//!
//! Below `service` and `state` (which hold a [`Publisher`]); uses only `store`, `presence`,
//! `metrics`, `config` and `domain`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};

use crate::domain::{Side, Timestamp};

pub mod lease;
pub mod outbox;
pub mod pledges;
mod publisher;
mod queued;
mod reconcile;
mod sender;
pub mod settings;
pub mod signing;
mod unread;
mod writer;

pub use lease::Lease;
pub use outbox::{Delivery, Outbox, State};
pub use pledges::{Check, PledgeError, Pledged};
pub use publisher::{Publisher, Running, WRITE_AHEAD_WAIT};
#[cfg(any(test, feature = "test-support"))]
pub use reconcile::TEST_CHATS_PER_PASS;
pub use settings::{Endpoint, WebhookSettings};

/// One event to report, as the use case that caused it describes it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The `webhook-id`: stable for events that can be derived twice (a saved message), else
    /// fresh.
    pub id: String,
    /// The event type (`message.created`, ...).
    pub kind: &'static str,
    /// Its order key: `chat:{id}`, `user:{id}` or `report:{userId}`.
    pub key: String,
    /// When it happened (the body's `timestamp`).
    pub at: Timestamp,
    /// The body's `data`.
    pub data: Data,
    /// A message to this (chat, side): plan a `chat.unread` look.
    pub unread: Option<(String, Side)>,
    /// Its queue order when it is derived from saved data ([`message_pos`]); else the
    /// writer's clock when it is written.
    pub pos: Option<i64>,
    /// The newest message of its chat it follows (see [`Delivery::seq`]; 0: none).
    pub seq: u64,
    /// Written ahead as a pledge (`pledges.rs`): the writer forgets the pledge once the event
    /// is queued.
    pub pledged: bool,
}

/// An event's `data`.
#[derive(Debug, Clone)]
pub enum Data {
    /// Already JSON.
    Json(String),
    /// `user.online` / `user.offline`: the role is added by the publisher, which remembers it
    /// from the user's sockets.
    UserStatus { user_id: String },
}

impl Event {
    /// An event whose data is `data`, serialized.
    pub fn new(
        kind: &'static str,
        id: String,
        key: String,
        at: Timestamp,
        data: &impl Serialize,
    ) -> Self {
        Self {
            id,
            kind,
            key,
            at,
            data: Data::Json(serde_json::to_string(data).unwrap_or_else(|_| "null".into())),
            unread: None,
            pos: None,
            seq: 0,
            pledged: false,
        }
    }

    /// The same event, as the pledge written ahead of its save announced it: its id and place.
    pub fn fulfilling(mut self, pledged: &Pledged) -> Self {
        self.id = pledged.id.clone();
        self.pos = pledged.pos;
        self.pledged = true;
        self
    }

    /// The same event, following message `seq` of its chat (a read or a delivery of it).
    pub fn following(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// Whether the sender's reconcile pass derives this event from what was saved
    /// (`message.created`) or from its pledge (`pledges.rs`), so its publishing may be left
    /// out; every other event is written to the outbox ahead of its emission
    /// (`publisher.rs`).
    pub fn is_rederived(&self) -> bool {
        self.kind == "message.created" || self.pledged
    }
}

/// A fresh `webhook-id`: `evt_` and 20 random letters and digits.
pub fn fresh_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let s: String = (0..20)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect();
    format!("evt_{s}")
}

/// A background task of the webhooks, run by `app.rs` beside the node's others.
pub type Task = futures_util::future::BoxFuture<'static, ()>;

/// What the webhooks run on.
pub struct Parts {
    pub settings: WebhookSettings,
    pub endpoints: Vec<Endpoint>,
    pub outbox: Arc<dyn Outbox>,
    pub lease: Arc<Lease>,
    pub store: Arc<dyn crate::store::Store>,
    pub presence: Arc<dyn crate::presence::Presence>,
    pub metrics: crate::metrics::WebhookMetrics,
}

/// Turns `publisher` on and returns the tasks that queue, send and remind.
pub fn start(publisher: &Publisher, parts: Parts) -> Vec<Task> {
    let (tx, rx) = mpsc::unbounded_channel();
    let wake = Arc::new(tokio::sync::Notify::new());
    let capacity = parts.settings.queue_kib();
    let queued_messages = Arc::new(queued::QueuedMessages::default());
    let running = Arc::new(Running {
        tx,
        unwritten: AtomicUsize::new(0),
        room: Arc::new(Semaphore::new(capacity)),
        capacity,
        plans_unread: parts.settings.unread_reminder().is_some(),
        metrics: parts.metrics.clone(),
        outbox: parts.outbox.clone(),
        endpoints: parts.endpoints.clone(),
        wake: wake.clone(),
        lease: parts.lease.clone(),
        queued_messages: queued_messages.clone(),
        #[cfg(any(test, feature = "test-support"))]
        writes_held: Default::default(),
        #[cfg(any(test, feature = "test-support"))]
        writes_released: Default::default(),
    });
    if publisher.running.set(running.clone()).is_err() {
        return Vec::new();
    }
    // How far the reconcile pass has looked (ms): the senders hold a message whose predecessor
    // they have not seen until then (`sender.rs`).
    let reconciled = Arc::new(AtomicI64::new(0));
    let mut tasks: Vec<Task> = vec![
        Box::pin(writer::run(rx, running, parts.settings.unread_reminder())),
        Box::pin(parts.lease.clone().hold()),
        Box::pin(reconcile::run(reconcile::Reconciler {
            store: parts.store.clone(),
            presence: parts.presence.clone(),
            outbox: parts.outbox.clone(),
            endpoints: parts.endpoints.clone(),
            lease: parts.lease.clone(),
            reminder: parts.settings.unread_reminder(),
            reconciled: reconciled.clone(),
            wake: wake.clone(),
            queued: queued_messages,
            metrics: parts.metrics.clone(),
        })),
    ];
    if let Some(after) = parts.settings.unread_reminder() {
        tasks.push(Box::pin(unread::run(unread::Reminders {
            after,
            store: parts.store.clone(),
            presence: parts.presence.clone(),
            outbox: parts.outbox.clone(),
            endpoints: parts.endpoints.clone(),
            lease: parts.lease.clone(),
            wake: wake.clone(),
        })));
    }
    for endpoint in parts.endpoints {
        parts.metrics.touch(&endpoint.name);
        tasks.push(Box::pin(sender::run(sender::Sender::new(
            endpoint,
            &parts.settings,
            sender::Shared {
                outbox: parts.outbox.clone(),
                lease: parts.lease.clone(),
                wake: wake.clone(),
                metrics: parts.metrics.clone(),
                reconciled: reconciled.clone(),
            },
        ))));
    }
    tasks
}

/// The outbox of this deployment's store: a MongoDB collection beside the store's, or
/// `webhooks.db` in `DATA_DIR`.
pub async fn open_outbox(
    config: &crate::config::Config,
) -> Result<Arc<dyn Outbox>, outbox::OutboxError> {
    match &config.mongodb_uri {
        Some(uri) => {
            let outbox = outbox::mongo::MongoOutbox::connect(
                uri,
                &config.mongodb_database,
                config.mongodb_timeout,
            )
            .await?;
            if let Err(e) = outbox.create_indexes().await {
                tracing::warn!(error = %e, "webhook outbox indexes not made yet");
            }
            Ok(Arc::new(outbox))
        }
        None => Ok(Arc::new(outbox::sqlite::SqliteOutbox::open(
            &config.data_dir,
        )?)),
    }
}

/// Queue order: microseconds now, times 1000, plus a per-node counter (two events of one
/// microsecond keep their publishing order).
pub(crate) fn next_pos() -> i64 {
    static COUNTER: AtomicI64 = AtomicI64::new(0);
    let micros = crate::domain::now().timestamp_micros();
    micros * 1000 + COUNTER.fetch_add(1, Ordering::Relaxed) % 1000
}

/// The deliveries of `event`, one per endpoint that takes it.
pub(crate) fn deliveries(event: &Event, endpoints: &[Endpoint], pos: i64) -> Vec<Delivery> {
    let now = crate::domain::now().timestamp_millis();
    let data = match &event.data {
        Data::Json(j) => j.clone(),
        Data::UserStatus { .. } => "null".to_owned(),
    };
    endpoints
        .iter()
        .filter(|e| e.wants(event.kind))
        .map(|e| Delivery {
            endpoint: e.name.clone(),
            id: event.id.clone(),
            kind: event.kind.to_owned(),
            key: event.key.clone(),
            pos,
            seq: event.seq,
            at_ms: event.at.timestamp_millis(),
            data: data.clone(),
            state: State::Pending,
            attempts: 0,
            next_ms: now,
            queued_ms: now,
            last_error: None,
        })
        .collect()
}

/// `message.created` of a saved message (`{ chatId, message }`), its id the message's own: the
/// emitting node and a reconcile pass queue the same event.
pub fn message_created(message: &crate::domain::Message) -> Event {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Created<'a> {
        chat_id: &'a crate::domain::ChatId,
        message: &'a crate::domain::Message,
    }
    let mut event = Event::new(
        "message.created",
        format!("msg_{}", message.id.as_str()),
        format!("chat:{}", message.chat_id.as_str()),
        message.timestamp,
        &Created {
            chat_id: &message.chat_id,
            message,
        },
    );
    let to = Side::of(message.sender_role).other();
    event.unread = Some((message.chat_id.as_str().to_owned(), to));
    event.pos = Some(message_pos(message));
    event.seq = message.seq;
    event
}

/// A saved message's queue order, the same whoever queues it (its node or a reconcile pass):
/// the millisecond it was saved (what both stores keep), in [`next_pos`]'s units, and its `seq`
/// within that millisecond. Anything that happens to the chat after the save is queued after it.
pub fn message_pos(message: &crate::domain::Message) -> i64 {
    message.timestamp.timestamp_millis() * 1_000_000 + (message.seq % 1000) as i64
}

/// `chat.created` (`{ chat }`) or `chat.updated` (`{ chat, changed, by }`), as PROTOCOL.md's
/// `chat:created` / `chat:updated`.
pub fn chat_event(
    kind: &'static str,
    chat: &crate::domain::Chat,
    changed: Option<Vec<&'static str>>,
    by: &str,
) -> Event {
    #[derive(Serialize)]
    struct ChatData<'a> {
        chat: &'a crate::domain::Chat,
        #[serde(skip_serializing_if = "Option::is_none")]
        changed: Option<Vec<&'static str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
    }
    let at = if changed.is_some() {
        chat.updated_at
    } else {
        chat.created_at
    };
    Event::new(
        kind,
        fresh_id(),
        format!("chat:{}", chat.id.as_str()),
        at,
        &ChatData {
            chat,
            by: changed.is_some().then_some(by),
            changed,
        },
    )
}
