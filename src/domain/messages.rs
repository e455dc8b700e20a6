//! Messages: a saved chat message, the body a client sends, and the one place where
//! `message:send` (and `POST /api/chats/{chatId}/messages`) is validated: [`SendMessage::parse`].

use serde::{Deserialize, Serialize};

use super::{AuthUser, ChatId, MessageId, Role, Timestamp, check_len, parse_plain_id, rfc3339};
use crate::error::AppError;

/// Longest text message, in code points after trimming.
pub const MAX_CONTENT_LEN: usize = 5_000;
/// Longest file name, in code points.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest `fileUrl`, in bytes.
pub const MAX_FILE_URL_LEN: usize = 2048;

/// Whether a message is text or points at a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    File,
}

impl MessageType {
    /// The type as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::File => "file",
        }
    }
    /// The type a client or a store names, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "file" => Some(Self::File),
            _ => None,
        }
    }
}

/// How far a message got: saved (`sent`), reached a recipient's socket (`delivered`), read.
/// The stores keep only `sent` / `read` per message; `delivered` is computed from the chat's
/// delivery marks ([`Message::apply_delivery`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
}

impl MessageStatus {
    /// The status as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// A saved chat message.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = String, format = DateTime)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageBodyInput {
    /// `text`: 1 to 5,000 characters after trimming (stored trimmed); `file`: may be empty.
    pub content: Option<String>,
    /// `text` when absent.
    #[serde(rename = "type")]
    #[schema(value_type = Option<MessageType>)]
    pub kind: Option<String>,
    /// `file` only: a `fileUrl` the upload API issued, or an absolute https URL (at most 2,048
    /// characters, no whitespace, quotes or angle brackets).
    #[schema(max_length = 2048)]
    pub file_url: Option<String>,
    /// `file` only: 1 to 255 characters.
    #[schema(max_length = 255)]
    pub file_name: Option<String>,
}

/// Is this a `fileUrl` a message may carry: one this deployment's upload API issued
/// (`issued_here` checks the signature, which only the caller's keys can), or an external https
/// URL that is safe to paste into an HTML attribute (see [`is_safe_https_url`])?
pub fn file_url_acceptable(url: &str, issued_here: impl Fn(&str) -> bool) -> bool {
    url.chars().count() <= MAX_FILE_URL_LEN && (is_safe_https_url(url) || issued_here(url))
}

/// An absolute `https` URL with a host that parses, with no whitespace, control characters,
/// quotes, backslashes or angle brackets: frontends put `fileUrl` into `src` and `href`
/// attributes, and a prefix test once let `https://x" onerror="alert(1)` through.
pub fn is_safe_https_url(url: &str) -> bool {
    const UNSAFE: [char; 6] = ['"', '\'', '`', '<', '>', '\\'];
    url.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || UNSAFE.contains(&c))
        && url::Url::parse(url)
            .is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()))
}

impl MessageBody {
    /// Validates a message body. `issued_here` says whether a `fileUrl` is one this deployment
    /// issued (see [`file_url_acceptable`]).
    pub fn parse(
        input: MessageBodyInput,
        issued_here: impl Fn(&str) -> bool,
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
                if !file_url_acceptable(&file_url, issued_here) {
                    return Err(AppError::validation(
                        "fileUrl must come from the upload API or be an absolute https URL \
                         (at most 2048 characters, no whitespace, quotes or angle brackets)",
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

/// The raw payload of `message:send`; `POST /api/chats/{chatId}/messages` builds the same from
/// its path and body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageInput {
    pub chat_id: String,
    pub message: MessageBodyInput,
    pub client_message_id: Option<String>,
}

/// A message to send, validated: which chat, what body, and the key that makes a retry safe.
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessage {
    pub chat_id: ChatId,
    pub body: MessageBody,
    pub client_message_id: Option<String>,
}

impl SendMessage {
    /// Validates everything `message:send` carries, in the order its errors are reported: the
    /// chat id, the body, then the `clientMessageId`. `issued_here` as for [`MessageBody::parse`].
    pub fn parse(
        input: SendMessageInput,
        issued_here: impl Fn(&str) -> bool,
    ) -> Result<Self, AppError> {
        Ok(Self {
            chat_id: ChatId::parse(&input.chat_id)?,
            body: MessageBody::parse(input.message, issued_here)?,
            client_message_id: parse_client_message_id(input.client_message_id)?,
        })
    }
}

/// A message to save; the store assigns `seq` and `timestamp`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Chosen before the save, so a save whose outcome is unknown (a store timeout: the server
    /// may still write it) can be looked up by the attempt that made it before it answers
    /// (`service/unknown_saves.rs`). A retry that finds the first save returns
    /// that one's id instead.
    pub id: MessageId,
    pub chat_id: ChatId,
    pub sender: AuthUser,
    pub body: MessageBody,
    pub client_message_id: Option<String>,
    /// A recipient socket (the other side's) is on the saving node, so the broadcast right
    /// after the save hands the message over: the save also moves the recipients' delivered
    /// mark to the new `seq`, in the same write (`docs/delivery.md`). A retry returning the
    /// first save moves nothing.
    pub delivered: bool,
}

impl NewMessage {
    /// The side the message goes to.
    pub fn recipient_side(&self) -> crate::domain::Side {
        crate::domain::Side::of(self.sender.role).other()
    }
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
    /// The saved thing, whichever save it came from.
    pub fn into_inner(self) -> T {
        match self {
            Self::Created(t) | Self::Existing(t) => t,
        }
    }
    /// Was it saved now (not a retry)?
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn external_file_urls_must_parse_and_stay_inside_an_attribute() {
        for ok in [
            "https://cdn.example/a.png",
            "https://cdn.example:8443/a%20b.png?x=1&y=2#frag",
        ] {
            assert!(is_safe_https_url(ok), "{ok}");
        }
        let long = format!("https://cdn.example/{}", "a".repeat(MAX_FILE_URL_LEN));
        for bad in [
            "https://x\" onerror=\"alert(1)",
            "https://x'onerror='alert(1)",
            "https://x/<script>",
            "https://x/a b",
            "https://x/a\tb",
            "https://",
            "https:///path",
            "https:x",
            "http://cdn.example/a.png",
            "javascript:alert(1)",
            "https://x\\y",
        ] {
            assert!(!is_safe_https_url(bad), "{bad}");
        }
        assert!(!file_url_acceptable(&long, |_| false));
    }
}
