//! Chats: a support chat, its status and priority, and what listing and changing chats take.

use serde::{Deserialize, Serialize};

use super::{AuthUser, ChatId, DeliveryMarks, Timestamp, rfc3339, rfc3339_opt};
use crate::error::AppError;

/// Longest chat title, in code points.
pub const MAX_CHAT_TITLE_LEN: usize = 200;

/// The only chat type there is.
pub const CHAT_TYPE_SUPPORT: &str = "support";

/// Whether a chat still takes part in presence announcements and lists of open chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatStatus {
    Open,
    Closed,
}

impl ChatStatus {
    /// Parses a client-given status; anything else is `VALIDATION`.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(AppError::validation("status must be 'open' or 'closed'")),
        }
    }
    /// The status as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// How urgent staff consider a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    /// Parses a client-given priority; anything else is `VALIDATION`.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(AppError::validation(
                "priority must be 'low', 'medium' or 'high'",
            )),
        }
    }
    /// The priority as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// The last message of a chat, kept on the chat for list views.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastMessage {
    pub text: String,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub sender: String,
}

/// A support chat.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: ChatId,
    pub participants: Vec<String>,
    #[schema(value_type = String, example = "support")]
    pub chat_type: &'static str,
    pub title: String,
    pub status: ChatStatus,
    pub priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_admin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<LastMessage>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Since when the chat waits in the auto-assignment queue (absent when it does not wait).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub queued_at: Option<Timestamp>,
    /// When its assigned admin got it (absent while nobody is assigned).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub assigned_at: Option<Timestamp>,
    /// Up to where each side received the other's messages (not on the wire: it becomes each
    /// message's `status`).
    #[serde(skip)]
    pub delivered: DeliveryMarks,
}

impl Chat {
    /// Does `user_id` take part in the chat?
    pub fn is_participant(&self, user_id: &str) -> bool {
        self.participants.iter().any(|p| p == user_id)
    }
    /// May this caller see and write to the chat? Staff see every chat.
    pub fn admits(&self, user: &AuthUser) -> bool {
        user.is_staff() || self.is_participant(&user.id)
    }
}

/// The assigned admin that assigning `next` to `chat` takes out of its participants: the
/// previous one, unless it is the same, or the chat's own user (its first participant).
pub fn replaced_admin<'a>(chat: &'a Chat, next: Option<&str>) -> Option<&'a str> {
    let next = next?;
    let prev = chat.assigned_admin.as_deref()?;
    (prev != next && chat.participants.first().map(String::as_str) != Some(prev)).then_some(prev)
}

/// A chat in a list, with what the caller has not read yet.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatSummary {
    #[serde(flatten)]
    pub chat: Chat,
    pub unread_count: u64,
}

/// A chat to create.
#[derive(Debug, Clone)]
pub struct NewChat {
    /// Chosen before the save, so that what is written ahead of it (a webhook's pledge) can
    /// name the chat.
    pub id: ChatId,
    pub participants: Vec<String>,
    pub title: String,
    pub priority: Priority,
    pub assigned_admin: Option<String>,
    /// Opened into the auto-assignment queue (`queuedAt` set to its creation).
    pub queued: bool,
}

/// A change to a chat's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChatPatch {
    pub status: Option<ChatStatus>,
    pub priority: Option<Priority>,
    pub assigned_admin: Option<String>,
    /// An id the save records with the change, in the same write (a webhook's pledge:
    /// `Store::chat_has_change`).
    pub change: Option<String>,
    /// Auto-assignment: if the chat ends open with no assigned admin (a closed chat
    /// reopened), it goes back to the queue (`queuedAt` now), in the same write.
    pub queue: bool,
}

/// Where a chat list page starts: after this `(updatedAt, id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCursor {
    pub updated_at: Timestamp,
    pub id: ChatId,
}

/// Which chats to list.
#[derive(Debug, Clone)]
pub struct ChatQuery {
    /// Only chats this user takes part in; `None` lists every chat (staff).
    pub participant: Option<String>,
    pub status: Option<ChatStatus>,
    pub limit: usize,
    pub after: Option<ChatCursor>,
    /// Oldest change first, after `after` (`GET /api/chats?updatedAfter=`); else newest first,
    /// before it.
    pub ascending: bool,
    /// Whose unread messages to count.
    pub reader: String,
}

/// A support chat between user `u` and its assigned admin `s`, for unit tests.
#[cfg(test)]
pub(crate) fn test_chat() -> Chat {
    let t = crate::domain::now();
    Chat {
        id: ChatId::from_trusted("c".to_owned()),
        participants: vec!["u".to_owned(), "s".to_owned()],
        chat_type: crate::domain::CHAT_TYPE_SUPPORT,
        title: "t".to_owned(),
        status: crate::domain::ChatStatus::Open,
        priority: crate::domain::Priority::Medium,
        assigned_admin: Some("s".to_owned()),
        last_message: None,
        created_at: t,
        updated_at: t,
        queued_at: None,
        assigned_at: Some(t),
        delivered: Default::default(),
    }
}
