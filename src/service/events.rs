//! The server events of PROTOCOL.md (server -> client): one type per event, serialized straight
//! from the domain types by the adapter (no JSON tree in between).
//!
//! Each type says, through [`ServerEvent`], its wire name and whether connection state
//! recovery replays it; `Emitter::emit` (`service/emit.rs`) takes only a
//! [`ServerEvent`], so an event goes out under its own name and is logged (or not) by what its
//! type says. Adding an event is one type here and its use: no list to keep in step.

use serde::{Deserialize, Serialize};

use crate::domain::{ChatId, Message, MessageId, Report, ReportId, Role, Timestamp, rfc3339};
use crate::error::{AppError, ErrorBody};
use crate::webhooks::{Data as WebhookData, Event as Webhook, fresh_id};

/// The order key of a chat's webhook events.
fn chat_key(chat_id: &ChatId) -> String {
    format!("chat:{}", chat_id.as_str())
}

/// A server event: a payload type that knows its name (the shape of crates.io's
/// `BackgroundJob::JOB_NAME`).
///
/// A new event is a type and its use:
///
/// ```no_run
/// use switchboard::domain::ChatId;
/// use switchboard::ordering::Turn;
/// use switchboard::service::events::ServerEvent;
///
/// #[derive(serde::Serialize)]
/// #[serde(rename_all = "camelCase")]
/// struct ChatClosed<'a> {
///     chat_id: &'a ChatId,
/// }
///
/// impl ServerEvent for ChatClosed<'_> {
///     const NAME: &'static str = "chat:closed";
///     const RECOVERABLE: bool = true;
/// }
///
/// async fn close(state: &switchboard::state::AppState, chat_id: &ChatId, turn: Turn) {
///     state.emitter().emit(vec![], Vec::new(), &ChatClosed { chat_id }, turn).await;
/// }
/// ```
///
/// and nothing that is not one goes out (no name, no recoverability to go by):
///
/// ```compile_fail,E0277
/// async fn close(state: &switchboard::state::AppState) {
///     let payload = serde_json::json!({ "chatId": "c1" });
///     let turn = switchboard::ordering::Turn::unordered();
///     state.emitter().emit(vec![], Vec::new(), &payload, turn).await;
/// }
/// ```
///
/// An event's turn serves one emission (it is passed on once that emission's log append is
/// queued), so a second emission in the same turn does not build either:
///
/// ```compile_fail,E0382
/// use switchboard::service::events::UserStatus;
///
/// async fn twice(state: &switchboard::state::AppState, turn: switchboard::ordering::Turn) {
///     let status = UserStatus { user_id: "u1", status: "online" };
///     state.emitter().emit(vec![], Vec::new(), &status, turn).await;
///     state.emitter().emit(vec![], Vec::new(), &status, turn).await;
/// }
/// ```
pub trait ServerEvent: Serialize {
    /// The event name on the wire (PROTOCOL.md, server -> client).
    const NAME: &'static str;
    /// Whether connection state recovery logs it and replays it to a session that missed it
    /// (it then carries its offset as a last argument). The same events are kept through a
    /// Redis outage and delivered to the other nodes when Redis returns: an event not worth
    /// replaying to a session (a typing indicator) is stale by then too.
    const RECOVERABLE: bool;

    /// The webhook this event is reported as (PROTOCOL.md, "Webhooks"), if any:
    /// `Emitter::emit` (`service/emit.rs`) publishes it when webhooks are on.
    fn webhook(&self) -> Option<Webhook> {
        None
    }
}

/// `message:new`: a saved message, to its chat's participants and `admins`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageNew<'a> {
    pub chat_id: &'a ChatId,
    pub message: &'a Message,
}

impl ServerEvent for MessageNew<'_> {
    const NAME: &'static str = "message:new";
    const RECOVERABLE: bool = true;
    fn webhook(&self) -> Option<Webhook> {
        Some(crate::webhooks::message_created(self.message))
    }
}

/// A [`MessageNew`] read back from the recovery log (which keeps the JSON its emission
/// serialized): what a replay needs to note the message delivered. Decoded by serde from the
/// names [`Message`] serializes (`tests::a_logged_message_new_reads_back` round-trips one), never
/// picked out of a JSON tree by hand.
#[derive(Deserialize)]
pub struct LoggedMessageNew {
    pub message: LoggedMessage,
}

/// The part of a logged [`Message`] a replay reads (ids as the log holds them: it only holds
/// ids this server gave out).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedMessage {
    pub id: String,
    pub chat_id: String,
    pub seq: u64,
    pub sender_role: Role,
}

impl LoggedMessageNew {
    /// Reads back a logged `message:new` payload; `None` if it is not one.
    pub fn read(payload: &serde_json::Value) -> Option<Self> {
        Self::deserialize(payload).ok()
    }
}

/// `user:typing`: an indicator that started or stopped; never replayed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingEvent<'a> {
    pub chat_id: &'a ChatId,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub is_typing: bool,
}

impl ServerEvent for TypingEvent<'_> {
    const NAME: &'static str = "user:typing";
    const RECOVERABLE: bool = false;
}

/// `message:read`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRead<'a> {
    pub chat_id: &'a ChatId,
    pub message_id: &'a MessageId,
    /// The read message's `seq` (not on the wire: its webhook follows that message).
    #[serde(skip)]
    pub seq: u64,
    pub read_by: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}

impl ServerEvent for MessageRead<'_> {
    const NAME: &'static str = "message:read";
    const RECOVERABLE: bool = true;
    fn webhook(&self) -> Option<Webhook> {
        let key = chat_key(self.chat_id);
        Some(Webhook::new("message.read", fresh_id(), key, self.read_at, self).following(self.seq))
    }
}

/// `message:delivered`: once per transition of a (chat, side)'s delivery mark: `message_id` is
/// the newest message that became delivered.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelivered<'a> {
    pub chat_id: &'a ChatId,
    pub message_id: &'a MessageId,
    /// The delivered message's `seq` (not on the wire: its webhook follows that message).
    #[serde(skip)]
    pub seq: u64,
    pub delivered_to: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub delivered_at: Timestamp,
}

impl ServerEvent for MessageDelivered<'_> {
    const NAME: &'static str = "message:delivered";
    const RECOVERABLE: bool = true;
    fn webhook(&self) -> Option<Webhook> {
        let key = chat_key(self.chat_id);
        Some(
            Webhook::new(
                "message.delivered",
                fresh_id(),
                key,
                self.delivered_at,
                self,
            )
            .following(self.seq),
        )
    }
}

/// `user:status`: a user's presence transition.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus<'a> {
    pub user_id: &'a str,
    pub status: &'static str,
}

impl ServerEvent for UserStatus<'_> {
    const NAME: &'static str = "user:status";
    const RECOVERABLE: bool = true;
    /// Once per transition, as `user:status` itself (presence's exactly-once transitions).
    fn webhook(&self) -> Option<Webhook> {
        Some(Webhook {
            id: fresh_id(),
            kind: if self.status == "online" {
                "user.online"
            } else {
                "user.offline"
            },
            key: format!("user:{}", self.user_id),
            at: crate::domain::now(),
            data: WebhookData::UserStatus {
                user_id: self.user_id.to_owned(),
            },
            unread: None,
            pos: None,
            seq: 0,
            pledged: false,
        })
    }
}

/// `receiveReportMessage`: a report, to its recipient.
#[derive(Serialize)]
pub struct ReceiveReport<'a> {
    pub success: bool,
    pub message: &'a Report,
}

impl ServerEvent for ReceiveReport<'_> {
    const NAME: &'static str = "receiveReportMessage";
    const RECOVERABLE: bool = true;
    /// `report.created`: `{ report }`, its id the report's own.
    fn webhook(&self) -> Option<Webhook> {
        #[derive(Serialize)]
        struct Created<'a> {
            report: &'a Report,
        }
        Some(Webhook::new(
            "report.created",
            format!("rpt_{}", self.message.id.as_str()),
            format!("report:{}", self.message.user_id),
            crate::domain::now(),
            &Created {
                report: self.message,
            },
        ))
    }
}

/// `report:read`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRead<'a> {
    pub report_id: &'a ReportId,
    pub user_id: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}

impl ServerEvent for ReportRead<'_> {
    const NAME: &'static str = "report:read";
    const RECOVERABLE: bool = true;
    fn webhook(&self) -> Option<Webhook> {
        let key = format!("report:{}", self.user_id);
        Some(Webhook::new(
            "report.read",
            fresh_id(),
            key,
            self.read_at,
            self,
        ))
    }
}

/// `reportMessageSent` (and the `sendReportMessage` ack, which gets the same body): to the
/// sending socket only, never replayed.
#[derive(Serialize)]
pub struct ReportSent<'a, R> {
    ok: bool,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

impl<R> ReportSent<'_, R> {
    pub fn ok(report: R) -> Self {
        Self {
            ok: true,
            success: true,
            message: Some(report),
            error: None,
        }
    }
}

impl<'a> ReportSent<'a, ()> {
    pub fn failed(e: &'a AppError) -> Self {
        Self {
            ok: false,
            success: false,
            message: None,
            error: Some(e.body()),
        }
    }
}

impl<R: Serialize> ServerEvent for ReportSent<'_, R> {
    const NAME: &'static str = "reportMessageSent";
    const RECOVERABLE: bool = false;
}

/// `error`: a failed client event that was sent without an ack; to that socket only.
#[derive(Serialize)]
pub struct ErrorEvent<'a> {
    pub message: &'a str,
    pub error: &'static str,
    pub event: &'a str,
}

impl ServerEvent for ErrorEvent<'_> {
    const NAME: &'static str = "error";
    const RECOVERABLE: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageStatus, MessageType, now};

    /// What the replay reads back is what the emission wrote: a renamed field of [`Message`]
    /// fails here, not silently in a replay.
    #[test]
    fn a_logged_message_new_reads_back() {
        let message = Message {
            id: MessageId::generate(),
            chat_id: ChatId::generate(),
            seq: 42,
            sender_id: "u1".into(),
            sender_name: "Una".into(),
            sender_role: Role::Superadmin,
            content: "hi".into(),
            kind: MessageType::Text,
            file_url: None,
            file_name: None,
            timestamp: now(),
            status: MessageStatus::Sent,
            client_message_id: None,
        };
        let logged = serde_json::to_value(MessageNew {
            chat_id: &message.chat_id,
            message: &message,
        })
        .unwrap();
        let read = LoggedMessageNew::read(&logged).expect("reads back").message;
        assert_eq!(read.id, message.id.as_str());
        assert_eq!(read.chat_id, message.chat_id.as_str());
        assert_eq!(read.seq, 42);
        assert_eq!(read.sender_role, Role::Superadmin);
        assert!(LoggedMessageNew::read(&serde_json::json!({ "chatId": "c" })).is_none());
    }
}
