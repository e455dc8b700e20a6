//! Who is calling: the [`AuthUser`] a token describes and its [`Role`], and the rules a token's
//! identity claims must meet ([`AuthUser::from_claims`]).

use serde::{Deserialize, Serialize};

use super::ids::MAX_ID_LEN;

/// Longest display name a token may carry, in code points.
pub const MAX_NAME_LEN: usize = 100;

/// What a token says a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    Superadmin,
}

impl Role {
    /// The role a token's `role` claim names, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            "superadmin" => Some(Self::Superadmin),
            _ => None,
        }
    }
    /// `admin` and `superadmin` are both staff.
    pub fn is_staff(self) -> bool {
        matches!(self, Self::Admin | Self::Superadmin)
    }
    /// The role as tokens and the wire write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Superadmin => "superadmin",
        }
    }
}

/// An authenticated caller, as its token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl AuthUser {
    /// The caller a verified token's claims describe: `id` (1 to 64 code points), a known
    /// `role`, and `name` (at most 100, falling back to the id), none with a control character
    /// (C0, DEL, C1: `char::is_control` is exactly Unicode's `Cc`). Ids end up in room names,
    /// log fields and every message (a newline once forged log lines); the name is copied into
    /// every message, so it is refused, not cut, and the issuer learns of the bad token. The
    /// error says which claim failed.
    pub fn from_claims(
        id: Option<String>,
        role: Option<&str>,
        name: Option<String>,
    ) -> Result<Self, &'static str> {
        let has_control = |s: &str| s.chars().any(char::is_control);
        let id = id
            .filter(|id| (1..=MAX_ID_LEN).contains(&id.chars().count()) && !has_control(id))
            .ok_or("token has no usable id")?;
        let role = role
            .and_then(Role::parse)
            .ok_or("token has no valid role")?;
        if name
            .as_deref()
            .is_some_and(|n| n.chars().count() > MAX_NAME_LEN || has_control(n))
        {
            return Err("token name must be at most 100 characters, without control characters");
        }
        let name = name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| id.clone());
        Ok(Self { id, name, role })
    }

    /// Is the caller support staff (sees every chat, sends reports)?
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }
}
