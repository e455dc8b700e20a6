//! Events written ahead of their change's save, so that no kill loses one and none is sent for
//! a change that was not saved (PROTOCOL.md, "Webhooks": "an event is sent whatever happens to
//! the node that produced it").
//!
//! The store keeps no trace most events could be rebuilt from alone (`changed`, `by`, a read's
//! time), so before the save the use case writes a [`Pledge`] to the outbox: the event's id,
//! kind, order key and place, and a [`Check`] that tells from the store whether the change was
//! saved and holds what the event is built from. Then:
//!
//! - **The node lives**: it saves, emits, and its writer queues the event under the pledge's id
//!   and place, then forgets the pledge (`writer.rs`). A save that fails forgets it at once.
//! - **The node dies** (after the pledge, before its event is queued): the sender node's
//!   reconcile pass finds the pledge once it is older than [`grace`], reads the store, and
//!   queues the event if the change is there, or forgets the pledge if it is not. A change of a
//!   chat's settings is found by the pledge's id, which the save records in the same write
//!   (SQLite: one transaction; MongoDB: the same document update).
//!
//! While a pledge is open the sender holds the later events of its key behind it (`sender.rs`),
//! so an event queued by the reconcile pass keeps its place.

use serde::{Deserialize, Serialize};

use super::outbox::{Outbox, OutboxError, Pledge};
use super::publisher::Publisher;
use super::{Data, Endpoint, Event, WRITE_AHEAD_WAIT, deliveries, next_pos};
use crate::domain::{ChatId, MessageId, MessageStatus, ReportId, Side};
use crate::presence::Presence;
use crate::store::Store;

/// How long a pledge is left to its own node before the reconcile pass settles it: longer
/// than any save takes (the store's calls are bounded well below it), so a pledge is settled
/// only once its save has landed or never will.
const GRACE_MS: i64 = 30_000;

/// The most pledges one pass settles (the next pass takes the rest).
const SETTLE_AT_MOST: usize = 500;

/// What proves that a pledged change was saved, and what its event is built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "camelCase")]
pub enum Check {
    /// `chat.created`: the chat exists (its id is chosen before the save).
    ChatCreated { chat: String },
    /// `chat.updated`: the chat's save recorded the pledge's id.
    ChatUpdated {
        chat: String,
        changed: Vec<String>,
        by: String,
    },
    /// `message.read`: the message is read (or was the reader's own: nothing to save). `data`
    /// is the event's.
    Read {
        chat: String,
        message: String,
        reader: String,
        data: String,
    },
    /// `message.delivered`: the side's delivery mark reached the pledge's `seq`.
    Delivered {
        chat: String,
        side: String,
        data: String,
    },
    /// `message.delivered` of a message saved delivered (a recipient socket was on its node:
    /// the save moved the mark itself): the message exists. Its `seq` and time are the saved
    /// message's; its place right after that message's `message.created`.
    SavedDelivered {
        chat: String,
        message: String,
        to: String,
    },
    /// `report.created`: the report exists (its id is chosen before the save).
    ReportCreated { report: String },
    /// `report.read`: the report is read. `data` is the event's.
    ReportRead { report: String, data: String },
    /// `user.online` / `user.offline`: the presence step pledged for (a connect, a claim of a
    /// due `offline`) made the transition, recording the pledge's id as its mark
    /// (`Presence::marked`). `data` is the event's.
    UserStatus { data: String },
}

/// A pledge this node made: the id and place its event takes.
#[derive(Debug, Clone)]
pub struct Pledged {
    pub id: String,
    /// `None`: the event is placed when it is written (it follows something the pledged save
    /// creates, as [`Check::SavedDelivered`] follows its message).
    pub pos: Option<i64>,
}

impl Pledged {
    /// The same pledge, its event placed when it is written rather than at the pledge's place.
    pub fn placed_when_written(self) -> Self {
        Self { pos: None, ..self }
    }
}

/// Why a pledge could not be written: the change must not be saved either.
#[derive(Debug, thiserror::Error)]
#[error("the webhook outbox cannot be written: {0}")]
pub struct PledgeError(String);

impl Publisher {
    /// Writes the event of a change about to be saved (see the module doc) and returns its id
    /// and place, or `None` when no endpoint takes `kind`. An error means the outbox cannot be
    /// written: the caller does not save.
    pub async fn pledge(
        &self,
        kind: &'static str,
        id: String,
        key: String,
        seq: u64,
        check: Check,
    ) -> Result<Option<Pledged>, PledgeError> {
        let Some(running) = self.running() else {
            return Ok(None);
        };
        if !running.endpoints.iter().any(|e| e.wants(kind)) {
            return Ok(None);
        }
        let pos = next_pos();
        let pledge = Pledge {
            id,
            kind: kind.to_owned(),
            key,
            pos,
            seq,
            at_ms: crate::domain::now().timestamp_millis(),
            check: serde_json::to_string(&check).map_err(|e| PledgeError(e.to_string()))?,
        };
        #[cfg(any(test, feature = "test-support"))]
        running.writes_allowed().await;
        match tokio::time::timeout(WRITE_AHEAD_WAIT, running.outbox.pledge(&pledge)).await {
            Ok(Ok(())) => Ok(Some(Pledged {
                id: pledge.id,
                pos: Some(pos),
            })),
            Ok(Err(e)) => Err(PledgeError(e.0)),
            Err(_) => Err(PledgeError("timed out".into())),
        }
    }

    /// Whether some endpoint takes events of `kind` (nothing is pledged for it otherwise).
    pub fn wants(&self, kind: &str) -> bool {
        self.running()
            .is_some_and(|r| r.endpoints.iter().any(|e| e.wants(kind)))
    }

    /// Writes ahead the `user.online` (`online`) or `user.offline` of `user_id`, before the
    /// presence step that may make that transition (marking it with the pledge's id: see
    /// [`Check::UserStatus`]). `None` when no endpoint takes it, or when the outbox cannot be
    /// written: then the event is written ahead of its emission only, as without a pledge.
    pub async fn pledge_status(&self, user_id: &str, online: bool) -> Option<Pledged> {
        let kind = if online {
            "user.online"
        } else {
            "user.offline"
        };
        let data = self.status_data_now(user_id, crate::domain::now());
        let key = format!("user:{user_id}");
        let check = Check::UserStatus { data };
        match self.pledge(kind, super::fresh_id(), key, 0, check).await {
            Ok(pledged) => pledged,
            Err(e) => {
                tracing::warn!(error = %e, kind, "presence transition not pledged");
                None
            }
        }
    }

    /// Forgets a pledge whose change was not saved (the save failed). Best effort: a pledge
    /// left behind is dropped by the reconcile pass, which finds no change.
    pub async fn unpledge(&self, pledged: Option<Pledged>) {
        self.unpledge_many(pledged.into_iter().collect()).await;
    }

    /// [`Publisher::unpledge`] of several pledges, in one write.
    pub async fn unpledge_many(&self, pledged: Vec<Pledged>) {
        let Some(running) = self.running() else {
            return;
        };
        if pledged.is_empty() {
            return;
        }
        let ids: Vec<String> = pledged.into_iter().map(|p| p.id).collect();
        if let Err(e) = running.outbox.unpledge(&ids).await {
            tracing::debug!(error = %e, "pledge left to the reconcile pass");
        }
    }
}

/// How long a pledge is left to its node ([`GRACE_MS`], shortened by a test).
fn grace() -> i64 {
    #[cfg(any(test, feature = "test-support"))]
    {
        let ms = TEST_GRACE_MS.load(std::sync::atomic::Ordering::Relaxed);
        if ms > 0 {
            return ms;
        }
    }
    GRACE_MS
}

/// Test-only: the pledges' grace in ms (0: [`GRACE_MS`]).
#[cfg(any(test, feature = "test-support"))]
pub static TEST_GRACE_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Settles the pledges older than the grace: queues the events of the changes the store
/// shows, forgets the others.
pub(super) async fn settle(
    store: &dyn Store,
    presence: &dyn Presence,
    outbox: &dyn Outbox,
    endpoints: &[Endpoint],
) -> Result<(), OutboxError> {
    let before = crate::domain::now().timestamp_millis() - grace();
    let stale = outbox.stale_pledges(before, SETTLE_AT_MOST).await?;
    for pledge in stale {
        let saved = match saved_data(store, presence, &pledge).await {
            Ok(saved) => saved,
            // Read again by the next pass.
            Err(e) => {
                tracing::warn!(id = %pledge.id, error = %e, "pledge not settled: the store did not answer");
                continue;
            }
        };
        if let (Some(saved), Some(kind)) = (saved, static_kind(&pledge.kind)) {
            let (pos, seq) = saved.place.unwrap_or((pledge.pos, pledge.seq));
            let event = Event {
                id: pledge.id.clone(),
                kind,
                key: pledge.key.clone(),
                at: chrono::DateTime::from_timestamp_millis(pledge.at_ms).unwrap_or_default(),
                data: Data::Json(saved.data),
                unread: None,
                pos: Some(pos),
                seq,
                pledged: true,
            };
            let rows = deliveries(&event, endpoints, pos);
            // Queued before the pledge goes: a kill between the two leaves a pledge whose
            // deliveries are there already, which the next pass queues again as nothing.
            outbox.enqueue(&rows).await?;
            tracing::info!(id = %pledge.id, kind, "a dead node's pledged webhook queued");
        } else {
            tracing::info!(id = %pledge.id, kind = %pledge.kind, "pledged change not saved: no webhook");
        }
        outbox.unpledge(&[pledge.id]).await?;
    }
    Ok(())
}

/// What a settled pledge's event is made of.
struct Saved {
    data: String,
    /// Its place and the message it follows, when not the pledge's.
    place: Option<(i64, u64)>,
}

impl From<String> for Saved {
    fn from(data: String) -> Self {
        Self { data, place: None }
    }
}

/// The event's data if the pledged change was saved; `None` if it was not.
async fn saved_data(
    store: &dyn Store,
    presence: &dyn Presence,
    pledge: &Pledge,
) -> Result<Option<Saved>, String> {
    let check: Check = match serde_json::from_str(&pledge.check) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(id = %pledge.id, error = %e, "unreadable pledge dropped");
            return Ok(None);
        }
    };
    let err = |e: crate::store::StoreError| e.to_string();
    if let Check::SavedDelivered { chat, message, to } = check {
        let chat = ChatId::from_trusted(chat);
        let id = MessageId::from_trusted(message);
        let found = store.message(&chat, &id).await.map_err(err)?;
        return Ok(found.map(|m| Saved {
            data: saved_delivered_data(&m, &to),
            place: Some((super::message_pos(&m) + 1, m.seq)),
        }));
    }
    let data = match check {
        Check::ChatCreated { chat } => store
            .chat(&ChatId::from_trusted(chat))
            .await
            .map_err(err)?
            .map(|chat| serde_json::json!({ "chat": chat }).to_string()),
        Check::ChatUpdated { chat, changed, by } => {
            let id = ChatId::from_trusted(chat);
            if !store.chat_has_change(&id, &pledge.id).await.map_err(err)? {
                return Ok(None);
            }
            store.chat(&id).await.map_err(err)?.map(|chat| {
                serde_json::json!({ "chat": chat, "changed": changed, "by": by }).to_string()
            })
        }
        Check::Read {
            chat,
            message,
            reader,
            data,
        } => store
            .message(
                &ChatId::from_trusted(chat),
                &MessageId::from_trusted(message),
            )
            .await
            .map_err(err)?
            .filter(|m| m.status == MessageStatus::Read || m.sender_id == reader)
            .map(|_| data),
        Check::Delivered { chat, side, data } => {
            let side = if side == "staff" {
                Side::Staff
            } else {
                Side::User
            };
            store
                .chat(&ChatId::from_trusted(chat))
                .await
                .map_err(err)?
                .filter(|c| c.delivered.of(side) >= pledge.seq)
                .map(|_| data)
        }
        Check::ReportCreated { report } => store
            .report(&ReportId::from_trusted(report))
            .await
            .map_err(err)?
            .map(|report| serde_json::json!({ "report": report }).to_string()),
        Check::ReportRead { report, data } => store
            .report(&ReportId::from_trusted(report))
            .await
            .map_err(err)?
            .filter(|r| r.read_at.is_some())
            .map(|_| data),
        Check::UserStatus { data } => presence
            .marked(&pledge.id)
            .await
            .map_err(|e| e.to_string())?
            .then_some(data),
        Check::SavedDelivered { .. } => None,
    };
    Ok(data.map(Saved::from))
}

/// `message.delivered` of `message`, saved delivered to `to` (as `message:delivered`).
fn saved_delivered_data(message: &crate::domain::Message, to: &str) -> String {
    serde_json::json!({
        "chatId": message.chat_id,
        "messageId": message.id,
        "deliveredTo": to,
        "deliveredAt": message
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
}

/// The event type's name as the code spells it (pledges are made only of these).
fn static_kind(kind: &str) -> Option<&'static str> {
    [
        "chat.created",
        "chat.updated",
        "message.read",
        "message.delivered",
        "report.created",
        "report.read",
        "user.online",
        "user.offline",
    ]
    .into_iter()
    .find(|k| *k == kind)
}
