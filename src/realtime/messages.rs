//! `message:send`, `message:read`, `message:delivered` and `chat:sync`.

use serde::{Deserialize, Serialize};

use super::Ctx;
use super::replies::Empty;
use crate::domain::{ChatId, HistoryPage, Message, MessageId, SendMessageInput};
use crate::error::{AppError, ErrorCode};
use crate::ordering::Turn;
use crate::paging::{self, Raw};

#[derive(Serialize)]
pub struct Sent {
    message: Message,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPayload {
    chat_id: String,
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPayload {
    chat_id: String,
    after_seq: serde_json::Value,
    limit: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Synced {
    messages: Vec<Message>,
    has_more: bool,
}

/// `message:send`: save, then `message:new` to the chat (`service/chats.rs`).
pub async fn send(ctx: Ctx, turn: Turn, p: SendMessageInput) -> Result<Sent, AppError> {
    // One budget for the user's messages over all their sockets on this node, on top of each
    // socket's own: 32 sockets must not send 32 times what one may (each message is logged for
    // the recovery window; issue 25, item 7).
    if ctx
        .state
        .user_limits
        .take_message(&ctx.session.user.id)
        .is_err()
    {
        return Err(AppError::new(
            ErrorCode::RateLimited,
            "too many messages from this user: slow down",
        ));
    }
    let saved = ctx
        .state
        .chats()
        .send_message(&ctx.session.user, p, turn)
        .await?;
    Ok(Sent {
        message: saved.into_inner(),
    })
}

/// `message:read`: a read receipt, then `message:read` to the chat.
pub async fn read(ctx: Ctx, turn: Turn, p: ReadPayload) -> Result<Empty, AppError> {
    let chat = ChatId::parse(&p.chat_id)?;
    let message = MessageId::parse(&p.message_id)?;
    ctx.state
        .chats()
        .mark_read(&ctx.session.user, &chat, &message, turn)
        .await?;
    Ok(Empty {})
}

/// `message:delivered`: a client's delivery confirmation (`service/delivery.rs`); same
/// payload as `message:read`.
pub async fn delivered(ctx: Ctx, turn: Turn, p: ReadPayload) -> Result<Empty, AppError> {
    let chat = ChatId::parse(&p.chat_id)?;
    let message = MessageId::parse(&p.message_id)?;
    ctx.state
        .deliveries()
        .confirm_delivered(&ctx.session.user, &chat, &message, turn)
        .await?;
    Ok(Empty {})
}

/// `chat:sync`: the saved messages after `afterSeq`, oldest first.
pub async fn sync(ctx: Ctx, turn: Turn, p: SyncPayload) -> Result<Synced, AppError> {
    let chat = ChatId::parse(&p.chat_id)?;
    let after = paging::seq("afterSeq", Raw::Json(&p.after_seq))?;
    let limit = paging::limit(p.limit.as_ref().map(Raw::Json), paging::SYNC)?;
    let (messages, has_more) = ctx
        .state
        .chats()
        .history(
            &ctx.session.user,
            &chat,
            HistoryPage::After(after),
            limit,
            turn,
        )
        .await?;
    Ok(Synced { messages, has_more })
}
