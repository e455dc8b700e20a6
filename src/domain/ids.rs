//! Ids: the 24-hex-digit ids this server generates (chats, messages, reports), the random
//! 32-hex-digit file ids, and the plain ids clients name (user ids, order ids,
//! `clientMessageId`).

use chrono::Utc;
use serde::Serialize;

use crate::error::AppError;

/// Longest id a client may name (user ids, order ids, `clientMessageId`).
pub const MAX_ID_LEN: usize = 64;

/// Generates a new 24-hex-digit id in the shape of a MongoDB ObjectId (time, randomness, counter),
/// so ids sort roughly by creation time and old frontends that expect ObjectIds keep working.
pub fn new_object_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static PROCESS: std::sync::OnceLock<[u8; 5]> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(rand::random);
    let secs = Utc::now().timestamp() as u32;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Is this string a well-formed id of ours (24 lowercase hex digits)?
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

macro_rules! object_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ": 24 hex digits.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, pattern = "^[0-9a-f]{24}$", example = "6756f0c2a1b2c3d4e5f60718")]
        pub struct $name(String);

        impl $name {
            /// A fresh id.
            pub fn generate() -> Self {
                Self(new_object_id())
            }
            /// Parses a client-given id; a malformed one is `VALIDATION`.
            pub fn parse(s: &str) -> Result<Self, AppError> {
                if is_object_id(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(AppError::validation(concat!("malformed ", $what, " id")))
                }
            }
            /// Wraps an id read back from a store, which only holds ids it was given.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
            /// The 24 hex digits.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

object_id!(ChatId, "chat");
object_id!(MessageId, "message");
object_id!(ReportId, "report");

/// The id of an uploaded file: 32 lowercase hex digits from 16 random bytes (128 bits), so no
/// id tells anything about another one. (Chat, message and report ids are ObjectId-like and
/// guessable from their neighbours; that is harmless only because every read of those checks
/// membership, while a file id is also a capability in its signed URL.) Ids of files uploaded
/// before, in the 24-hex-digit ObjectId shape, are still accepted, so their URLs keep working.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^([0-9a-f]{32}|[0-9a-f]{24})$")]
pub struct FileId(String);

/// Hex digits of a generated file id.
pub const FILE_ID_LEN: usize = 32;

impl FileId {
    /// A fresh, unguessable id.
    pub fn generate() -> Self {
        let bytes: [u8; FILE_ID_LEN / 2] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
    /// Parses a client-given id (32 hex digits, or an older 24); a malformed one is `VALIDATION`.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let hex = s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex && (s.len() == FILE_ID_LEN || is_object_id(s)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(AppError::validation("malformed file id"))
        }
    }
    /// Wraps an id read back from a store, which only holds ids it was given.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    /// Is this an id in the older ObjectId shape (MongoDB keeps those as ObjectIds)?
    pub fn is_legacy(&self) -> bool {
        is_object_id(&self.0)
    }
    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a client-given id (user id, order id, ...): 1 to 64 characters, no control characters.
pub fn parse_plain_id(field: &str, s: &str) -> Result<String, AppError> {
    let n = s.chars().count();
    if n == 0 || n > MAX_ID_LEN || s.chars().any(char::is_control) {
        return Err(AppError::validation(format!(
            "{field} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let a = new_object_id();
        let b = new_object_id();
        assert!(is_object_id(&a) && is_object_id(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn file_ids_are_random_and_old_ones_still_parse() {
        let a = FileId::generate();
        let b = FileId::generate();
        assert_eq!(a.as_str().len(), FILE_ID_LEN);
        assert!(FileId::parse(a.as_str()).is_ok() && !a.is_legacy());
        // 128 random bits: two ids made in the same instant share no long prefix.
        assert_ne!(a.as_str()[..12], b.as_str()[..12]);
        let old = new_object_id();
        assert!(FileId::parse(&old).unwrap().is_legacy());
        for bad in [
            "",
            "ABCDEF0123456789abcdef0123456789",
            "../etc/passwd",
            &"a".repeat(33),
        ] {
            assert!(FileId::parse(bad).is_err(), "{bad}");
        }
    }
}
