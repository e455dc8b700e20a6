//! Who is calling: the [`AuthUser`] a token describes and its [`Role`].

use serde::{Deserialize, Serialize};

/// What a token says a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Is the caller support staff (sees every chat, sends reports)?
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }
}
