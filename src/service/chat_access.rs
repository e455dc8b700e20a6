//! Who may see a chat: the check every chat and delivery use case starts with, written once.

use crate::domain::{AuthUser, Chat, ChatId};
use crate::error::AppError;
use crate::store::Store;

/// Loads a chat the caller may see: `NOT_FOUND` if there is none, `FORBIDDEN` (saying nothing
/// about the chat) if the caller is neither a participant nor staff.
pub async fn chat_for(store: &dyn Store, user: &AuthUser, id: &ChatId) -> Result<Chat, AppError> {
    let chat = store
        .chat(id)
        .await?
        .ok_or_else(|| AppError::not_found("chat not found"))?;
    if !chat.admits(user) {
        return Err(AppError::forbidden(
            "you are not a participant of this chat",
        ));
    }
    Ok(chat)
}
