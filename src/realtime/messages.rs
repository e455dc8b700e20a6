//! `message:send`, `message:read` and `chat:sync`.

use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;

use super::{Ctx, Empty, Reply, Routes};
use crate::domain::{ChatId, HistoryPage, Message, MessageId, SendMessageInput};
use crate::error::AppError;

/// Most messages one `chat:sync` returns, and how many without a `limit`.
pub const SYNC_MAX: usize = 500;
pub const SYNC_DEFAULT: usize = 100;

#[derive(Serialize)]
struct Sent {
    message: Message,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadPayload {
    chat_id: String,
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncPayload {
    chat_id: String,
    after_seq: serde_json::Value,
    limit: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Synced {
    messages: Vec<Message>,
    has_more: bool,
}

/// Parses a `seq` bound: a whole number, 0 or more.
pub fn parse_seq(field: &str, v: &serde_json::Value) -> Result<u64, AppError> {
    v.as_u64()
        .ok_or_else(|| AppError::validation(format!("{field} must be a whole number, 0 or more")))
}

/// Parses a `limit`: absent gives `default`, above `max` is clamped, below 1 or not a number is
/// `VALIDATION`.
pub fn parse_limit(
    v: Option<&serde_json::Value>,
    default: usize,
    max: usize,
) -> Result<usize, AppError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(n) if n >= 1.0 && n.fract() == 0.0 => Ok((n as u64).min(max as u64) as usize),
            _ => Err(AppError::validation(
                "limit must be a whole number of at least 1",
            )),
        },
    }
}

pub fn routes<A: Adapter>(routes: &mut Routes<A>) {
    routes.on(
        "message:send",
        Reply::Standard,
        |ctx: Ctx, p: SendMessageInput| async move {
            let saved = ctx.state.send_message(&ctx.session.user, p).await?;
            Ok(Sent {
                message: saved.into_inner(),
            })
        },
    );
    routes.on(
        "message:read",
        Reply::Standard,
        |ctx: Ctx, p: ReadPayload| async move {
            let chat = ChatId::parse(&p.chat_id)?;
            let message = MessageId::parse(&p.message_id)?;
            ctx.state
                .mark_read(&ctx.session.user, &chat, &message)
                .await?;
            Ok(Empty {})
        },
    );
    routes.on(
        "chat:sync",
        Reply::Standard,
        |ctx: Ctx, p: SyncPayload| async move {
            let chat = ChatId::parse(&p.chat_id)?;
            let after = parse_seq("afterSeq", &p.after_seq)?;
            let limit = parse_limit(p.limit.as_ref(), SYNC_DEFAULT, SYNC_MAX)?;
            let (messages, has_more) = ctx
                .state
                .history(&ctx.session.user, &chat, HistoryPage::After(after), limit)
                .await?;
            Ok(Synced { messages, has_more })
        },
    );
}
