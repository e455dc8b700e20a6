//! The legacy presence events `user:online` and `joinUserRoom`, and the socket's presence entry.

use serde::Deserialize;

use super::Ctx;
use super::replies::Empty;
use crate::error::AppError;
use crate::presence::SocketEntry;
use crate::state::{AppState, Session};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlinePayload {
    user_id: String,
}

/// The presence entry of a socket.
pub fn entry(state: &AppState, socket_id: &str, session: &Session) -> SocketEntry {
    SocketEntry {
        user_id: session.user.id.clone(),
        socket_id: socket_id.to_owned(),
        user_name: session.user.name.clone(),
        user_role: session.user.role,
        connected_at: session.connected_at,
        node: state.node_id.clone(),
    }
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
pub async fn online(ctx: Ctx, p: OnlinePayload) -> Result<Empty, AppError> {
    own_id_only(&ctx, &p.user_id)?;
    let socket_id = ctx.socket_id.to_string();
    ctx.state
        .socket_online(&entry(&ctx.state, &socket_id, &ctx.session))
        .await;
    Ok(Empty {})
}

/// `joinUserRoom`: the socket joined its own room at the handshake; any other room is refused.
pub async fn join_user_room(ctx: Ctx, user_id: String) -> Result<Empty, AppError> {
    own_id_only(&ctx, &user_id)?;
    Ok(Empty {})
}
