//! `chat.unread`: messages to one side of a chat still unread `UNREAD_REMINDER_SECS` after the
//! first of them was sent. The writer plans a look at each (chat, side) a message was sent to
//! (the first unread one's time plus the reminder); the sender node looks when it is due, from
//! what the store holds then:
//!
//! - no unread message to that side: nothing (the recipient read in time);
//! - an unread message the last reminder already covered: nothing (once per unread stretch,
//!   until a read moves the mark);
//! - else, the oldest unread one sent long enough ago: one `chat.unread` (its id names the
//!   chat, the side and that message, so a look repeated after a crash is one event), else a
//!   look again when it will be.
//!
//! The look reads the newest [`LOOK_BACK`] messages: an unread stretch longer than that counts
//! as that many.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::outbox::{Outbox, UnreadWatch};
use super::writer::retry;
use super::{Endpoint, Event, Lease, deliveries, next_pos};
use crate::domain::{ChatId, HistoryPage, Message, MessageStatus, Side, Timestamp};
use crate::presence::Presence;
use crate::store::Store;

/// How many of a chat's newest messages a look reads.
const LOOK_BACK: usize = 100;
/// How many unread messages a reminder carries.
const CARRIED: usize = 10;

pub struct Reminders {
    pub after: Duration,
    pub store: Arc<dyn Store>,
    pub presence: Arc<dyn Presence>,
    pub outbox: Arc<dyn Outbox>,
    pub endpoints: Vec<Endpoint>,
    pub lease: Arc<Lease>,
    pub wake: Arc<Notify>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatUnread<'a> {
    chat_id: &'a str,
    side: &'a str,
    recipients: Vec<String>,
    unread_count: usize,
    #[serde(serialize_with = "crate::domain::rfc3339")]
    first_unread_at: Timestamp,
    messages: &'a [Message],
    recipient_online: bool,
}

pub async fn run(r: Reminders) {
    let every = (r.after / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        tokio::time::sleep(every).await;
        if !r.lease.is_held() {
            continue;
        }
        let now = crate::domain::now().timestamp_millis();
        let due = match r.outbox.due_unread(now, 200).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the chat.unread watches");
                continue;
            }
        };
        for w in due {
            if let Err(e) = look(&r, w).await {
                tracing::warn!(error = %e, "chat.unread look failed; it stays due");
            }
        }
    }
}

async fn look(r: &Reminders, mut w: UnreadWatch) -> Result<(), String> {
    let side = if w.side == "user" {
        Side::User
    } else {
        Side::Staff
    };
    let chat_id = ChatId::parse(&w.chat_id).map_err(|e| e.message.to_string())?;
    let Some(chat) = r.store.chat(&chat_id).await.map_err(|e| e.to_string())? else {
        w.due_ms = None;
        return r.outbox.set_unread(&w).await.map_err(|e| e.to_string());
    };
    let mut messages = r
        .store
        .messages(&chat_id, HistoryPage::Latest, LOOK_BACK)
        .await
        .map_err(|e| e.to_string())?;
    messages.reverse();
    let unread: Vec<Message> = messages
        .into_iter()
        .filter(|m| Side::of(m.sender_role) != side && m.status != MessageStatus::Read)
        .collect();
    let now = crate::domain::now();
    w.due_ms = None;
    let covered = unread.iter().any(|m| m.seq <= w.fired_upto);
    if let (false, Some(first)) = (covered, unread.first()) {
        let due = first.timestamp + chrono::Duration::from_std(r.after).unwrap_or_default();
        if due > now {
            w.due_ms = Some(due.timestamp_millis());
        } else {
            let recipients: Vec<String> = match side {
                Side::User => chat.participants.iter().take(1).cloned().collect(),
                Side::Staff => chat.participants.iter().skip(1).cloned().collect(),
            };
            let mut online = false;
            for p in &recipients {
                online |= r.presence.status(p).await.is_ok_and(|s| s.sockets > 0);
            }
            if recipients.is_empty() {
                online = r.presence.staff_online().await.ok().flatten().is_some();
            }
            let data = ChatUnread {
                chat_id: chat_id.as_str(),
                side: side.as_str(),
                recipients,
                unread_count: unread.len(),
                first_unread_at: first.timestamp,
                messages: &unread[..unread.len().min(CARRIED)],
                recipient_online: online,
            };
            let event = Event::new(
                "chat.unread",
                format!(
                    "unread_{}_{}_{}",
                    chat_id.as_str(),
                    side.as_str(),
                    first.seq
                ),
                format!("chat:{}", chat_id.as_str()),
                now,
                &data,
            )
            .following(unread.last().map_or(0, |m| m.seq));
            let rows = deliveries(&event, &r.endpoints, next_pos());
            retry("queue chat.unread", || r.outbox.enqueue(&rows)).await;
            w.fired_upto = unread.last().map_or(w.fired_upto, |m| m.seq);
            r.wake.notify_waiters();
        }
    }
    r.outbox.set_unread(&w).await.map_err(|e| e.to_string())
}
