//! The support desk's assignment settings (`ASSIGNMENT`, `MAX_OPEN_CHATS_PER_AGENT`,
//! `REASSIGN_AFTER_SECS`), flattened into [`super::Config`]; `service/desk/assignment.rs` acts
//! on them (docs/support-desk.md, "Assignment").

use std::time::Duration;

/// Who assigns a chat a user opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AssignmentMode {
    /// Staff assign with `PATCH` (the behaviour before the support desk).
    Manual,
    /// The available staff member with the fewest open chats, below the capacity; else the
    /// queue.
    Auto,
}

/// The assignment settings of [`crate::config::Config`] (flattened into it).
#[derive(clap::Args, Debug, Clone)]
pub struct AssignmentSettings {
    /// `manual` (staff assign with PATCH) or `auto` (a user's new chat goes to the available
    /// staff member with the fewest open chats, or waits in a queue).
    #[arg(
        long = "assignment",
        env = "ASSIGNMENT",
        value_enum,
        default_value = "manual"
    )]
    pub mode: AssignmentMode,
    /// The most open chats auto-assignment gives one staff member (a PATCH by staff may go over).
    #[arg(
        long = "max-open-chats-per-agent",
        env = "MAX_OPEN_CHATS_PER_AGENT",
        default_value_t = 5
    )]
    pub max_open_chats_per_agent: u32,
    /// How long a staff member may be away or offline before their open chats go back to the
    /// front of the queue, in seconds (`auto` only; 0: never).
    #[arg(
        long = "reassign-after-secs",
        value_name = "REASSIGN_AFTER_SECS",
        env = "REASSIGN_AFTER_SECS",
        default_value = "300",
        value_parser = super::secs
    )]
    pub reassign_after: Duration,
}

impl AssignmentSettings {
    /// Is auto-assignment on?
    pub fn is_auto(&self) -> bool {
        self.mode == AssignmentMode::Auto
    }

    /// Checks the settings at boot.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.max_open_chats_per_agent) {
            return Err("MAX_OPEN_CHATS_PER_AGENT must be between 1 and 10000".into());
        }
        if self.reassign_after > Duration::from_secs(7 * 86_400) {
            return Err("REASSIGN_AFTER_SECS must be at most 604800".into());
        }
        Ok(())
    }
}
