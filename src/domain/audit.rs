//! The audit log of staff actions (PROTOCOL.md, "The support desk"): who acted ([`Actor`]),
//! what they did ([`AuditAction`]), on what ([`AuditTarget`]), and the list query
//! (`GET /api/audit`, [`AuditQuery`]); and the user directory's record of an identity
//! ([`KnownUser`]), which the removal rule reads.

use serde::Serialize;

use super::{AuthUser, Role, Timestamp, rfc3339};
use crate::error::AppError;

/// The id `chat:updated`'s `by` and an audit entry's actor carry for auto-assignment.
pub const SYSTEM_ACTOR: &str = "system";

/// What an actor was when it acted: a token's role, or `system` (auto-assignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorRole {
    User,
    Admin,
    Superadmin,
    System,
}

impl ActorRole {
    /// The role as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Superadmin => "superadmin",
            Self::System => "system",
        }
    }

    /// Reads back what [`as_str`](Self::as_str) wrote.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Admin, Self::Superadmin, Self::System]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl From<Role> for ActorRole {
    fn from(r: Role) -> Self {
        match r {
            Role::User => Self::User,
            Role::Admin => Self::Admin,
            Role::Superadmin => Self::Superadmin,
        }
    }
}

/// Who did something the audit log records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Actor {
    pub id: String,
    pub role: ActorRole,
}

impl Actor {
    /// The caller a token names.
    pub fn of(user: &AuthUser) -> Self {
        Self {
            id: user.id.clone(),
            role: user.role.into(),
        }
    }

    /// Auto-assignment (`by: "system"` in `chat:updated`).
    pub fn system() -> Self {
        Self {
            id: SYSTEM_ACTOR.to_owned(),
            role: ActorRole::System,
        }
    }
}

/// Writes [`AuditAction`] and its wire names from one list.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $action:ident => $name:literal,)*) => {
        /// What a staff member (or auto-assignment) did.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $action,)*
        }

        impl AuditAction {
            /// Every action, in list order.
            pub const ALL: &[AuditAction] = &[$(Self::$action,)*];

            /// The action as the wire, the stores and the `action` filter write it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$action => $name,)*
                }
            }
        }
    };
}

audit_actions! {
    /// A chat without an assigned admin got one (details: `from: null`, `to`).
    ChatAssign => "chat.assign",
    /// A chat's assigned admin was replaced (details: `from`, `to`).
    ChatReassign => "chat.reassign",
    /// A chat lost its assigned admin (details: `from`, `to: null`).
    ChatUnassign => "chat.unassign",
    /// A chat's status changed (details: `from`, `to`).
    ChatStatus => "chat.status",
    /// A chat's priority changed (details: `from`, `to`).
    ChatPriority => "chat.priority",
    /// A report was sent to a user (details: `reportId`, `title`, `status`).
    ReportSend => "report.send",
    /// Every socket of a user was disconnected, without a block (details: `sockets`, `reason`).
    UserDisconnect => "user.disconnect",
    /// Every socket of a user was disconnected, with a block (details: `sockets`,
    /// `blockSecs`, `blockedUntil`, `reason`).
    UserBlock => "user.block",
    /// A user's block was ended.
    UserUnblock => "user.unblock",
    /// A user's tokens issued before `revokedBefore` were revoked (details: `revokedBefore`).
    UserRevoke => "user.revoke-tokens",
}

impl AuditAction {
    /// Parses the `action` filter: one of [`AuditAction::ALL`]'s names, else `VALIDATION`
    /// naming them.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                AppError::validation(format!("action must be one of {}", names.join(", ")))
            })
    }
}

impl Serialize for AuditAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for AuditAction {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Self::ALL.iter().map(|a| a.as_str())))
            .description(Some("What was done"))
            .into()
    }
}

impl utoipa::ToSchema for AuditAction {}

/// What an action was done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Chat,
    User,
}

impl TargetKind {
    /// The kind as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::User => "user",
        }
    }

    /// Reads back what [`as_str`](Self::as_str) wrote.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(Self::Chat),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// `{ type, id }`: a chat or a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: TargetKind,
    pub id: String,
}

impl AuditTarget {
    pub fn chat(id: impl Into<String>) -> Self {
        Self {
            kind: TargetKind::Chat,
            id: id.into(),
        }
    }
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            kind: TargetKind::User,
            id: id.into(),
        }
    }
}

/// One record of the audit log, as `GET /api/audit` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// 24 hex digits; with `at`, the list's order (newest first).
    pub id: String,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: Actor,
    pub action: AuditAction,
    pub target: AuditTarget,
    /// What the action changed, by action (`from` / `to`, `reason`, `blockedUntil`, ...).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A page of the audit log: newest first, filtered by whichever of actor, target and action
/// are given, after `after` (the previous page's last `(at, id)`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<AuditAction>,
    pub after: Option<(Timestamp, String)>,
    pub limit: usize,
}

/// What the user directory keeps about an identity a token named: its role and name as the
/// latest token said, and when this cluster first and last saw it (`last_seen` is written at
/// most once per node per refresh interval, so it is approximate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUser {
    pub id: String,
    pub role: Role,
    pub name: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_back_from_their_names_and_unknown_ones_are_refused_by_name() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()).unwrap(), *a);
        }
        let e = AuditAction::parse("chat.delete").unwrap_err();
        assert!(e.message.contains("user.block"), "{}", e.message);
    }
}
