//! The marks of presence transitions (`Presence::marked`): a `user.*` webhook pledged ahead of a
//! connect or of an `offline` claim (`webhooks/pledges.rs`) is settled from them when its node
//! dies before writing the event.

use fred::prelude::{KeysInterface, SortedSetsInterface, Value};

use super::RedisPresence;
use super::changes::{CALL_TIMEOUT, unavailable};
use super::drift::strings;
use super::scripts::key;
use crate::domain::now;
use crate::presence::PresenceError;

/// Bounds a plain Redis call as the scripts are.
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, fred::error::Error>>,
) -> Result<T, PresenceError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(_) => Err(unavailable("presence call timed out")),
    }
}

/// The users whose `offline` is due now, at most `limit` (read only).
pub(super) async fn due(p: &RedisPresence, limit: usize) -> Result<Vec<String>, PresenceError> {
    let now_ms = now().timestamp_millis() as f64;
    let v: Value = bounded(p.client.zrangebyscore(
        key("due"),
        f64::NEG_INFINITY,
        now_ms,
        false,
        Some((0, limit as i64)),
    ))
    .await?;
    Ok(strings(v))
}

/// Claims the due `offline`s of `claims` (user, mark), recording each claimed user's mark.
pub(super) async fn claim(
    p: &RedisPresence,
    claims: &[(String, String)],
) -> Result<Vec<String>, PresenceError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = Vec::with_capacity(1 + claims.len() * 2);
    args.push(now().timestamp_millis().to_string());
    for (user, mark) in claims {
        args.push(user.clone());
        args.push(mark.clone());
    }
    let v = p
        .run(
            &p.scripts.claim_marked,
            vec![key("due"), key("online")],
            args,
        )
        .await?;
    Ok(strings(v))
}

/// Whether a transition recorded `mark`.
pub(super) async fn marked(p: &RedisPresence, mark: &str) -> Result<bool, PresenceError> {
    let n: i64 = bounded(p.client.exists(key(&format!("mark:{mark}")))).await?;
    Ok(n > 0)
}
