//! [`Ctx`]: what every socket event handler gets. Its own file so that the handlers
//! (`messages.rs`, `typing.rs`, ...) and the dispatcher that calls them both import it, and
//! neither imports the other's file back.

use std::sync::Arc;

use socketioxide::socket::Sid;

use crate::state::{AppState, Session};

/// What every handler gets: the node's state, the socket's id and its session. Three pointers'
/// worth, cloned per event (no allocation).
#[derive(Clone)]
pub struct Ctx {
    /// The node's shared state.
    pub state: AppState,
    /// The socket the event came from (its presence entry names it).
    pub socket_id: Sid,
    /// Who sent it, with the socket's rate limiter and turns.
    pub session: Arc<Session>,
}
