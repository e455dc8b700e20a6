//! The support desk's use cases (PROTOCOL.md, "The support desk"): kept apart from the chat
//! use cases so that the desk grows in files of its own.
//!
//! Files: [`assignment`] (auto-assignment: the queue, the capacity, reassignment, and the hook
//! every assignment goes through), [`audit`] (the audit log of staff actions), [`availability`] (staff availability and `support:availability`), [`chat_events`] (the live chat list's `chat:created` / `chat:updated`), [`patch_gate`] (a staff `PATCH` ordered with the assignment passes), [`removals`] (disconnecting, blocking and revoking a user, and the check every
//! handshake, REST call and resume makes).

pub mod assignment;
pub mod audit;
pub mod availability;
pub mod chat_events;
pub mod patch_gate;
pub mod removals;

pub use removals::{Disconnected, RemovalCheck, Revoked};
