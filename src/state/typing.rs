//! The node's typing indicators: who is typing in which chat, until when.
//!
//! One map per node, not a timer per socket: `start` records a deadline, `stop` removes it, and
//! the sweeper (`realtime/typing.rs`, every 500 ms) ends those not renewed in [`TYPING_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, not std's: the same instant in production, and one a test can pause and
// advance (`tokio::time::pause`).
use tokio::time::Instant;

use crate::cluster::rooms;
use crate::domain::{AuthUser, Chat, ChatId};

/// How long an indicator lasts without renewal.
pub const TYPING_TTL: Duration = Duration::from_secs(3);

/// One user typing in one chat.
pub struct Indicator {
    /// When it ends unless renewed.
    deadline: Instant,
    /// Named in the final `isTyping: false`.
    pub user_name: String,
    /// Where the final `isTyping: false` goes.
    pub rooms: Vec<String>,
}

/// Active typing indicators on this node, keyed by chat and user.
#[derive(Default)]
pub struct TypingTracker {
    /// By chat and user id.
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
                    rooms: rooms::chat(&chat.participants),
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

    /// Removes and returns the indicators whose deadline has passed.
    pub fn expired(&self) -> Vec<((ChatId, String), Indicator)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    use crate::domain::test_chat as chat;

    fn user() -> AuthUser {
        AuthUser {
            id: "u".to_owned(),
            name: "Una".to_owned(),
            role: Role::User,
        }
    }

    const TICK: Duration = Duration::from_millis(1);

    /// On tokio's paused clock: an indicator ends exactly [`TYPING_TTL`] after its last
    /// renewal, not a moment before, with no real waiting.
    #[tokio::test(start_paused = true)]
    async fn an_indicator_expires_a_ttl_after_its_last_renewal() {
        let (tracker, chat, user) = (TypingTracker::default(), chat(), user());
        assert!(tracker.start(&chat, &user), "a new indicator is news");
        tokio::time::advance(TYPING_TTL / 2).await;
        assert!(!tracker.start(&chat, &user), "a renewal is not news");
        tokio::time::advance(TYPING_TTL - TICK).await;
        assert!(tracker.expired().is_empty(), "renewed: not over yet");
        tokio::time::advance(TICK).await;
        let ended = tracker.expired();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1.user_name, "Una");
        assert!(tracker.expired().is_empty(), "ended once");
        assert!(!tracker.stop(&chat.id, "u"), "nothing left to stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_indicator_never_expires() {
        let (tracker, chat, user) = (TypingTracker::default(), chat(), user());
        tracker.start(&chat, &user);
        assert!(tracker.stop(&chat.id, "u"));
        tokio::time::advance(TYPING_TTL * 2).await;
        assert!(tracker.expired().is_empty());
    }
}
