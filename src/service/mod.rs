//! The use cases both transports share: socket events and REST endpoints call these, so a rule
//! (who may do what, what is saved before what is sent) is written once.
//!
//! Each group of use cases is a small type that borrows only the seams it works through
//! ([`Chats`] holds the store, the typing tracker, the [`Emitter`] and its collaborators
//! [`Deliveries`], `ChatEvents` and `AssignmentHook`; [`Reports`] holds the store, the
//! emitter and the audit log; ...), built for the asking from the node's state by the
//! accessors below (a few references, no allocation). [`AppState`] holds the seams and hands
//! the use cases out; it has no behaviour of its own.
//!
//! Every use case authorizes the caller (REST handlers and socket handlers only parse their
//! input and shape the answer), works through the [`Store`](crate::store::Store) and
//! [`Presence`](crate::presence::Presence) seams, and emits through the [`Emitter`]. A message
//! is always saved before anything is emitted or acknowledged. Below the transports (`http`,
//! `realtime`), above `state` and `ordering`: a use case that saves or emits takes the event's
//! [`Turn`](crate::ordering::Turn) as its last argument (REST and timers pass
//! `Turn::unordered`) and waits for its save turn with it, then hands it to its emission.
//!
//! Files: [`chats`] (chats, messages, typing), [`chat_access`] (who may see a chat),
//! [`delivery`] (delivery status), [`reports`], [`uploads`], [`presence`] (sockets come and
//! go, `user:status`), [`desk`] (the support desk), [`webhooks`] (the operator's side),
//! [`emit`] (the one emission path), [`events`] (the server events: a type each, with its name
//! and whether it is recoverable). Store calls are timed by the store itself
//! (`store/timed.rs`).

use crate::state::AppState;
use chats::Chats;
use delivery::Deliveries;
use desk::audit::Audit;
use desk::availability::Support;
use desk::removals::Removals;
use emit::Emitter;
use presence::Statuses;
use reports::Reports;
use uploads::Uploads;
use webhooks::WebhookAdmin;

pub mod chat_access;
pub mod chats;
pub mod delivery;
pub mod desk;
pub mod emit;
pub mod events;
pub mod presence;
pub mod reports;
pub mod uploads;
pub mod webhooks;

pub use chats::{ChatChanges, ChatPage, OpenChat};
pub use reports::ReportReadReply;
pub use uploads::{FileAccess, Upload, Uploaded};

/// The use cases a node hands out, each built on the spot from the seams it borrows.
impl AppState {
    /// Chats, messages, typing.
    pub fn chats(&self) -> Chats<'_> {
        Chats::of(self)
    }

    /// Delivery status (the client's `message:delivered`, a recovery replay).
    pub fn deliveries(&self) -> Deliveries<'_> {
        Deliveries::of(self)
    }

    /// Reports.
    pub fn reports(&self) -> Reports<'_> {
        Reports::of(self)
    }

    /// Uploaded files.
    pub fn uploads(&self) -> Uploads<'_> {
        Uploads::of(self)
    }

    /// Sockets come and go; `user:status`.
    pub fn statuses(&self) -> Statuses<'_> {
        Statuses::of(self)
    }

    /// Staff availability and `support:availability`.
    pub fn support(&self) -> Support<'_> {
        Support::of(self)
    }

    /// Disconnecting, blocking and revoking; the check every caller passes.
    pub fn removals(&self) -> Removals<'_> {
        Removals::of(self)
    }

    /// The audit log.
    pub fn audit(&self) -> Audit<'_> {
        Audit::of(self)
    }

    /// Failed webhooks, for the operator.
    pub fn webhook_admin(&self) -> WebhookAdmin<'_> {
        WebhookAdmin::of(self)
    }

    /// Emitting a server event.
    pub fn emitter(&self) -> Emitter<'_> {
        Emitter::of(self)
    }
}
