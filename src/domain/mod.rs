//! Domain types: what a chat, a message and a report are, and the validated inputs that create
//! them.
//!
//! Payloads are parsed into these types at the edge (socket events, REST bodies); everything
//! inside trusts them. The structs serialize to exactly the wire shapes of PROTOCOL.md. Every
//! rule about what a payload may hold is written here and nowhere else.
//!
//! `domain` depends on [`crate::error`] only: what a rule needs from elsewhere (such as whether
//! a file URL carries this deployment's signature) is passed in by the caller.
//!
//! Files: `ids.rs` (generated and client-given ids), `time.rs` (timestamps), `users.rs` (the
//! caller and its role), `chats.rs`, `delivery.rs` (sides, delivery marks, status), `messages.rs` (with the `message:send` validation),
//! `reports.rs`, `removals.rs` (the support desk's removals), `audit.rs` (its audit log and user
//! directory), `uploads.rs`. Everything is re-exported here, so callers name `domain::Chat`.

mod audit;
mod chats;
#[cfg(test)]
pub(crate) use chats::test_chat;
mod delivery;
mod ids;
mod messages;
mod removals;
mod reports;
mod time;
mod uploads;
mod users;

pub use audit::*;
pub use chats::*;
pub use delivery::*;
pub use ids::*;
pub use messages::*;
pub use removals::*;
pub use reports::*;
pub use time::*;
pub use uploads::*;
pub use users::*;

use crate::error::AppError;

/// Checks that a text has `min..=max` code points.
pub fn check_len(field: &str, s: &str, min: usize, max: usize) -> Result<(), AppError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(AppError::validation(format!(
            "{field} must be {min} to {max} characters"
        )));
    }
    Ok(())
}
