//! Delivery status: a chat's two sides, the per-side delivered-up-to marks, and the status of a
//! message computed from them (`docs/delivery.md`).
//!
//! A chat has two sides, its user and its staff; a message's recipients are the other side. The
//! stores keep one delivered-up-to `seq` per chat and recipient side (never per message or per
//! socket) beside the per-message read state, and only ever move it forward.

use super::{Message, MessageStatus, Role};

/// One side of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The chat's non-staff participants.
    User,
    /// Every staff member.
    Staff,
}

impl Side {
    /// The side a role speaks for.
    pub fn of(role: Role) -> Self {
        if role.is_staff() {
            Self::Staff
        } else {
            Self::User
        }
    }
    /// The side that receives what this side sends.
    pub fn other(self) -> Self {
        match self {
            Self::User => Self::Staff,
            Self::Staff => Self::User,
        }
    }
    /// The name the stores and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Staff => "staff",
        }
    }
}

/// A chat's delivered-up-to marks: every message of the other side with `seq <= mark` reached
/// this side. 0: nothing delivered yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryMarks {
    /// Up to where the user side received staff messages.
    pub user: u64,
    /// Up to where the staff side received the user's messages.
    pub staff: u64,
}

impl DeliveryMarks {
    /// The mark of `side`.
    pub fn of(&self, side: Side) -> u64 {
        match side {
            Side::User => self.user,
            Side::Staff => self.staff,
        }
    }
}

impl Message {
    /// The message's recipients: the side other than its sender's.
    pub fn recipient_side(&self) -> Side {
        Side::of(self.sender_role).other()
    }

    /// Sets `status` from the stored read state and the chat's marks: `read` stays `read`
    /// (read implies delivered), `sent` becomes `delivered` once the recipients' mark reaches
    /// the message.
    pub fn apply_delivery(&mut self, marks: &DeliveryMarks) {
        if self.status == MessageStatus::Sent && self.seq <= marks.of(self.recipient_side()) {
            self.status = MessageStatus::Delivered;
        }
    }
}
