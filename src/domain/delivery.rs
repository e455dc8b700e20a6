//! Delivery status: a chat's two sides, the per-side delivered-up-to marks, and the status of a
//! message computed from them (`docs/delivery.md`).
//!
//! A chat has two sides, its user and its staff; a message's recipients are on the other side
//! ([`Chat::is_recipient`] says who exactly). The stores keep one delivered-up-to `seq` per chat and recipient side (never per message or per
//! socket) beside the per-message read state, and only ever move it forward.

use super::{AuthUser, Chat, Message, MessageStatus, Role};

/// One side of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The chat's non-staff participants.
    User,
    /// The chat's staff participants, or every staff member while it has none.
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

impl Chat {
    /// The chat's staff participants: its assigned admin and every other participant after the
    /// chat's user (its first participant), in that order and each once.
    pub fn staff_participants(&self) -> impl Iterator<Item = &str> {
        let assigned = self
            .assigned_admin
            .as_deref()
            .filter(|a| !self.participants.iter().skip(1).any(|p| p == a));
        assigned
            .into_iter()
            .chain(self.participants.iter().skip(1).map(String::as_str))
    }

    /// Whether `user` is a recipient of what the other side sends (PROTOCOL.md, "Delivery
    /// status"): for staff messages, the chat's user; for the user's messages, the chat's staff
    /// participants or, while it has none, every staff member. A staff member who sees the
    /// chat only as a member of `admins` is not one: nothing they do delivers the user's
    /// messages.
    pub fn is_recipient(&self, user: &AuthUser) -> bool {
        match Side::of(user.role) {
            Side::User => self.is_participant(&user.id),
            Side::Staff => {
                let mut staff = self.staff_participants().peekable();
                staff.peek().is_none() || staff.any(|s| s == user.id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CHAT_TYPE_SUPPORT, ChatId, ChatStatus, Priority, now};

    fn chat(participants: &[&str], assigned: Option<&str>) -> Chat {
        Chat {
            id: ChatId::from_trusted("c".to_owned()),
            participants: participants.iter().map(|p| (*p).to_owned()).collect(),
            chat_type: CHAT_TYPE_SUPPORT,
            title: "t".to_owned(),
            status: ChatStatus::Open,
            priority: Priority::Medium,
            assigned_admin: assigned.map(str::to_owned),
            last_message: None,
            created_at: now(),
            updated_at: now(),
            queued_at: None,
            assigned_at: None,
            delivered: DeliveryMarks::default(),
        }
    }

    fn who(id: &str, role: Role) -> AuthUser {
        AuthUser {
            id: id.to_owned(),
            name: id.to_owned(),
            role,
        }
    }

    #[test]
    fn with_staff_participants_only_they_are_the_users_recipients() {
        let c = chat(&["u1", "a1"], Some("a1"));
        assert_eq!(c.staff_participants().collect::<Vec<_>>(), ["a1"]);
        assert!(c.is_recipient(&who("a1", Role::Admin)));
        assert!(!c.is_recipient(&who("a2", Role::Admin)), "another admin");
        assert!(c.is_recipient(&who("u1", Role::User)));
        assert!(!c.is_recipient(&who("u2", Role::User)));
    }

    #[test]
    fn with_no_staff_participant_every_staff_member_is_a_recipient() {
        let c = chat(&["u1"], None);
        assert_eq!(c.staff_participants().count(), 0);
        assert!(c.is_recipient(&who("a2", Role::Admin)));
    }

    #[test]
    fn an_assigned_admin_missing_from_the_participants_still_counts_once() {
        let c = chat(&["u1", "a1"], Some("a3"));
        assert_eq!(c.staff_participants().collect::<Vec<_>>(), ["a3", "a1"]);
        assert!(c.is_recipient(&who("a3", Role::Admin)));
        assert!(!c.is_recipient(&who("a2", Role::Admin)));
    }
}
