//! The documents the MongoDB store reads and writes, and their conversion to domain types.
//! Field names follow the old Node backend's models; ids are stored as ObjectIds.

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::domain::{
    CHAT_TYPE_SUPPORT, Chat, ChatId, ChatStatus, DeliveryMarks, LastMessage, Message, MessageId,
    MessageStatus, MessageType, Priority, Report, ReportId, ReportStatus, Role, Side, Timestamp,
};
use crate::store::{StoreError, StoreResult};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChatDoc {
    #[serde(rename = "_id")]
    pub(super) id: ObjectId,
    pub(super) participants: Vec<String>,
    pub(super) chat_type: String,
    pub(super) title: String,
    pub(super) status: ChatStatus,
    pub(super) priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) assigned_admin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) last_message: Option<LastMessageDoc>,
    /// The last `seq` handed out in this chat.
    pub(super) seq: i64,
    /// Up to where the user side received staff messages (absent in chats made before
    /// delivery status: 0).
    #[serde(default)]
    pub(super) delivered_to_user: i64,
    /// Up to where the staff side received the user's messages.
    #[serde(default)]
    pub(super) delivered_to_staff: i64,
    pub(super) created_at: DateTime,
    pub(super) updated_at: DateTime,
    /// Since when the chat waits in the auto-assignment queue; absent (never null) when it
    /// does not, so that `$exists` finds the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) queued_at: Option<DateTime>,
    /// When its assigned admin got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) assigned_at: Option<DateTime>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LastMessageDoc {
    pub(super) text: String,
    pub(super) created_at: DateTime,
    pub(super) sender: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessageDoc {
    #[serde(rename = "_id")]
    pub(super) id: ObjectId,
    pub(super) chat_id: ObjectId,
    pub(super) seq: i64,
    pub(super) sender_id: String,
    pub(super) sender_name: String,
    pub(super) sender_role: Role,
    pub(super) content: String,
    #[serde(rename = "type")]
    pub(super) kind: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) file_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) file_name: Option<String>,
    /// Also the TTL field when retention is on.
    pub(super) timestamp: DateTime,
    pub(super) status: MessageStatus,
    /// Absent (not null) when the client sent none: the unique index is partial on `$exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_message_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReportDoc {
    #[serde(rename = "_id")]
    pub(super) id: ObjectId,
    pub(super) user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) invoice_id: Option<String>,
    pub(super) title: String,
    pub(super) message: String,
    pub(super) status: ReportStatus,
    pub(super) sent_by: String,
    pub(super) sent_by_name: String,
    pub(super) is_read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) read_at: Option<DateTime>,
    pub(super) created_at: DateTime,
}

pub(super) fn bson_time(t: Timestamp) -> DateTime {
    DateTime::from_millis(t.timestamp_millis())
}

pub(super) fn domain_time(t: DateTime) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or_default()
}

/// Our ids are ObjectId-shaped (24 hex digits), so they are stored as real ObjectIds.
pub(super) fn oid(id: &str) -> StoreResult<ObjectId> {
    ObjectId::parse_str(id).map_err(|e| StoreError::Internal(format!("id {id}: {e}")))
}

impl From<ChatDoc> for Chat {
    fn from(d: ChatDoc) -> Self {
        Chat {
            id: ChatId::from_trusted(d.id.to_hex()),
            participants: d.participants,
            chat_type: CHAT_TYPE_SUPPORT,
            title: d.title,
            status: d.status,
            priority: d.priority,
            assigned_admin: d.assigned_admin,
            last_message: d.last_message.map(|l| LastMessage {
                text: l.text,
                created_at: domain_time(l.created_at),
                sender: l.sender,
            }),
            created_at: domain_time(d.created_at),
            updated_at: domain_time(d.updated_at),
            queued_at: d.queued_at.map(domain_time),
            assigned_at: d.assigned_at.map(domain_time),
            delivered: DeliveryMarks {
                user: d.delivered_to_user.max(0) as u64,
                staff: d.delivered_to_staff.max(0) as u64,
            },
        }
    }
}

/// The chat field holding `side`'s delivered-up-to mark.
pub(super) fn delivered_field(side: Side) -> &'static str {
    match side {
        Side::User => "deliveredToUser",
        Side::Staff => "deliveredToStaff",
    }
}

impl From<MessageDoc> for Message {
    fn from(d: MessageDoc) -> Self {
        Message {
            id: MessageId::from_trusted(d.id.to_hex()),
            chat_id: ChatId::from_trusted(d.chat_id.to_hex()),
            seq: d.seq as u64,
            sender_id: d.sender_id,
            sender_name: d.sender_name,
            sender_role: d.sender_role,
            content: d.content,
            kind: d.kind,
            file_url: d.file_url,
            file_name: d.file_name,
            timestamp: domain_time(d.timestamp),
            status: d.status,
            client_message_id: d.client_message_id,
        }
    }
}

impl From<ReportDoc> for Report {
    fn from(d: ReportDoc) -> Self {
        Report {
            id: ReportId::from_trusted(d.id.to_hex()),
            user_id: d.user_id,
            order_id: d.order_id,
            payment_id: d.payment_id,
            invoice_id: d.invoice_id,
            title: d.title,
            message: d.message,
            status: d.status,
            sent_by: d.sent_by,
            sent_by_name: d.sent_by_name,
            is_read: d.is_read,
            read_at: d.read_at.map(domain_time),
            created_at: domain_time(d.created_at),
        }
    }
}
