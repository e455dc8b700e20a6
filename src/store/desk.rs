//! The support desk's part of the store seam: removals (blocks and token revocations), kept
//! beside the chats so that every node and every restart sees them, and the user directory
//! (the role each identity's tokens named, which the removal rule reads). A supertrait of
//! [`Store`](super::Store), implemented by both stores in files of their own
//! (`embedded/desk.rs`, `mongo/desk.rs`) and held to the same contract tests.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{AuthUser, KnownUser, Removal, RemovalChange, Timestamp};

#[async_trait]
pub trait DeskStore: Send + Sync + 'static {
    /// What is kept about a removed user, if anything.
    async fn removal(&self, user_id: &str) -> StoreResult<Option<Removal>>;

    /// Applies `change` in one conditional write (an upsert): a later `removed_at` and a later
    /// `revoked_before` always win, so two staff acting at once on two nodes lose nothing.
    /// Returns the record as it is after the change; `by_superadmin` is kept once set.
    /// `None` only for an unblock of a user with no record (nothing to change).
    async fn change_removal(
        &self,
        user_id: &str,
        change: RemovalChange,
    ) -> StoreResult<Option<Removal>>;

    /// Records that tokens naming `users` were seen at `at`, in one write where the backend
    /// can (a handshake storm records its new identities in a few writes): each one's role
    /// and name become the token's, `first_seen` is kept, `last_seen` only moves forward.
    async fn see_users(&self, users: &[AuthUser], at: Timestamp) -> StoreResult<()>;

    /// What the directory knows of `user_id`, if a token ever named it.
    async fn known_user(&self, user_id: &str) -> StoreResult<Option<KnownUser>>;
}
