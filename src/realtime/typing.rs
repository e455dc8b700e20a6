//! Typing indicators: who is typing in which chat, and the 3-second expiry.
//!
//! One map and one sweeper task per node, not a timer per socket: `start` records a deadline,
//! `stop` removes it, and the sweeper (every 500 ms) ends indicators that were not renewed with a
//! final `isTyping: false`. Only transitions are emitted; renewals just move the deadline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::app::AppState;
use crate::domain::{AuthUser, Chat, ChatId};

/// How long an indicator lasts without renewal.
pub const TYPING_TTL: Duration = Duration::from_secs(3);
const SWEEP_EVERY: Duration = Duration::from_millis(500);

struct Indicator {
    deadline: Instant,
    user_name: String,
    /// Where the final `isTyping: false` goes.
    rooms: Vec<String>,
}

/// Active typing indicators on this node, keyed by chat and user.
#[derive(Default)]
pub struct TypingTracker {
    active: Mutex<HashMap<(ChatId, String), Indicator>>,
}

impl TypingTracker {
    /// Starts or renews an indicator; `true` if it was not active (emit `isTyping: true`).
    pub fn start(&self, chat: &Chat, user: &AuthUser) -> bool {
        let mut g = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + TYPING_TTL;
        match g.get_mut(&(chat.id.clone(), user.id.clone())) {
            Some(ind) => {
                ind.deadline = deadline;
                false
            }
            None => {
                let ind = Indicator {
                    deadline,
                    user_name: user.name.clone(),
                    rooms: crate::service::chat_rooms(chat),
                };
                g.insert((chat.id.clone(), user.id.clone()), ind);
                true
            }
        }
    }

    /// Ends an indicator; `true` if it was active (emit `isTyping: false`).
    pub fn stop(&self, chat: &ChatId, user_id: &str) -> bool {
        let mut g = self.active.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&(chat.clone(), user_id.to_owned())).is_some()
    }

    fn expired(&self) -> Vec<((ChatId, String), Indicator)> {
        let now = Instant::now();
        let mut g = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<_> = g
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| g.remove(&k).map(|i| (k, i)))
            .collect()
    }
}

/// Ends indicators that were not renewed; runs for the node's lifetime.
pub async fn sweep(state: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for ((chat, user_id), ind) in state.typing.expired() {
            state
                .emit_typing(ind.rooms, &chat, &user_id, &ind.user_name, false)
                .await;
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingPayload {
    chat_id: String,
}

/// `user:typing:start` and `user:typing:stop`; over the rate limit they are dropped silently.
pub fn routes<A: socketioxide::adapter::Adapter>(routes: &mut super::Routes<A>) {
    use super::{Ctx, Empty, Reply};
    for (event, is_typing) in [("user:typing:start", true), ("user:typing:stop", false)] {
        routes.on(
            event,
            Reply::Droppable,
            move |ctx: Ctx, p: TypingPayload| async move {
                let chat = ChatId::parse(&p.chat_id)?;
                ctx.state
                    .typing(&ctx.session.user, &chat, is_typing)
                    .await?;
                Ok(Empty {})
            },
        );
    }
}
