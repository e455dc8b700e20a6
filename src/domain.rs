//! Domain types: what a chat, a message and a report are, and the validated inputs that create
//! them.
//!
//! Payloads are parsed into these types at the edge (socket events, REST bodies); everything
//! inside trusts them. The structs serialize to exactly the wire shapes of PROTOCOL.md.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::AppError;

/// Longest id a client may name (user ids, order ids, `clientMessageId`).
pub const MAX_ID_LEN: usize = 64;
/// Longest text message, in code points after trimming.
pub const MAX_CONTENT_LEN: usize = 5_000;
/// Longest file name, in code points.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest report title, in code points.
pub const MAX_REPORT_TITLE_LEN: usize = 200;
/// Longest report body, in code points.
pub const MAX_REPORT_MESSAGE_LEN: usize = 2_000;
/// Longest chat title, in code points.
pub const MAX_CHAT_TITLE_LEN: usize = 200;

/// A timestamp in UTC, written as RFC 3339 with milliseconds.
pub type Timestamp = DateTime<Utc>;

/// Serializes a timestamp as RFC 3339 UTC (`2026-11-22T04:13:05.123Z`).
pub fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn rfc3339_opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// The current time, truncated to milliseconds so that what is stored and what is sent agree.
pub fn now() -> Timestamp {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Generates a new 24-hex-digit id in the shape of a MongoDB ObjectId (time, randomness, counter),
/// so ids sort roughly by creation time and old frontends that expect ObjectIds keep working.
pub fn new_object_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static PROCESS: std::sync::OnceLock<[u8; 5]> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(rand::random);
    let secs = Utc::now().timestamp() as u32;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Is this string a well-formed id of ours (24 lowercase hex digits)?
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

macro_rules! object_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ": 24 hex digits.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id.
            pub fn generate() -> Self {
                Self(new_object_id())
            }
            /// Parses a client-given id; a malformed one is `VALIDATION`.
            pub fn parse(s: &str) -> Result<Self, AppError> {
                if is_object_id(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(AppError::validation(concat!("malformed ", $what, " id")))
                }
            }
            /// Wraps an id read back from a store, which only holds ids it was given.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

object_id!(ChatId, "chat");
object_id!(MessageId, "message");
object_id!(ReportId, "report");
object_id!(FileId, "file");

/// Checks a client-given id (user id, order id, ...): 1 to 64 characters, no control characters.
pub fn parse_plain_id(field: &str, s: &str) -> Result<String, AppError> {
    let n = s.chars().count();
    if n == 0 || n > MAX_ID_LEN || s.chars().any(char::is_control) {
        return Err(AppError::validation(format!(
            "{field} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(s.to_owned())
}

/// Checks that a text has `min..=max` code points.
pub fn check_len(field: &str, s: &str, min: usize, max: usize) -> Result<(), AppError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(AppError::validation(format!(
            "{field} must be {min} to {max} characters"
        )));
    }
    Ok(())
}

/// What a token says a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    Superadmin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            "superadmin" => Some(Self::Superadmin),
            _ => None,
        }
    }
    /// `admin` and `superadmin` are both staff.
    pub fn is_staff(self) -> bool {
        matches!(self, Self::Admin | Self::Superadmin)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Superadmin => "superadmin",
        }
    }
}

/// An authenticated caller, as its token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl AuthUser {
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }
}

// ---------------------------------------------------------------------------------------------
// Chats

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatStatus {
    Open,
    Closed,
}

impl ChatStatus {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(AppError::validation("status must be 'open' or 'closed'")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// The last message of a chat, kept on the chat for list views.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastMessage {
    pub text: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
    pub sender: String,
}

/// A support chat.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: ChatId,
    pub participants: Vec<String>,
    pub chat_type: &'static str,
    pub title: String,
    pub status: ChatStatus,
    pub priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_admin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<LastMessage>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: Timestamp,
}

/// The only chat type there is.
pub const CHAT_TYPE_SUPPORT: &str = "support";

impl Chat {
    pub fn is_participant(&self, user_id: &str) -> bool {
        self.participants.iter().any(|p| p == user_id)
    }
    /// May this caller see and write to the chat? Staff see every chat.
    pub fn admits(&self, user: &AuthUser) -> bool {
        user.is_staff() || self.is_participant(&user.id)
    }
}

/// A chat in a list, with what the caller has not read yet.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSummary {
    #[serde(flatten)]
    pub chat: Chat,
    pub unread_count: u64,
}

/// A chat to create.
#[derive(Debug, Clone)]
pub struct NewChat {
    pub participants: Vec<String>,
    pub title: String,
    pub priority: Priority,
    pub assigned_admin: Option<String>,
}

/// A change to a chat's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChatPatch {
    pub status: Option<ChatStatus>,
    pub priority: Option<Priority>,
    pub assigned_admin: Option<String>,
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
    /// Whose unread messages to count.
    pub reader: String,
}

// ---------------------------------------------------------------------------------------------
// Messages

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    File,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::File => "file",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "file" => Some(Self::File),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Sent,
    Read,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Read => "read",
        }
    }
}

/// A saved chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub seq: u64,
    pub sender_id: String,
    pub sender_name: String,
    pub sender_role: Role,
    pub content: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: Timestamp,
    pub status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// The body of a message, validated: what `message:send` and `POST .../messages` carry.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageBody {
    pub content: String,
    pub kind: MessageType,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
}

/// The raw `message` object of `message:send`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageBodyInput {
    pub content: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
}

impl MessageBody {
    /// Validates a message body. `file_url_ok` says whether a `fileUrl` is one this deployment
    /// issued or an https URL.
    pub fn parse(
        input: MessageBodyInput,
        file_url_ok: impl Fn(&str) -> bool,
    ) -> Result<Self, AppError> {
        let kind = match input.kind.as_deref() {
            None => MessageType::Text,
            Some(k) => MessageType::parse(k)
                .ok_or_else(|| AppError::validation("message.type must be 'text' or 'file'"))?,
        };
        let content = input.content.unwrap_or_default().trim().to_owned();
        match kind {
            MessageType::Text => {
                check_len("message.content", &content, 1, MAX_CONTENT_LEN)?;
                if input.file_url.is_some() || input.file_name.is_some() {
                    return Err(AppError::validation(
                        "a text message has no fileUrl or fileName",
                    ));
                }
                Ok(Self {
                    content,
                    kind,
                    file_url: None,
                    file_name: None,
                })
            }
            MessageType::File => {
                check_len("message.content", &content, 0, MAX_CONTENT_LEN)?;
                let file_url = input
                    .file_url
                    .ok_or_else(|| AppError::validation("a file message needs fileUrl"))?;
                if file_url.len() > 2048 || !file_url_ok(&file_url) {
                    return Err(AppError::validation(
                        "fileUrl must come from the upload API or be an https URL",
                    ));
                }
                let file_name = input
                    .file_name
                    .ok_or_else(|| AppError::validation("a file message needs fileName"))?;
                check_len("message.fileName", &file_name, 1, MAX_FILE_NAME_LEN)?;
                Ok(Self {
                    content,
                    kind,
                    file_url: Some(file_url),
                    file_name: Some(file_name),
                })
            }
        }
    }

    /// The text shown as a chat's last message.
    pub fn preview(&self) -> String {
        if self.content.is_empty() {
            self.file_name.clone().unwrap_or_default()
        } else {
            self.content.clone()
        }
    }
}

/// Parses an optional `clientMessageId`.
pub fn parse_client_message_id(v: Option<String>) -> Result<Option<String>, AppError> {
    v.map(|s| parse_plain_id("clientMessageId", &s)).transpose()
}

/// A message to save; the store assigns `id`, `seq` and `timestamp`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub sender: AuthUser,
    pub body: MessageBody,
    pub client_message_id: Option<String>,
}

/// What saving a message did.
#[derive(Debug, Clone)]
pub enum Saved<T> {
    /// Saved now.
    Created(T),
    /// A retry: this is what was saved the first time; nothing new was saved.
    Existing(T),
}

impl<T> Saved<T> {
    pub fn into_inner(self) -> T {
        match self {
            Self::Created(t) | Self::Existing(t) => t,
        }
    }
    pub fn is_created(&self) -> bool {
        matches!(self, Self::Created(_))
    }
}

/// Which page of a chat's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryPage {
    /// The newest messages, newest first.
    Latest,
    /// Messages with `seq < before`, newest first.
    Before(u64),
    /// Messages with `seq > after`, oldest first.
    After(u64),
}

/// What `message:read` did.
#[derive(Debug, Clone)]
pub struct ReadReceipt {
    pub chat_id: ChatId,
    pub message_id: MessageId,
    pub read_by: String,
    pub read_at: Timestamp,
    /// How many messages changed from `sent` to `read`.
    pub marked: u64,
}

// ---------------------------------------------------------------------------------------------
// Reports

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    Info,
    Warning,
    Issue,
    Summary,
}

impl ReportStatus {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "Info" => Ok(Self::Info),
            "Warning" => Ok(Self::Warning),
            "Issue" => Ok(Self::Issue),
            "Summary" => Ok(Self::Summary),
            _ => Err(AppError::validation(
                "status must be one of Info, Warning, Issue, Summary",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "Info",
            Self::Warning => "Warning",
            Self::Issue => "Issue",
            Self::Summary => "Summary",
        }
    }
}

/// A report message from staff to a user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub id: ReportId,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    pub title: String,
    pub message: String,
    pub status: ReportStatus,
    pub sent_by: String,
    pub sent_by_name: String,
    pub is_read: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    pub read_at: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
}

/// The raw body of `sendReportMessage` and `POST /api/reports`. `sentBy` is ignored if present.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportInput {
    pub user_id: String,
    pub order_id: Option<String>,
    pub payment_id: Option<String>,
    pub invoice_id: Option<String>,
    pub title: String,
    pub message: String,
    pub status: String,
}

/// A report to save, validated.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub user_id: String,
    pub order_id: Option<String>,
    pub payment_id: Option<String>,
    pub invoice_id: Option<String>,
    pub title: String,
    pub message: String,
    pub status: ReportStatus,
    pub sent_by: String,
    pub sent_by_name: String,
}

impl NewReport {
    /// Validates a report; `sender` is the caller, whose id becomes `sentBy`.
    pub fn parse(input: ReportInput, sender: &AuthUser) -> Result<Self, AppError> {
        let opt = |field: &str, v: Option<String>| v.map(|s| parse_plain_id(field, &s)).transpose();
        let title = input.title.trim().to_owned();
        let message = input.message.trim().to_owned();
        check_len("title", &title, 1, MAX_REPORT_TITLE_LEN)?;
        check_len("message", &message, 1, MAX_REPORT_MESSAGE_LEN)?;
        Ok(Self {
            user_id: parse_plain_id("userId", &input.user_id)?,
            order_id: opt("orderId", input.order_id)?,
            payment_id: opt("paymentId", input.payment_id)?,
            invoice_id: opt("invoiceId", input.invoice_id)?,
            title,
            message,
            status: ReportStatus::parse(&input.status)?,
            sent_by: sender.id.clone(),
            sent_by_name: sender.name.clone(),
        })
    }
}

/// Where a report list page starts: after this `(createdAt, id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportCursor {
    pub created_at: Timestamp,
    pub id: ReportId,
}

/// Which reports to list, newest first.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Only this recipient's reports; `None` lists all (staff).
    pub user_id: Option<String>,
    pub unread_only: bool,
    pub limit: usize,
    pub after: Option<ReportCursor>,
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// An uploaded file's description.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    pub id: FileId,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub uploaded_by: String,
    pub created_at: Timestamp,
}

/// The largest upload accepted.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let a = new_object_id();
        let b = new_object_id();
        assert!(is_object_id(&a) && is_object_id(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn text_content_is_trimmed_and_counted_in_code_points() {
        let ok = MessageBody::parse(
            MessageBodyInput {
                content: Some(format!("  {}  ", "é".repeat(5000))),
                kind: None,
                file_url: None,
                file_name: None,
            },
            |_| false,
        )
        .unwrap();
        assert_eq!(ok.content.chars().count(), 5000);
        let too_long = MessageBody::parse(
            MessageBodyInput {
                content: Some("é".repeat(5001)),
                kind: None,
                file_url: None,
                file_name: None,
            },
            |_| false,
        );
        assert!(too_long.is_err());
        let blank = MessageBody::parse(
            MessageBodyInput {
                content: Some("   ".into()),
                kind: None,
                file_url: None,
                file_name: None,
            },
            |_| false,
        );
        assert!(blank.is_err());
    }

    #[test]
    fn file_message_needs_an_accepted_url_and_a_name() {
        let input = |url: &str| MessageBodyInput {
            content: None,
            kind: Some("file".into()),
            file_url: Some(url.into()),
            file_name: Some("a.png".into()),
        };
        assert!(
            MessageBody::parse(input("https://cdn.example/a.png"), |u| u
                .starts_with("https://"))
            .is_ok()
        );
        assert!(
            MessageBody::parse(input("http://evil/a.png"), |u| u.starts_with("https://")).is_err()
        );
    }
}
