//! The batcher of this node's connects, disconnects and status reads: those made while one
//! `CHANGES` run (`scripts.rs`) is on its way go together in the next, in order
//! (`crate::batch`).

use std::time::Duration;

use fred::prelude::{Client, Value};
use fred::types::scripts::Script;

use super::scripts::key;
use crate::batch::Batcher;
use crate::presence::PresenceError;

/// Upper bound on any one presence call, on top of the client's own command timeout (here, with
/// the batched calls, so that `mod.rs` uses this file and this file uses nothing of it).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) use super::lua::unavailable;

/// The most calls one `CHANGES` run carries (each a handful of short commands: a full batch
/// blocks Redis for about a millisecond).
const CHANGES_BATCH: usize = 256;

/// One batched call: its kind, socket id, user id and two more arguments (see `CHANGES`).
pub(super) type Call = [String; 5];

/// Starts the batcher of `node`'s calls (inside a tokio runtime); its task ends with it.
pub(super) fn batcher(
    client: &Client,
    script: &Script,
    node: &str,
    ttl: Duration,
) -> Batcher<Call, Result<Value, PresenceError>> {
    let (client, script) = (client.clone(), script.clone());
    let keys = [
        key("sockets"),
        key("index"),
        key("online"),
        key(&format!("node:{node}")),
        key(&format!("alive:{node}")),
        key("nodes"),
        key("due"),
        key("staff"),
        key("seen"),
    ];
    let head = [node.to_owned(), ttl.as_millis().to_string()];
    Batcher::new(CHANGES_BATCH, move |calls: Vec<Call>| {
        let (client, script) = (client.clone(), script.clone());
        let (keys, mut args) = (keys.to_vec(), head.to_vec());
        async move {
            let n = calls.len();
            args.reserve(n * 5);
            for call in calls {
                args.extend(call);
            }
            let run = script.evalsha_with_reload::<Value, _, _>(&client, keys, args);
            let failed = |why: String| (0..n).map(|_| Err(unavailable(&why))).collect();
            match tokio::time::timeout(CALL_TIMEOUT, run).await {
                Ok(Ok(Value::Array(answers))) if answers.len() == n => {
                    answers.into_iter().map(Ok).collect()
                }
                Ok(Ok(other)) => failed(format!("changes answered {other:?}")),
                Ok(Err(e)) => failed(e.to_string()),
                Err(_) => failed("presence call timed out".to_owned()),
            }
        }
    })
}
