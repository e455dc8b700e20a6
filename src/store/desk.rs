//! The support desk's part of the store seam: removals (blocks and token revocations), kept
//! beside the chats so that every node and every restart sees them. A supertrait of
//! [`Store`](super::Store), implemented by both stores in files of their own
//! (`embedded/desk.rs`, `mongo/desk.rs`) and held to the same contract tests.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{Removal, RemovalChange};

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
}
