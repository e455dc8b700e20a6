//! Calling this crate's Lua scripts on Redis, one way for every user of them (presence, staff
//! availability, the assignment gate): loaded into the script cache at start (every master of
//! a Redis Cluster) so that the first calls do not each meet `NOSCRIPT`, and each call bounded
//! in time, its failure [`PresenceError::Unavailable`] naming what timed out.

use std::time::Duration;

use fred::prelude::{Client, Value};
use fred::types::scripts::Script;

use crate::presence::PresenceError;

/// A failure of a Redis call, as the presence seams report it.
pub fn unavailable(e: impl std::fmt::Display) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

/// Loads `scripts` at once (one round trip, not one per script), within `bound`; `what` names
/// them in the error.
pub async fn load(
    client: &Client,
    scripts: &[&Script],
    bound: Duration,
    what: &str,
) -> Result<(), PresenceError> {
    let loads = scripts.iter().map(|script| script.load(client));
    match tokio::time::timeout(bound, futures_util::future::join_all(loads)).await {
        Ok(results) => results.into_iter().try_for_each(|r| r.map_err(unavailable)),
        Err(_) => Err(unavailable(format!("loading the {what} scripts timed out"))),
    }
}

/// Runs `script` (reloading it if Redis forgot it) within `bound`; `what` names the call in the
/// error.
pub async fn run(
    client: &Client,
    script: &Script,
    keys: Vec<String>,
    args: Vec<String>,
    bound: Duration,
    what: &str,
) -> Result<Value, PresenceError> {
    let call = script.evalsha_with_reload::<Value, _, _>(client, keys, args);
    match tokio::time::timeout(bound, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable(format!("{what} call timed out"))),
    }
}

/// One seam's way to its scripts: its client, its bound and its name for errors.
pub struct Caller {
    client: Client,
    bound: Duration,
    what: &'static str,
}

impl Caller {
    pub fn new(client: Client, bound: Duration, what: &'static str) -> Self {
        Self {
            client,
            bound,
            what,
        }
    }

    /// [`load`] of this seam's scripts.
    pub async fn load(&self, scripts: &[&Script]) -> Result<(), PresenceError> {
        load(&self.client, scripts, self.bound, self.what).await
    }

    /// [`run`] of one of this seam's scripts.
    pub async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, PresenceError> {
        run(&self.client, script, keys, args, self.bound, self.what).await
    }
}
