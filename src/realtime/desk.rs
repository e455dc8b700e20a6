//! The support desk's client event: `staff:availability` (`{ status: 'available' | 'away' }`,
//! staff only; `service/desk/availability.rs` decides).

use serde::Deserialize;

use super::Ctx;
use super::replies::Empty;
use crate::error::AppError;
use crate::ordering::Turn;

#[derive(Deserialize)]
pub struct AvailabilityPayload {
    status: String,
}

/// `staff:availability`: sets the caller's availability, for every socket and node of theirs.
pub async fn availability(ctx: Ctx, turn: Turn, p: AvailabilityPayload) -> Result<Empty, AppError> {
    ctx.state
        .support()
        .set_staff_availability(&ctx.session.user, &p.status, turn)
        .await?;
    Ok(Empty {})
}
