//! The webhook outbox: every (event, endpoint) delivery, kept until it is acknowledged (then
//! kept a while longer as delivered, so a re-derived event with the same id is not queued
//! again) or kept as failed once its retry time is over. Shared by the whole cluster: the
//! SQLite file beside the embedded store (`outbox/sqlite.rs`), or a MongoDB collection
//! (`outbox/mongo.rs`). The watches of `chat.unread` live here too.
//!
//! Only the sender of the cluster (the lease holder) reads and updates deliveries; any node
//! queues them.

use async_trait::async_trait;

pub mod mongo;
pub mod sqlite;

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending = 0,
    Delivered = 1,
    Failed = 2,
}

impl State {
    pub fn from_i64(v: i64) -> Self {
        match v {
            1 => Self::Delivered,
            2 => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub endpoint: String,
    /// The `webhook-id`: the same for every endpoint and every attempt.
    pub id: String,
    /// The event type (`message.created`, ...).
    pub kind: String,
    /// What its order is kept under: `chat:{id}`, `user:{id}` or `report:{userId}`.
    pub key: String,
    /// Queue order (microseconds since the epoch when it happened, and a tie-breaker).
    pub pos: i64,
    /// For a chat's events, the newest message of the chat it follows: a `message.created`'s
    /// own `seq`, a read's or a delivery's message, a reminder's last unread one (0: none). The
    /// sender keeps a chat's events behind the messages they follow (`sender.rs`).
    pub seq: u64,
    /// When it happened (ms since the epoch): the body's `timestamp`.
    pub at_ms: i64,
    /// The body's `data`, as JSON.
    pub data: String,
    pub state: State,
    pub attempts: u32,
    /// Not before this (ms since the epoch).
    pub next_ms: i64,
    /// When it was queued or re-sent (ms): the retry time counts from here.
    pub queued_ms: i64,
    /// The last failure, for the operator.
    pub last_error: Option<String>,
}

/// An endpoint's backlog, for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    pub pending: u64,
    pub failed: u64,
    /// When the oldest pending delivery was queued (ms), if any.
    pub oldest_pending_ms: Option<i64>,
}

/// A (chat, side) whose unread messages are to be looked at (`chat.unread`).
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadWatch {
    pub chat_id: String,
    /// `user` or `staff`: the side the messages were sent to.
    pub side: String,
    /// Look at it then (ms); `None`: nothing to look at until a new message.
    pub due_ms: Option<i64>,
    /// The newest `seq` the last reminder covered (0: none yet).
    pub fired_upto: u64,
}

/// The event of a change about to be saved, written ahead of the save (`pledges.rs`): the
/// node that saves it turns it into deliveries once it has published the event; a node that
/// died first leaves it to the reconcile pass, which queues the event if the store shows the
/// change and drops it if not.
#[derive(Debug, Clone, PartialEq)]
pub struct Pledge {
    /// The event's `webhook-id`.
    pub id: String,
    pub kind: String,
    pub key: String,
    /// Its queue order: later events of its key wait while it is open.
    pub pos: i64,
    /// The message of its chat it follows (see [`Delivery::seq`]).
    pub seq: u64,
    /// When it happened (ms): the body's `timestamp`.
    pub at_ms: i64,
    /// What proves the change was saved and what the event is built from
    /// (`pledges::Check`, as JSON).
    pub check: String,
}

/// What the writer writes at once ([`Outbox::write_batch`]).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub deliveries: Vec<Delivery>,
    /// The ids of the pledges these deliveries fulfil.
    pub fulfilled: Vec<String>,
    /// `chat.unread` looks to plan: `(chat_id, side, due_ms)`.
    pub watches: Vec<(String, String, i64)>,
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
#[error("webhook outbox: {0}")]
pub struct OutboxError(pub String);

pub type OutboxResult<T> = Result<T, OutboxError>;

/// Where deliveries are kept.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Queues deliveries; one already there (same endpoint and id) is left as it is.
    async fn enqueue(&self, deliveries: &[Delivery]) -> OutboxResult<()>;
    /// The writer's batch (`writer.rs`): queues its deliveries, then forgets the pledges they
    /// fulfil, then plans its `chat.unread` looks (see [`Outbox::watch_unread_many`]); in one
    /// write where the backend can, else one after another. Repeating it is harmless.
    async fn write_batch(&self, batch: &Batch) -> OutboxResult<()> {
        self.enqueue(&batch.deliveries).await?;
        if !batch.fulfilled.is_empty() {
            self.unpledge(&batch.fulfilled).await?;
        }
        if !batch.watches.is_empty() {
            self.watch_unread_many(&batch.watches).await?;
        }
        Ok(())
    }
    /// An endpoint's pending deliveries in queue order, at most `limit`.
    async fn pending(&self, endpoint: &str, limit: usize) -> OutboxResult<Vec<Delivery>>;
    /// Records an attempt's outcome: the new state, attempts, next time and error.
    async fn update(&self, d: &Delivery) -> OutboxResult<()>;
    /// Records several attempts' outcomes (the sender's batch); one by one unless the backend
    /// does better.
    async fn update_many(&self, ds: &[Delivery]) -> OutboxResult<()> {
        for d in ds {
            self.update(d).await?;
        }
        Ok(())
    }
    /// Failed deliveries, newest first, of one endpoint or all.
    async fn failed(&self, endpoint: Option<&str>, limit: usize) -> OutboxResult<Vec<Delivery>>;
    /// Turns failed deliveries (of one endpoint or all; these ids or all) back to pending, to
    /// be sent now with a fresh retry time; how many.
    async fn resend(
        &self,
        endpoint: Option<&str>,
        ids: Option<&[String]>,
        now_ms: i64,
    ) -> OutboxResult<u64>;
    /// One endpoint's backlog.
    async fn backlog(&self, endpoint: &str) -> OutboxResult<Backlog>;
    /// Forgets delivered deliveries acknowledged before `before_ms`.
    async fn prune(&self, before_ms: i64) -> OutboxResult<u64>;

    /// Writes a pledge ahead of its change's save (one already there is left as it is).
    async fn pledge(&self, p: &Pledge) -> OutboxResult<()>;
    /// Forgets these pledges (their events are queued, or their change was not saved).
    async fn unpledge(&self, ids: &[String]) -> OutboxResult<()>;
    /// Pledges made before `before_ms` (by [`Pledge::pos`]), oldest first, at most `limit`.
    async fn stale_pledges(&self, before_ms: i64, limit: usize) -> OutboxResult<Vec<Pledge>>;
    /// Each key with open pledges and the oldest one's position, at most `limit` keys: the
    /// sender holds a key's later deliveries behind it.
    async fn pledged_keys(&self, limit: usize) -> OutboxResult<Vec<(String, i64)>>;

    /// A message to `side` of `chat_id` was saved: look at the chat at `due_ms`, unless a look
    /// is already planned (the earlier one stays).
    async fn watch_unread(&self, chat_id: &str, side: &str, due_ms: i64) -> OutboxResult<()>;
    /// [`Outbox::watch_unread`] for a batch of `(chat_id, side, due_ms)`; one by one unless
    /// the backend does better.
    async fn watch_unread_many(&self, watches: &[(String, String, i64)]) -> OutboxResult<()> {
        for (chat_id, side, due_ms) in watches {
            self.watch_unread(chat_id, side, *due_ms).await?;
        }
        Ok(())
    }
    /// Watches due by `now_ms`, at most `limit`.
    async fn due_unread(&self, now_ms: i64, limit: usize) -> OutboxResult<Vec<UnreadWatch>>;
    /// Stores a watch after a look.
    async fn set_unread(&self, w: &UnreadWatch) -> OutboxResult<()>;
}
