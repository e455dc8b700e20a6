//! The Socket.IO side: the handshake, one dispatcher through which every client event passes,
//! the replies, and one file per event group.
//!
//! - [`handshake`]: authenticate, make the socket's session, join its rooms, wire it.
//! - [`dispatch`]: turns, rate limit, payload parsing, metrics, then the event's handler (the
//!   events themselves are the table in [`crate::client_events`]).
//! - [`replies`]: acks, the `error` event, `reportMessageSent`.
//! - [`recovery`]: a resumed socket's replay (connection state recovery, `docs/recovery.md`).
//! - [`messages`], [`typing`], [`reports`], [`presence`]: the handlers, each parsing its payload
//!   and calling the use case in [`crate::service`].
//!
//! Ordering (one socket's events in arrival order) is [`crate::ordering`]; the per-socket session
//! is [`crate::state::Session`].

pub mod admission;
pub mod ctx;
pub mod desk;
pub mod dispatch;
pub mod handshake;
pub mod messages;
pub mod presence;
pub mod recovery;
pub mod replies;
pub mod reports;
pub mod typing;

pub use ctx::Ctx;
pub use handshake::{Refused, register};
