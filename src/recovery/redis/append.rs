//! One append to the log, and what it means when its answer does not come.
//!
//! An append whose answer is lost (the call timed out, the connection dropped) may still have
//! landed, or land later: sent without an offset, its event reached the sockets that were
//! there, and a session that resumed from an earlier offset got it again from the log (issue 28,
//! at 50,000 clients: four events delivered twice). So the outcome is settled before the event
//! goes out: every append carries a token, and [`SETTLE`] looks for it among the entries logged
//! since shortly before the append started. Found, the append landed and its id is the
//! offset; not found, the script marks the token void in the same atomic step, so an append
//! still on its way logs nothing: the event goes out without an offset and nobody can replay
//! it. Only when the settling call fails too does the outcome stay unknown (logged).

use std::sync::atomic::{AtomicU64, Ordering};

use fred::prelude::{Client, Value};
use fred::types::scripts::Script;

use super::super::backend::{BackendError, Offset, now_ms};
use super::super::room_index;
use super::calls::{bounded, text};
use super::scripts::{APPEND, LOG, LOG_BYTES, SETTLE, void_key};

/// How far before an append's start the settling call looks (clock skew between the node and
/// Redis, whose clock makes the entry ids).
const LOOK_BACK_MS: u64 = 10_000;
/// How long a void mark is kept: longer than any append can stay on its way (each call is
/// bounded by a few seconds).
const VOID_MS: u64 = 60_000;

/// Appends with tokens unique to this process: a random prefix and a counter.
pub(in crate::recovery) struct Appender {
    append: Script,
    settle: Script,
    prefix: String,
    next: AtomicU64,
}

impl Appender {
    pub fn new() -> Appender {
        Appender {
            append: Script::from_lua(APPEND),
            settle: Script::from_lua(SETTLE),
            prefix: format!("{:012x}", rand::random::<u64>() >> 16),
            next: AtomicU64::new(0),
        }
    }

    pub fn scripts(&self) -> [&Script; 2] {
        [&self.append, &self.settle]
    }

    /// Appends one entry; its offset once it is known to be logged, an error once it is known
    /// not to be (or, rarely, when neither could be learnt).
    pub async fn append(
        &self,
        client: &Client,
        rooms: &[String],
        except: &[String],
        event: &str,
        payload: &str,
    ) -> Result<Offset, BackendError> {
        let token = format!(
            "{}{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let started_ms = now_ms();
        let void = void_key(&token);
        let mut keys = vec![LOG.to_owned(), LOG_BYTES.to_owned(), void.clone()];
        keys.extend(rooms.iter().map(|r| room_index::redis_key(r)));
        let args = vec![
            rooms.join("\n"),
            except.join("\n"),
            event.to_owned(),
            payload.to_owned(),
            room_index::ROOM_MEMORY.as_millis().to_string(),
            token.clone(),
        ];
        let lost = match bounded(
            self.append
                .evalsha_with_reload::<Value, _, _>(client, keys, args),
        )
        .await
        {
            Ok(id) => return offset_of(&id),
            Err(e) => e,
        };
        let since = format!("{}-0", started_ms.saturating_sub(LOOK_BACK_MS));
        // One call, bounded like any other: a sender's events wait for it (in order), and a
        // Redis that is down must not hold every send up for long.
        let settled = bounded(self.settle.evalsha_with_reload::<Value, _, _>(
            client,
            vec![LOG.to_owned(), void],
            vec![token, since, VOID_MS.to_string()],
        ))
        .await;
        match settled {
            Ok(Value::Null) => Err(BackendError(format!("{lost} (not logged)"))),
            Ok(id) => {
                tracing::info!(error = %lost.0, "a recovery log append's answer was lost; it had landed");
                offset_of(&id)
            }
            Err(e) => {
                tracing::warn!(error = %lost.0, settle_error = %e.0, "a recovery log append's outcome is unknown: a session may replay its event again");
                Err(lost)
            }
        }
    }
}

fn offset_of(id: &Value) -> Result<Offset, BackendError> {
    text(id)
        .and_then(|s| Offset::parse(&s))
        .ok_or_else(|| BackendError(format!("XADD answered {id:?}")))
}
