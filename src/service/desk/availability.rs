//! Staff availability: `staff:availability` from staff (`available` / `away`), its transitions
//! to `admins`, `GET /api/support/availability` for anyone, and the coalesced
//! `support:availability` to `users` when the number of available staff goes from none to
//! some or back (at most one per [`SUPPORT_EVERY`], cluster-wide). The state itself is
//! presence's ([`crate::presence::StaffAvailability`]): a member's first socket makes them
//! `available`, the end of their presence (after the offline grace) `offline`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::rooms;
use crate::domain::AuthUser;
use crate::error::{AppError, ErrorCode};
use crate::ordering::Turn;
use crate::presence::availability::Announcement;
use crate::presence::{StaffAvailability, StaffStatus};
use crate::service::desk::assignment::AssignmentHook;
use crate::service::emit::Emitter;
use crate::service::events::ServerEvent;
use crate::state::AppState;

/// At most one `support:availability` per this long, cluster-wide (PROTOCOL.md).
pub const SUPPORT_EVERY: Duration = Duration::from_secs(5);

/// `staff:availability` (server -> client): a staff member's transition, to `admins`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaffAvailabilityChanged<'a> {
    pub user_id: &'a str,
    pub status: &'static str,
}

impl ServerEvent for StaffAvailabilityChanged<'_> {
    const NAME: &'static str = "staff:availability";
    const RECOVERABLE: bool = true;
}

/// `support:availability`: whether any staff member is available, to `users`.
#[derive(Serialize)]
pub struct SupportAvailability {
    pub available: bool,
}

impl ServerEvent for SupportAvailability {
    const NAME: &'static str = "support:availability";
    const RECOVERABLE: bool = false;
}

/// `GET /api/support/availability`: a yes/no and a count, never who.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SupportAnswer {
    pub available: bool,
    pub staff: u64,
}

fn unavailable(e: crate::presence::PresenceError) -> AppError {
    tracing::warn!(error = %e, "staff availability unavailable");
    AppError::new(ErrorCode::Unavailable, "availability is unavailable")
}

/// Staff availability's use cases, and the coalesced `support:availability`.
#[derive(Clone, Copy)]
pub struct Support<'a> {
    /// Each staff member's status, and the cluster-wide announcement claim.
    availability: &'a dyn StaffAvailability,
    /// One coalesced re-check pending on this node at a time.
    recheck: &'a AtomicBool,
    /// `staff:availability`, `support:availability`.
    emitter: Emitter<'a>,
    /// A staff member available may take a queued chat.
    assignment: AssignmentHook<'a>,
    /// Only to start the re-check, a task that outlives this borrow.
    node: &'a AppState,
}

impl<'a> Support<'a> {
    /// The node's availability use cases.
    pub fn of(node: &'a AppState) -> Self {
        Support {
            availability: &*node.availability,
            recheck: &node.support_recheck,
            emitter: Emitter::of(node),
            assignment: AssignmentHook::of(node),
            node,
        }
    }

    /// A staff socket connected: the member is `available` unless they already have a status.
    pub async fn staff_socket_online(&self, user_id: &str) {
        match self.availability.staff_connected(user_id).await {
            Ok(true) => {
                self.staff_changed(user_id, "available", Turn::unordered())
                    .await
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not note a staff member available"),
        }
    }

    /// `staff:availability` from a client: staff only; applies to the member as a whole.
    pub async fn set_staff_availability(
        &self,
        user: &AuthUser,
        status: &str,
        turn: Turn,
    ) -> Result<(), AppError> {
        if !user.is_staff() {
            return Err(AppError::forbidden("only staff have an availability"));
        }
        let status = StaffStatus::parse(status)
            .ok_or_else(|| AppError::validation("status must be 'available' or 'away'"))?;
        if self
            .availability
            .set(&user.id, status)
            .await
            .map_err(unavailable)?
        {
            self.staff_changed(&user.id, status.as_str(), turn).await;
        }
        Ok(())
    }

    /// Presence ended for `users`: the staff among them go `offline`.
    pub async fn staff_gone(&self, users: &[String]) {
        match self.availability.forget(users).await {
            Ok(gone) => {
                for user in &gone {
                    self.emitter
                        .emit(
                            vec![rooms::ADMINS.to_owned()],
                            Vec::new(),
                            &StaffAvailabilityChanged {
                                user_id: user,
                                status: "offline",
                            },
                            Turn::unordered(),
                        )
                        .await;
                }
                if !gone.is_empty() {
                    self.announce_support().await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not forget departed staff"),
        }
    }

    /// `GET /api/support/availability`: any authenticated caller.
    pub async fn support_availability(&self) -> Result<SupportAnswer, AppError> {
        let staff = self.availability.available().await.map_err(unavailable)?;
        Ok(SupportAnswer {
            available: staff > 0,
            staff,
        })
    }

    /// A staff member's status for `GET /api/users/{id}/status` (`None`: offline or not
    /// staff; a failure reads as unknown).
    pub async fn staff_status(&self, user_id: &str) -> Option<StaffStatus> {
        self.availability.status(user_id).await.ok().flatten()
    }

    /// `staff:availability:changed` in the caller's turn; the support flip that may follow goes
    /// to `users` (no staff socket is there) unordered, as its later re-checks always did.
    async fn staff_changed(&self, user_id: &str, status: &'static str, turn: Turn) {
        if status == StaffStatus::Available.as_str() {
            // Someone may take a queued chat now.
            self.assignment.wake();
        }
        self.emitter
            .emit(
                vec![rooms::ADMINS.to_owned()],
                Vec::new(),
                &StaffAvailabilityChanged { user_id, status },
                turn,
            )
            .await;
        self.announce_support().await;
    }

    /// Tells `users` whether support is available, if that flipped since the last time anyone
    /// told them, and not within [`SUPPORT_EVERY`] of it; otherwise checks again once that has
    /// passed (one pending check per node), so the last flip of a flapping agent still goes out.
    pub async fn announce_support(&self) {
        if !self.announce_support_once().await || self.recheck.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.node.clone();
        tokio::spawn(async move {
            let support = Support::of(&state);
            loop {
                tokio::time::sleep(SUPPORT_EVERY).await;
                support.recheck.store(false, Ordering::Release);
                if !support.announce_support_once().await
                    || support.recheck.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// One try of [`announce_support`](Self::announce_support); `true` when it must be tried
    /// again later (one went out less than [`SUPPORT_EVERY`] ago).
    async fn announce_support_once(&self) -> bool {
        let available = match self.availability.available().await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "could not count available staff");
                return false;
            }
        };
        match self
            .availability
            .claim_announcement(available, SUPPORT_EVERY)
            .await
        {
            Ok(Announcement::Send) => {
                self.emitter
                    .emit(
                        vec![rooms::USERS.to_owned()],
                        Vec::new(),
                        &SupportAvailability { available },
                        Turn::unordered(),
                    )
                    .await;
                false
            }
            Ok(Announcement::Unchanged) => false,
            Ok(Announcement::Later) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim the support announcement");
                false
            }
        }
    }
}
