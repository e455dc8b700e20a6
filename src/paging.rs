//! Page parameters, parsed once for both transports: `limit`, the `seq` bounds (`afterSeq`,
//! `beforeSeq`) and the opaque list cursors.
//!
//! REST reads them from the query string (text), sockets from a JSON payload; both go through
//! the same rules (PROTOCOL.md: a limit above its maximum is clamped, below 1 or not a number
//! is `VALIDATION`). Each list's default and maximum are the [`Bounds`] constants below.

use base64::Engine as _;

use crate::domain::{HistoryPage, Timestamp, is_object_id};
use crate::error::AppError;

/// A number as it arrived: text from a query string, or a JSON value from a socket payload.
#[derive(Clone, Copy)]
pub enum Raw<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
}

impl Raw<'_> {
    /// A whole number, 0 or more: text must be digits; JSON a non-negative integer (a float
    /// is taken for `limit` only, where `1.0` counts as 1, as it always has on sockets).
    /// Digits beyond `u64` saturate: a limit that large is clamped like any other above the
    /// maximum (schemathesis found `limit=99999999999999999999` refused), and a `seq` bound
    /// that large lies past every message.
    fn whole(self, floats: bool) -> Option<u64> {
        match self {
            Raw::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                Some(t.parse::<u64>().unwrap_or(u64::MAX))
            }
            Raw::Text(_) => None,
            Raw::Json(v) => v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|n| floats && *n >= 0.0 && n.fract() == 0.0)
                    .map(|n| n as u64)
            }),
        }
    }
}

/// A list's `limit`: what an absent one means, and the most one page returns.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub default: usize,
    pub max: usize,
}

/// `chat:sync`: default 100, at most 500.
pub const SYNC: Bounds = Bounds {
    default: 100,
    max: 500,
};
/// `GET /api/chats/{chatId}/messages`: default 50, at most 100.
pub const HISTORY: Bounds = Bounds {
    default: 50,
    max: 100,
};
/// `GET /api/chats` and `GET /api/reports`: default 20, at most 100.
pub const LISTS: Bounds = Bounds {
    default: 20,
    max: 100,
};
/// `GET /api/audit`: default 50, at most 200.
pub const AUDIT: Bounds = Bounds {
    default: 50,
    max: 200,
};
/// `GET /api/socket/active-users`: default 100, at most 1000 (its cursor is the presence
/// backend's own, opaque to this module).
pub const ACTIVE_USERS: Bounds = Bounds {
    default: 100,
    max: 1000,
};

/// Parses a `limit`: absent gives the default, above the maximum is clamped, below 1 or not a
/// whole number is `VALIDATION`.
pub fn limit(raw: Option<Raw<'_>>, bounds: Bounds) -> Result<usize, AppError> {
    match raw {
        None | Some(Raw::Json(serde_json::Value::Null)) => Ok(bounds.default),
        Some(raw) => match raw.whole(true) {
            Some(n) if n >= 1 => Ok(n.min(bounds.max as u64) as usize),
            _ => Err(AppError::validation(
                "limit must be a whole number of at least 1",
            )),
        },
    }
}

/// Parses a `seq` bound named `field`: a whole number, 0 or more.
pub fn seq(field: &str, raw: Raw<'_>) -> Result<u64, AppError> {
    raw.whole(false)
        .ok_or_else(|| AppError::validation(format!("{field} must be a whole number, 0 or more")))
}

/// Which page of a chat's history `beforeSeq` / `afterSeq` ask for (both at once is
/// `VALIDATION`; neither is the latest messages).
pub fn history_page(
    before: Option<Raw<'_>>,
    after: Option<Raw<'_>>,
) -> Result<HistoryPage, AppError> {
    let before = before.map(|b| seq("beforeSeq", b)).transpose()?;
    let after = after.map(|a| seq("afterSeq", a)).transpose()?;
    match (before, after) {
        (Some(_), Some(_)) => Err(AppError::validation("give beforeSeq or afterSeq, not both")),
        (Some(b), None) => Ok(HistoryPage::Before(b)),
        (None, Some(a)) => Ok(HistoryPage::After(a)),
        (None, None) => Ok(HistoryPage::Latest),
    }
}

/// Encodes a `(time, id)` page position as an opaque cursor.
pub fn encode_cursor(at: Timestamp, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}:{id}", at.timestamp_millis()))
}

/// Decodes a cursor made by [`encode_cursor`]; anything else is `VALIDATION`.
pub fn decode_cursor(cursor: &str) -> Result<(Timestamp, String), AppError> {
    let bad = || AppError::validation("malformed cursor");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (ms, id) = raw.split_once(':').ok_or_else(bad)?;
    let at = ms
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .ok_or_else(bad)?;
    if !is_object_id(id) {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

/// Room left in a page for its envelope (`{"messages":[...],"hasMore":true}`, or the
/// `chat:sync` ack around it).
const PAGE_ENVELOPE: usize = 256;

/// How many of `messages`, from the first, fit in `max_bytes` of JSON: at least one, so that a
/// client paging on always moves on (issue 25, item 2: 500 messages of 5,000 control characters
/// were ~15 MB in one `chat:sync` answer). Each message is measured by serializing it into a
/// counter (pages are not a hot path; nothing is allocated).
pub fn within_bytes<T: serde::Serialize>(messages: &[T], max_bytes: usize) -> usize {
    let mut used = PAGE_ENVELOPE;
    for (i, m) in messages.iter().enumerate() {
        let mut count = ByteCount(0);
        // Writing to a counter cannot fail; a message that could not be serialized would fail
        // the page's own serialization anyway.
        let _ = serde_json::to_writer(&mut count, m);
        used += count.0 + 1;
        if used > max_bytes {
            return i.max(1);
        }
    }
    messages.len()
}

/// An `io::Write` that only counts.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_reads_the_same_from_text_and_from_json() {
        let json = serde_json::json!(7);
        assert_eq!(limit(Some(Raw::Text("7")), LISTS).unwrap(), 7);
        assert_eq!(limit(Some(Raw::Json(&json)), LISTS).unwrap(), 7);
        assert_eq!(limit(Some(Raw::Text("1000")), LISTS).unwrap(), 100);
        assert_eq!(limit(None, SYNC).unwrap(), 100);
        assert!(limit(Some(Raw::Text("0")), LISTS).is_err());
        assert!(limit(Some(Raw::Json(&serde_json::json!(-1))), LISTS).is_err());
        assert!(seq("afterSeq", Raw::Json(&serde_json::json!(1.5))).is_err());
    }
}
