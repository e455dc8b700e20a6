//! The server events of PROTOCOL.md (server -> client): their names and payloads, serialized
//! straight from the domain types by the adapter (no JSON tree in between).

use serde::Serialize;

use crate::domain::{ChatId, Message, MessageId, Report, ReportId, Timestamp, rfc3339};

pub const MESSAGE_NEW: &str = "message:new";
pub const USER_TYPING: &str = "user:typing";
pub const MESSAGE_READ: &str = "message:read";
pub const MESSAGE_DELIVERED: &str = "message:delivered";
pub const USER_STATUS: &str = "user:status";
pub const RECEIVE_REPORT: &str = "receiveReportMessage";
pub const REPORT_SENT: &str = "reportMessageSent";
pub const REPORT_READ: &str = "report:read";
pub const ERROR: &str = "error";

/// The events connection state recovery logs and replays (they carry their offset as a last
/// argument); typing indicators, `reportMessageSent`, `error` and acks are never replayed.
pub const RECOVERABLE: [&str; 6] = [
    MESSAGE_NEW,
    MESSAGE_READ,
    MESSAGE_DELIVERED,
    USER_STATUS,
    RECEIVE_REPORT,
    REPORT_READ,
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageNew<'a> {
    pub chat_id: &'a ChatId,
    pub message: &'a Message,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingEvent<'a> {
    pub chat_id: &'a ChatId,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub is_typing: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRead<'a> {
    pub chat_id: &'a ChatId,
    pub message_id: &'a MessageId,
    pub read_by: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}

/// Once per transition of a (chat, side)'s delivery mark: `message_id` is the newest message
/// that became delivered.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelivered<'a> {
    pub chat_id: &'a ChatId,
    pub message_id: &'a MessageId,
    pub delivered_to: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub delivered_at: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus<'a> {
    pub user_id: &'a str,
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct ReceiveReport<'a> {
    pub success: bool,
    pub message: &'a Report,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRead<'a> {
    pub report_id: &'a ReportId,
    pub user_id: &'a str,
    #[serde(serialize_with = "rfc3339")]
    pub read_at: Timestamp,
}
