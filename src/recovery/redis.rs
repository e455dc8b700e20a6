//! The recovery backend in Redis (cluster mode): one stream for the log, one hash per session.
//!
//! # Keys
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{sb}:rlog` | stream | one entry per recoverable emission: `r` rooms, `x` excluded rooms (each `\n`-separated), `e` event, `d` payload JSON, `t` the append's token (`redis/append.rs`); the entry id is the offset |
//! | `{sb}:rlog:bytes` | string | the stream's size in the byte budget (`entry_bytes` summed), kept by the append and trim scripts |
//! | `{sb}:rlog:cut` | string | the id of the newest entry a trim dropped |
//! | `{sb}:rlog:room:{room}` | string | the id of the newest entry logged for that room, expiring after a day (`room_index.rs`) |
//! | `{sb}:rlog:void:{token}` | string, 60 s | an append whose answer was lost and that was not found logged: if it arrives late, it logs nothing (`redis/append.rs`) |
//! | `{sb}:rs:{pid}` | hash, TTL | `u` user, `r` rooms, `t` start (ms), `d` disconnected (ms; empty while held), `s` holding socket |
//!
//! The hash tag `{sb}` keeps every key in one slot (scripts touch several). An append is one
//! script: the `XADD` and the byte count together; one whose answer is lost is settled before its
//! event goes out (`redis/append.rs`). Every node's timer runs the trim script once
//! a second: it drops the oldest entries, while they are older than the window or the stream
//! is over `RECOVERY_LOG_MAX_BYTES` (issue 25, item 7: a payload of control characters is
//! ~30 KB of JSON, and the window's worth of them was gigabytes), with one exact `XTRIM MINID`.
//! Every session read and write (a handshake's read, a hand-over, a departure) goes through
//! one [`Batcher`]: the calls that queue while one script run is on its way travel together in
//! the next (issue 28: a storm of 6,000 resumes timed out at a few Redis calls per client).
//! A Redis that restarts empty has no sessions: every resume is refused as unknown and clients
//! start new sessions. The scripts are in `redis/scripts.rs`.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{Client, ClientLike, Value};
use fred::types::ClusterHash;
use fred::types::CustomCommand;
use fred::types::scripts::Script;

use crate::batch::Batcher;

use super::backend::{
    BackendError, LogStats, LoggedEvent, Offset, RecoveryBackend, Session, Trimmed,
};
use super::pid::Pid;
use super::room_index;

mod append;
mod calls;
mod scripts;

use append::Appender;
use calls::{bounded, failed, text};
use scripts::{LOG, LOG_BYTES, LOG_CUT, SESSIONS, TRIM};

/// The most session calls one script run carries (a few hundred short commands: it blocks
/// Redis for about a millisecond).
const SESSION_BATCH: usize = 256;

/// One session call: its key and the script's seven arguments for it.
type SessionCall = (String, [String; 7]);

/// Sends one batch of session calls as one script run; one answer per call.
async fn run_sessions(
    client: &Client,
    script: &Script,
    calls: Vec<SessionCall>,
) -> Vec<Result<Value, String>> {
    let n = calls.len();
    let mut keys = Vec::with_capacity(n);
    let mut args = Vec::with_capacity(n * 7);
    for (key, call) in calls {
        keys.push(key);
        args.extend(call);
    }
    match bounded(script.evalsha_with_reload::<Value, _, _>(client, keys, args)).await {
        Ok(Value::Array(answers)) if answers.len() == n => answers.into_iter().map(Ok).collect(),
        Ok(other) => vec![Err(format!("sessions script answered {other:?}")); n],
        Err(e) => vec![Err(e.0); n],
    }
}

/// Sessions and the log in Redis.
pub struct RedisRecovery {
    client: Client,
    append: Appender,
    trim: Script,
    sessions: Script,
    /// Every session read and write goes through it: a storm of resumes makes a few script
    /// runs, not a few Redis calls per client.
    batch: Batcher<SessionCall, Result<Value, String>>,
}

fn session_key(pid: &Pid) -> String {
    format!("{{sb}}:rs:{}", pid.as_str())
}

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// The first id after `after` (`XRANGE` bounds are inclusive); `None` past the last possible id
/// (a forged offset).
fn next_id(after: Offset) -> Option<String> {
    match after.seq.checked_add(1) {
        Some(seq) => Some(format!("{}-{seq}", after.ms)),
        None => Some(format!("{}-0", after.ms.checked_add(1)?)),
    }
}

/// `XRANGE`'s arguments for the entries after `after` up to `until` (`None`: the end), at most
/// `limit`; `None` past the last possible id.
fn xrange_args(after: Offset, until: Option<Offset>, limit: usize) -> Option<Vec<Value>> {
    let end = until.map_or_else(|| "+".to_owned(), |u| u.to_string());
    Some(vec![
        LOG.into(),
        next_id(after)?.into(),
        end.into(),
        "COUNT".into(),
        (limit as i64).into(),
    ])
}

fn split(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('\n').map(str::to_owned).collect()
    }
}

/// One `XRANGE` entry: `[id, [field, value, ...]]`.
fn parse_entry(v: Value) -> Option<LoggedEvent> {
    let Value::Array(mut parts) = v else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let offset = Offset::parse(&text(&parts[0])?)?;
    let Value::Array(fields) = fields else {
        return None;
    };
    let (mut rooms, mut except, mut event, mut payload) = (None, None, None, None);
    for pair in fields.chunks(2) {
        let [k, v] = pair else { return None };
        match text(k)?.as_str() {
            "r" => rooms = Some(split(&text(v)?)),
            "x" => except = Some(split(&text(v)?)),
            "e" => event = text(v),
            "d" => payload = text(v),
            _ => {}
        }
    }
    Some(LoggedEvent {
        offset,
        rooms: rooms?,
        except: except.unwrap_or_default(),
        event: event?,
        payload: payload?,
    })
}

impl RedisRecovery {
    /// Must be called inside a tokio runtime (it starts the session batcher's task).
    pub fn new(client: Client) -> RedisRecovery {
        let sessions = Script::from_lua(SESSIONS);
        let (c, script) = (client.clone(), sessions.clone());
        let batch = Batcher::new(SESSION_BATCH, move |calls| {
            let (c, script) = (c.clone(), script.clone());
            async move { run_sessions(&c, &script, calls).await }
        });
        RedisRecovery {
            client,
            append: Appender::new(),
            trim: Script::from_lua(TRIM),
            sessions,
            batch,
        }
    }

    /// Loads the scripts into Redis's script cache (every master of a Redis Cluster), so that the
    /// first calls do not each meet `NOSCRIPT` and reload.
    pub async fn load_scripts(&self) -> Result<(), BackendError> {
        let [append, settle] = self.append.scripts();
        for script in [append, settle, &self.trim, &self.sessions] {
            bounded(script.load(&self.client)).await?;
        }
        Ok(())
    }

    /// One session call, through the batcher.
    async fn session_call(&self, pid: &Pid, call: [String; 7]) -> Result<Value, BackendError> {
        match self.batch.call((session_key(pid), call)).await {
            Some(answer) => answer.map_err(BackendError),
            None => Err(BackendError("the session batcher stopped".into())),
        }
    }
}

#[async_trait]
impl RecoveryBackend for RedisRecovery {
    async fn append(
        &self,
        rooms: &[String],
        except: &[String],
        event: &str,
        payload: &str,
        min_ms: u64,
    ) -> Result<Offset, BackendError> {
        // `min_ms` is the trim script's business (every node's timer, once a second).
        let _ = min_ms;
        self.append
            .append(&self.client, rooms, except, event, payload)
            .await
    }

    async fn read(
        &self,
        after: Offset,
        until: Option<Offset>,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, BackendError> {
        let Some(args) = xrange_args(after, until, limit) else {
            return Ok(Vec::new());
        };
        let reply: Value = bounded(self.client.custom(cmd("XRANGE"), args)).await?;
        match reply {
            Value::Array(entries) => Ok(entries.into_iter().filter_map(parse_entry).collect()),
            Value::Null => Ok(Vec::new()),
            other => Err(BackendError(format!("XRANGE answered {other:?}"))),
        }
    }

    /// One pipeline: an `XRANGE` per range, then the cut's `GET`, sent in that order on one
    /// connection (every key is on the `{sb}` slot, so in a Redis Cluster too): one round trip
    /// for a whole batch of replays, and the cut read after the entries.
    async fn read_ranges(
        &self,
        ranges: &[(Offset, Option<Offset>)],
        limit: usize,
    ) -> Result<(Vec<Vec<LoggedEvent>>, Option<Offset>), BackendError> {
        let pipe = self.client.pipeline();
        for &(after, until) in ranges {
            // A forged offset past the last possible id reads nothing: from `+`, an empty range.
            let args = xrange_args(after, until, limit)
                .unwrap_or_else(|| vec![LOG.into(), "+".into(), "+".into()]);
            let _: () = pipe.custom(cmd("XRANGE"), args).await.map_err(failed)?;
        }
        let _: () = pipe
            .custom(cmd("GET"), vec![Value::from(LOG_CUT)])
            .await
            .map_err(failed)?;
        let replies: Vec<Value> = bounded(pipe.all::<Vec<Value>>()).await?;
        if replies.len() != ranges.len() + 1 {
            return Err(BackendError(format!(
                "the read pipeline answered {} replies for {} commands",
                replies.len(),
                ranges.len() + 1
            )));
        }
        let mut replies = replies.into_iter();
        let mut pages = Vec::with_capacity(ranges.len());
        for reply in replies.by_ref().take(ranges.len()) {
            pages.push(match reply {
                Value::Array(entries) => entries.into_iter().filter_map(parse_entry).collect(),
                Value::Null => Vec::new(),
                other => return Err(BackendError(format!("XRANGE answered {other:?}"))),
            });
        }
        let cut = replies
            .next()
            .and_then(|c| text(&c))
            .and_then(|c| Offset::parse(&c));
        Ok((pages, cut))
    }

    async fn stats(&self) -> Result<LogStats, BackendError> {
        let entries: Value =
            bounded(self.client.custom(cmd("XLEN"), vec![Value::from(LOG)])).await?;
        let first: Value = bounded(self.client.custom(
            cmd("XRANGE"),
            vec![
                Value::from(LOG),
                "-".into(),
                "+".into(),
                "COUNT".into(),
                1.into(),
            ],
        ))
        .await?;
        let oldest_ms = match first {
            Value::Array(mut e) if !e.is_empty() => parse_entry(e.remove(0)).map(|e| e.offset.ms),
            _ => None,
        };
        Ok(LogStats {
            entries: entries.as_u64().unwrap_or(0),
            oldest_ms,
        })
    }

    async fn trim(
        &self,
        max_bytes: u64,
        min_ms: u64,
        limit: usize,
    ) -> Result<Trimmed, BackendError> {
        let keys = vec![LOG.to_owned(), LOG_BYTES.to_owned(), LOG_CUT.to_owned()];
        let args = vec![max_bytes.to_string(), min_ms.to_string(), limit.to_string()];
        let reply: Value = bounded(self.trim.evalsha_with_reload::<Value, _, _>(
            &self.client,
            keys,
            args,
        ))
        .await?;
        let Value::Array(parts) = reply else {
            return Err(BackendError(format!("trim answered {reply:?}")));
        };
        Ok(Trimmed {
            bytes: parts.first().and_then(Value::as_u64).unwrap_or(0),
            cut: parts.get(1).and_then(text).and_then(|c| Offset::parse(&c)),
        })
    }

    async fn cut(&self) -> Result<Option<Offset>, BackendError> {
        let reply: Value =
            bounded(self.client.custom(cmd("GET"), vec![Value::from(LOG_CUT)])).await?;
        Ok(text(&reply).and_then(|c| Offset::parse(&c)))
    }

    async fn newest_for_rooms(&self, rooms: &[String]) -> Result<Option<Offset>, BackendError> {
        if rooms.is_empty() {
            return Ok(None);
        }
        // One slot (`{sb}`), so one MGET on every topology.
        let keys: Vec<Value> = rooms
            .iter()
            .map(|r| room_index::redis_key(r).into())
            .collect();
        let reply: Value = bounded(self.client.custom(cmd("MGET"), keys)).await?;
        let Value::Array(ids) = reply else {
            return Err(BackendError(format!("MGET answered {reply:?}")));
        };
        Ok(ids
            .iter()
            .filter_map(|id| text(id).and_then(|t| Offset::parse(&t)))
            .max())
    }

    async fn put_session(&self, s: &Session, ttl: Duration) -> Result<(), BackendError> {
        let call = [
            "p".to_owned(),
            s.user_id.clone(),
            s.rooms.join("\n"),
            s.started_ms.to_string(),
            s.sid.clone(),
            s.disconnected_ms.map(|d| d.to_string()).unwrap_or_default(),
            ttl.as_millis().to_string(),
        ];
        self.session_call(&s.pid, call).await?;
        Ok(())
    }

    async fn get_session(&self, pid: &Pid) -> Result<Option<Session>, BackendError> {
        let call = ["g", "", "", "", "", "", ""].map(str::to_owned);
        let reply = self.session_call(pid, call).await?;
        let pairs: Vec<(String, String)> = match reply {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|p| Some((text(p.first()?)?, text(p.get(1)?)?)))
                .collect(),
            Value::Map(map) => map
                .inner()
                .into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), text(&v)?)))
                .collect(),
            _ => Vec::new(),
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let (Some(user_id), Some(rooms), Some(started), Some(sid)) =
            (field("u"), field("r"), field("t"), field("s"))
        else {
            return Ok(None);
        };
        Ok(Some(Session {
            pid: pid.clone(),
            user_id,
            rooms: split(&rooms),
            started_ms: started.parse().map_err(failed)?,
            disconnected_ms: field("d").and_then(|d| d.parse().ok()),
            sid,
        }))
    }

    async fn end_session(
        &self,
        pid: &Pid,
        sid: &str,
        at_ms: u64,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let call = [
            "e".to_owned(),
            sid.to_owned(),
            at_ms.to_string(),
            ttl.as_millis().to_string(),
            String::new(),
            String::new(),
            String::new(),
        ];
        let v = self.session_call(pid, call).await?;
        Ok(v.as_i64() == Some(1))
    }

    async fn remove_session(&self, pid: &Pid, sid: &str) -> Result<bool, BackendError> {
        let mut call: [String; 7] = Default::default();
        call[0] = "r".to_owned();
        call[1] = sid.to_owned();
        let v = self.session_call(pid, call).await?;
        Ok(v.as_i64() == Some(1))
    }
}
