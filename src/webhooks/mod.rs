//! Webhooks (PROTOCOL.md, "Webhooks (Standard Webhooks)"): what happened, told to the
//! product's backend by signed HTTP POSTs that are retried until acknowledged.
//!
//! The path of one event:
//!
//! 1. **Publish** ([`Publisher::publish`]): a server event that is also a webhook says so
//!    ([`crate::service::events::ServerEvent::webhook`]); `AppState::emit` hands it here. No I/O
//!    on the caller's path: the event goes to this node's writer.
//! 2. **Queue** (`writer.rs`): the writer batches events into the [`Outbox`] (one delivery per
//!    endpoint whose filter takes it; SQLite beside the embedded store, or MongoDB), retrying
//!    while the outbox is down, and plans the `chat.unread` looks.
//! 3. **Derive from what was saved** (`reconcile.rs`): a node that died between saving a message
//!    and emitting it never published it; the sender re-reads the recently changed chats and
//!    queues every saved message (its `webhook-id` is the message's, so a message queued twice
//!    is one delivery).
//! 4. **Send** (`sender.rs`): one sender per endpoint, on one node of the cluster at a time
//!    (`lease.rs`: a Redis lease; another node takes over when it lapses), one event of a chat
//!    (or user) in flight at a time, exponential backoff with jitter, kept as failed after
//!    `WEBHOOK_RETRY_FOR_SECS`.
//! 5. **Remind** (`unread.rs`): `chat.unread` for messages still unread after
//!    `UNREAD_REMINDER_SECS`.
//!
//! Below `service` and `state` (which hold a [`Publisher`]); uses only `store`, `presence`,
//! `metrics`, `config` and `domain`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::{Role, Side, Timestamp};

pub mod lease;
pub mod outbox;
mod reconcile;
mod sender;
pub mod settings;
pub mod signing;
mod unread;
mod writer;

pub use lease::Lease;
pub use outbox::{Delivery, Outbox, State};
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
        }
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

/// What the running webhooks share with the publisher and the operator's routes.
pub struct Running {
    tx: mpsc::UnboundedSender<Event>,
    /// Events published here and not yet in the outbox (a drain waits for them).
    unwritten: Arc<std::sync::atomic::AtomicUsize>,
    pub outbox: Arc<dyn Outbox>,
    pub endpoints: Vec<Endpoint>,
    /// Wakes this node's senders (a new delivery, a re-send).
    pub wake: Arc<tokio::sync::Notify>,
    /// Whether this node sends (released when it drains).
    pub lease: Arc<Lease>,
}

/// The publishing seam the use cases see: off (no endpoint configured) until `app.rs` starts
/// the webhooks; publishing then costs a channel send.
#[derive(Default)]
pub struct Publisher {
    running: OnceLock<Arc<Running>>,
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

    /// Queues an event for every endpoint that takes it.
    pub fn publish(&self, mut event: Event) {
        let Some(running) = self.running.get() else {
            return;
        };
        if let Data::UserStatus { user_id } = &event.data {
            let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
            let role = match event.kind {
                "user.offline" => roles.remove(user_id),
                _ => roles.get(user_id).copied(),
            };
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct UserData<'a> {
                user_id: &'a str,
                role: Option<&'static str>,
                #[serde(serialize_with = "crate::domain::rfc3339")]
                at: Timestamp,
            }
            let json = serde_json::to_string(&UserData {
                user_id,
                role: role.map(Role::as_str),
                at: event.at,
            })
            .unwrap_or_default();
            event.data = Data::Json(json);
        }
        running.unwritten.fetch_add(1, Ordering::AcqRel);
        if running.tx.send(event).is_err() {
            running.unwritten.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Remembers a user's role for their `user.*` events.
    pub fn note_role(&self, user_id: &str, role: Role) {
        if self.enabled() {
            let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
            roles.insert(user_id.to_owned(), role);
        }
    }
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
    let unwritten = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    let running = Arc::new(Running {
        tx,
        unwritten: unwritten.clone(),
        outbox: parts.outbox.clone(),
        endpoints: parts.endpoints.clone(),
        wake: wake.clone(),
        lease: parts.lease.clone(),
    });
    if publisher.running.set(running).is_err() {
        return Vec::new();
    }
    let mut tasks: Vec<Task> = vec![
        Box::pin(writer::run(
            rx,
            unwritten,
            parts.outbox.clone(),
            parts.endpoints.clone(),
            parts.settings.unread_reminder(),
            wake.clone(),
        )),
        Box::pin(parts.lease.clone().hold()),
        Box::pin(reconcile::run(
            parts.store.clone(),
            parts.outbox.clone(),
            parts.endpoints.clone(),
            parts.lease.clone(),
            parts.settings.unread_reminder(),
        )),
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
            parts.outbox.clone(),
            parts.lease.clone(),
            wake.clone(),
            parts.metrics.clone(),
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
    event
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
