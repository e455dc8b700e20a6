//! Timestamps: UTC, millisecond precision, written as RFC 3339 on the wire.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// A timestamp in UTC, written as RFC 3339 with milliseconds.
pub type Timestamp = DateTime<Utc>;

/// Serializes a timestamp as RFC 3339 UTC (`2026-11-22T04:13:05.123Z`).
pub fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// [`rfc3339`] for an optional timestamp (`null` when absent).
pub fn rfc3339_opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// The current time, truncated to milliseconds so that what is stored and what is sent agree.
pub fn now() -> Timestamp {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
