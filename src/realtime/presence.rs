//! The legacy presence events `user:online` and `joinUserRoom`, and the socket's presence entry.

use serde::Deserialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{Ctx, Empty, Reply, Session, on};
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

pub fn register<A: Adapter>(s: &SocketRef<A>, ctx: &Ctx) {
    let socket_id = s.id.to_string();
    on(
        s,
        ctx,
        "user:online",
        Reply::Standard,
        move |ctx: Ctx, p: OnlinePayload| {
            let socket_id = socket_id.clone();
            async move {
                own_id_only(&ctx, &p.user_id)?;
                ctx.state
                    .socket_online(&entry(&ctx.state, &socket_id, &ctx.session))
                    .await;
                Ok(Empty {})
            }
        },
    );
    on(
        s,
        ctx,
        "joinUserRoom",
        Reply::Standard,
        |ctx: Ctx, user_id: String| async move {
            // The socket joined its own room at the handshake; any other room is refused.
            own_id_only(&ctx, &user_id)?;
            Ok(Empty {})
        },
    );
}
