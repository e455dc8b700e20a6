//! Removing someone (PROTOCOL.md, "The support desk"): what is kept about a removed user
//! ([`Removal`]), the changes staff make to it ([`RemovalChange`]) and the validated body of
//! `POST /api/users/{id}/disconnect` ([`DisconnectRequest`]).

use serde::Deserialize;

use super::{Role, Timestamp, check_len};
use crate::error::AppError;

/// The longest block `blockSecs` may ask for: a week.
pub const MAX_BLOCK_SECS: u64 = 604_800;

/// The longest `reason` of a disconnect, in code points.
pub const MAX_REASON_LEN: usize = 200;

/// What the store keeps about a user staff removed: checked at every handshake, every REST
/// call and every resume, on every node and after restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub user_id: String,
    /// Handshakes and REST calls are refused `FORBIDDEN` until then.
    pub blocked_until: Option<Timestamp>,
    /// Tokens issued (`iat`, whole seconds) before this instant are refused.
    pub revoked_before: Option<Timestamp>,
    /// The last disconnect or revocation: a recovery session started before it is not resumed
    /// (a recovery must not resurrect a removed session).
    pub removed_at: Timestamp,
    /// Whether a superadmin made the last change. Only a superadmin's removal applies to a staff
    /// token: a node cannot know an absent id's role, so an admin's removal is kept, and the
    /// role is checked where it is known, on the token.
    pub by_superadmin: bool,
}

/// Why a caller named by a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barred {
    /// Blocked until the given time: `FORBIDDEN: blocked`.
    Blocked,
    /// The token was issued before a revocation: `UNAUTHORIZED: invalid token (revoked)`.
    Revoked,
}

impl Barred {
    /// The error clients see (`connect_error` text and REST body alike).
    pub fn error(self) -> AppError {
        match self {
            Barred::Blocked => AppError::forbidden("blocked"),
            Barred::Revoked => AppError::unauthorized("invalid token (revoked)"),
        }
    }
}

impl Removal {
    /// Whether a token of `role` issued at `issued_at` (Unix seconds; `None`: no `iat`, which
    /// counts as issued before any revocation) is refused now, and why.
    pub fn bars(&self, role: Role, issued_at: Option<u64>, now: Timestamp) -> Option<Barred> {
        if role.is_staff() && !self.by_superadmin {
            return None;
        }
        if let Some(before) = self.revoked_before {
            let before = u64::try_from(before.timestamp()).unwrap_or(0);
            if issued_at.is_none_or(|iat| iat < before) {
                return Some(Barred::Revoked);
            }
        }
        if self.blocked_until.is_some_and(|until| until > now) {
            return Some(Barred::Blocked);
        }
        None
    }

    /// Whether a recovery session that started at `started_ms` was ended by this removal.
    pub fn ended_session(&self, started_ms: u64) -> bool {
        i64::try_from(started_ms).unwrap_or(i64::MAX) <= self.removed_at.timestamp_millis()
    }
}

/// A change to a user's [`Removal`], applied by the store in one conditional write (two staff
/// on two nodes at once never lose each other's change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalChange {
    /// Sockets disconnected at `at`; with a block until `blocked_until` (replacing an earlier
    /// block), or none (an earlier block stays).
    Disconnect {
        at: Timestamp,
        blocked_until: Option<Timestamp>,
        by_superadmin: bool,
    },
    /// The block ends now.
    Unblock,
    /// Tokens issued before `before` are refused (an earlier, later revocation stays), and the
    /// sockets were disconnected at `at`.
    Revoke {
        at: Timestamp,
        before: Timestamp,
        by_superadmin: bool,
    },
}

/// The body of `POST /api/users/{id}/disconnect`, as sent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisconnectInput {
    /// 0 to 604,800: how long the user's handshakes and REST calls are refused.
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 604800)]
    pub block_secs: Option<serde_json::Value>,
    /// At most 200 characters, for the audit log.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub reason: Option<serde_json::Value>,
}

/// A validated disconnect: how long to block (0: no block) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectRequest {
    pub block_secs: u64,
    pub reason: Option<String>,
}

impl DisconnectRequest {
    /// `blockSecs`: a whole number `0..=604800`; `reason`: a string of at most 200 characters.
    pub fn parse(input: DisconnectInput) -> Result<Self, AppError> {
        let block_secs = match input.block_secs {
            None | Some(serde_json::Value::Null) => 0,
            Some(v) => v.as_u64().filter(|s| *s <= MAX_BLOCK_SECS).ok_or_else(|| {
                AppError::validation(format!(
                    "blockSecs must be a whole number from 0 to {MAX_BLOCK_SECS}"
                ))
            })?,
        };
        let reason = match input.reason {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => {
                check_len("reason", &s, 0, MAX_REASON_LEN)?;
                Some(s)
            }
            Some(_) => return Err(AppError::validation("reason must be a string")),
        };
        Ok(Self { block_secs, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<DisconnectRequest, AppError> {
        DisconnectRequest::parse(
            serde_json::from_value(v).map_err(|e| AppError::validation(e.to_string()))?,
        )
    }

    #[test]
    fn disconnect_bodies_are_validated() {
        assert_eq!(parse(json!({})).unwrap().block_secs, 0);
        assert_eq!(
            parse(json!({ "blockSecs": 604800 })).unwrap().block_secs,
            604_800
        );
        for bad in [
            json!({ "blockSecs": 604801 }),
            json!({ "blockSecs": -1 }),
            json!({ "blockSecs": 1.5 }),
            json!({ "blockSecs": "60" }),
            json!({ "reason": 5 }),
            json!({ "reason": "x".repeat(201) }),
            json!({ "other": 1 }),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_removal_bars_old_tokens_and_blocked_users_but_not_staff_unless_a_superadmin_acted() {
        let now = chrono::Utc::now();
        let r = Removal {
            user_id: "u".into(),
            blocked_until: None,
            revoked_before: Some(now),
            removed_at: now,
            by_superadmin: false,
        };
        let secs = now.timestamp() as u64;
        assert_eq!(
            r.bars(Role::User, Some(secs - 1), now),
            Some(Barred::Revoked)
        );
        assert_eq!(r.bars(Role::User, None, now), Some(Barred::Revoked));
        assert_eq!(r.bars(Role::User, Some(secs), now), None);
        assert_eq!(r.bars(Role::Admin, Some(secs - 1), now), None);
        let blocked = Removal {
            revoked_before: None,
            blocked_until: Some(now + chrono::Duration::seconds(5)),
            by_superadmin: true,
            ..r
        };
        assert_eq!(
            blocked.bars(Role::Admin, Some(secs), now),
            Some(Barred::Blocked)
        );
        assert_eq!(
            blocked.bars(Role::User, Some(secs), now + chrono::Duration::seconds(6)),
            None
        );
    }
}
