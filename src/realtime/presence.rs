//! The legacy presence events `user:online` and `joinUserRoom`, and the socket's presence entry.

use serde::Deserialize;
use socketioxide::adapter::Adapter;

use super::{Ctx, Empty, Reply, Routes, Session};
use crate::app::AppState;
use crate::error::AppError;
use crate::presence::SocketEntry;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnlinePayload {
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

pub fn routes<A: Adapter>(routes: &mut Routes<A>) {
    routes.on(
        "user:online",
        Reply::Standard,
        |ctx: Ctx, p: OnlinePayload| async move {
            own_id_only(&ctx, &p.user_id)?;
            let socket_id = ctx.socket_id.to_string();
            ctx.state
                .socket_online(&entry(&ctx.state, &socket_id, &ctx.session))
                .await;
            Ok(Empty {})
        },
    );
    routes.on(
        "joinUserRoom",
        Reply::Standard,
        |ctx: Ctx, user_id: String| async move {
            // The socket joined its own room at the handshake; any other room is refused.
            own_id_only(&ctx, &user_id)?;
            Ok(Empty {})
        },
    );
}
