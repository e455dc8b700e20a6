//! Typing indicators on the socket side: `user:typing:start` / `user:typing:stop`, and the
//! sweeper that ends indicators not renewed in 3 seconds with a final `isTyping: false`.
//!
//! The indicators themselves are one map per node ([`crate::state::TypingTracker`]), and one
//! sweeper task per node, not a timer per socket. Only transitions are emitted; renewals just
//! move the deadline.

use std::time::Duration;

use super::Ctx;
use super::replies::Empty;
use crate::domain::ChatId;
use crate::error::AppError;
use crate::ordering::Turn;
use crate::state::AppState;

const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Ends indicators that were not renewed; runs for the node's lifetime.
pub async fn sweep(state: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for ((chat, user_id), ind) in state.typing.expired() {
            state
                .chats()
                .emit_typing(
                    ind.rooms,
                    &chat,
                    &user_id,
                    &ind.user_name,
                    false,
                    Turn::unordered(),
                )
                .await;
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingPayload {
    chat_id: String,
}

/// `user:typing:start`: start or renew an indicator (over the rate limit it is dropped
/// silently: see the event table).
pub async fn start(ctx: Ctx, turn: Turn, p: TypingPayload) -> Result<Empty, AppError> {
    typing(ctx, turn, p, true).await
}

/// `user:typing:stop`: end an indicator.
pub async fn stop(ctx: Ctx, turn: Turn, p: TypingPayload) -> Result<Empty, AppError> {
    typing(ctx, turn, p, false).await
}

async fn typing(
    ctx: Ctx,
    turn: Turn,
    p: TypingPayload,
    is_typing: bool,
) -> Result<Empty, AppError> {
    let chat = ChatId::parse(&p.chat_id)?;
    ctx.state
        .chats()
        .typing(&ctx.session.user, &chat, is_typing, turn)
        .await?;
    Ok(Empty {})
}
