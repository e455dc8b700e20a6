//! The legacy presence events `user:online` and `joinUserRoom`.

use serde::Deserialize;

use super::Ctx;
use super::replies::Empty;
use crate::error::AppError;
use crate::ordering::Turn;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlinePayload {
    user_id: String,
}

fn own_id_only(ctx: &Ctx, id: &str) -> Result<(), AppError> {
    if id == ctx.session.user.id {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "a client may only name its own user id",
        ))
    }
}

/// `user:online`: registers the socket in presence (again); only its own user id.
pub async fn online(ctx: Ctx, turn: Turn, p: OnlinePayload) -> Result<Empty, AppError> {
    own_id_only(&ctx, &p.user_id)?;
    ctx.state
        .statuses()
        .socket_online(&ctx.socket_id.to_string(), &ctx.session, turn)
        .await;
    Ok(Empty {})
}

/// `joinUserRoom`: the socket joined its own room at the handshake; any other room is refused.
pub async fn join_user_room(ctx: Ctx, _: Turn, user_id: String) -> Result<Empty, AppError> {
    own_id_only(&ctx, &user_id)?;
    Ok(Empty {})
}
