//! The recovery contract: `RedisRecovery` (on a real `redis-server`) and `EmbeddedRecovery` (on a
//! temporary `DATA_DIR`) pass the same checks of the log, the sessions and the rules `Recovery`
//! applies over them; then what only one of them can show (a restart on the same directory, a
//! Redis that comes back empty).
//!
//! The `check!` list is kept by the compiler: a check left out of it is a `pub async fn` nothing
//! calls, which `dead_code` under the suite's `clippy -D warnings` refuses (seen: dropping one
//! line fails with "function `...` is never used"). Every backend runs the one list.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::ClientLike;
use switchboard::cluster::redis::{COMMAND_TIMEOUT, builder};
use switchboard::recovery::{
    EmbeddedRecovery, MAX_REPLAY, Offset, Pid, Recovery, RecoveryBackend, RedisRecovery, Refusal,
    Session, now_ms,
};

use crate::helpers::RedisServer;

fn rooms(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| r.to_string()).collect()
}

async fn log(b: &dyn RecoveryBackend, to: &[&str], except: &[&str], n: u32) -> Offset {
    b.append(
        &rooms(to),
        &rooms(except),
        "message:new",
        &format!(r#"{{"n":{n}}}"#),
        0,
    )
    .await
    .unwrap()
}

fn session(user: &str, room_list: &[&str], sid: &str) -> Session {
    Session {
        pid: Pid::generate(),
        user_id: user.into(),
        rooms: rooms(room_list),
        started_ms: now_ms(),
        disconnected_ms: None,
        sid: sid.into(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

pub async fn the_log_reads_back_in_order_after_an_offset(b: Arc<dyn RecoveryBackend>) {
    let first = log(&*b, &["user:a", "admins"], &[], 1).await;
    let second = log(&*b, &["user:b"], &[], 2).await;
    let third = log(&*b, &["admins"], &["user:a"], 3).await;
    assert!(first < second && second < third, "offsets increase");

    let all = b.read(Offset { ms: 0, seq: 0 }, None, 100).await.unwrap();
    let payloads: Vec<&str> = all.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(payloads, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    assert_eq!(all[0].rooms, rooms(&["user:a", "admins"]));
    assert_eq!(all[2].except, rooms(&["user:a"]));
    assert_eq!(all[0].event, "message:new");

    let after_first = b.read(first, None, 100).await.unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [second, third]
    );
    let bounded = b.read(first, Some(second), 100).await.unwrap();
    assert_eq!(bounded.len(), 1, "until is inclusive");
    assert_eq!(b.read(third, None, 100).await.unwrap(), []);
    assert_eq!(
        b.read(Offset { ms: 0, seq: 0 }, None, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    let forged = Offset {
        ms: u64::MAX,
        seq: u64::MAX,
    };
    assert_eq!(
        b.read(forged, None, 100).await.unwrap(),
        [],
        "past the end: nothing"
    );

    let stats = b.stats().await.unwrap();
    assert_eq!(stats.entries, 3);
    assert!(stats.oldest_ms.is_some());
}

pub async fn sessions_change_only_for_the_socket_that_holds_them(b: Arc<dyn RecoveryBackend>) {
    let s = session("alice", &["user:alice", "users"], "sid-1");
    assert_eq!(b.get_session(&s.pid).await.unwrap(), None);
    b.put_session(&s, HOUR).await.unwrap();
    assert_eq!(b.get_session(&s.pid).await.unwrap(), Some(s.clone()));

    assert!(!b.end_session(&s.pid, "sid-other", 5, HOUR).await.unwrap());
    assert_eq!(
        b.get_session(&s.pid)
            .await
            .unwrap()
            .unwrap()
            .disconnected_ms,
        None
    );
    assert!(b.end_session(&s.pid, "sid-1", 5, HOUR).await.unwrap());
    assert_eq!(
        b.get_session(&s.pid)
            .await
            .unwrap()
            .unwrap()
            .disconnected_ms,
        Some(5)
    );

    assert!(!b.remove_session(&s.pid, "sid-other").await.unwrap());
    assert!(b.get_session(&s.pid).await.unwrap().is_some());
    assert!(b.remove_session(&s.pid, "sid-1").await.unwrap());
    assert_eq!(b.get_session(&s.pid).await.unwrap(), None);
    assert!(
        !b.end_session(&s.pid, "sid-1", 6, HOUR).await.unwrap(),
        "gone stays gone"
    );
}

pub async fn a_resume_replays_what_the_rooms_got_after_the_offset(b: Arc<dyn RecoveryBackend>) {
    let r = Recovery::new(b.clone(), Duration::from_secs(120));
    let pid = Pid::generate();
    let mine = rooms(&["user:alice", "users"]);
    r.open(&pid, "alice", &mine, "sid-1").await.unwrap();
    let seen = r
        .log(&mine[..1], &[], "message:new", r#"{"n":1}"#)
        .await
        .unwrap();
    r.dropped(&pid, "sid-1").await.unwrap();
    r.log(
        &rooms(&["user:alice", "admins"]),
        &[],
        "message:new",
        r#"{"n":2}"#,
    )
    .await
    .unwrap();
    r.log(
        &rooms(&["user:bob", "admins"]),
        &[],
        "message:new",
        r#"{"n":3}"#,
    )
    .await
    .unwrap();
    r.log(
        &rooms(&["user:alice"]),
        &rooms(&["user:alice"]),
        "user:status",
        r#"{"n":4}"#,
    )
    .await
    .unwrap();
    r.log(&rooms(&["users"]), &[], "message:read", r#"{"n":5}"#)
        .await
        .unwrap();

    let claim = r
        .check(pid.as_str(), Some(&seen.to_string()), "alice")
        .await
        .unwrap();
    r.take(&claim, "sid-2").await.unwrap();
    let missed = r.missed(&claim, &mine).await.unwrap();
    let payloads: Vec<&str> = missed.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(
        payloads,
        [r#"{"n":2}"#, r#"{"n":5}"#],
        "own rooms only, excluded rooms skipped"
    );
    assert!(
        missed.windows(2).all(|w| w[0].offset < w[1].offset),
        "in log order"
    );

    // Without an offset: everything since the session began.
    let from_start = r.check(pid.as_str(), None, "alice").await.unwrap();
    let missed = r.missed(&from_start, &mine).await.unwrap();
    assert_eq!(missed.len(), 3);
    // A room the socket is no longer in is not replayed.
    let missed = r.missed(&from_start, &mine[..1]).await.unwrap();
    assert_eq!(missed.len(), 2);
}

pub async fn refused_resumes_change_nothing(b: Arc<dyn RecoveryBackend>) {
    let r = Recovery::new(b.clone(), Duration::from_secs(120));
    let pid = Pid::generate();
    r.open(&pid, "alice", &rooms(&["user:alice"]), "sid-1")
        .await
        .unwrap();
    let refusal = |res: Result<_, Refusal>| res.err();

    assert_eq!(
        refusal(r.check("not a pid", None, "alice").await),
        Some(Refusal::Malformed)
    );
    assert_eq!(
        refusal(r.check(pid.as_str(), Some("12-x"), "alice").await),
        Some(Refusal::Malformed)
    );
    assert_eq!(
        refusal(r.check(Pid::generate().as_str(), None, "alice").await),
        Some(Refusal::Unknown)
    );
    assert_eq!(
        refusal(r.check(pid.as_str(), None, "mallory").await),
        Some(Refusal::Foreign)
    );
    assert!(
        r.check(pid.as_str(), None, "alice").await.is_ok(),
        "the owner still can"
    );
    let future = Offset {
        ms: now_ms() + 3_600_000,
        seq: 0,
    };
    assert_eq!(
        refusal(
            r.check(pid.as_str(), Some(&future.to_string()), "alice")
                .await
        ),
        Some(Refusal::Malformed),
        "an offset from the future was not made here"
    );

    let old = Offset {
        ms: now_ms() - 121_000,
        seq: 0,
    };
    assert!(
        r.check(pid.as_str(), Some(&old.to_string()), "alice")
            .await
            .is_ok(),
        "an offset older than the log keeps, with nothing for alice's rooms since: nothing missed"
    );
    log(&*b, &["user:alice"], &[], 1).await;
    assert_eq!(
        refusal(r.check(pid.as_str(), Some(&old.to_string()), "alice").await),
        Some(Refusal::Expired),
        "an offset the log no longer covers, with an entry for alice's rooms since"
    );
    let mut gone_long_ago = session("alice", &["user:alice"], "sid-9");
    gone_long_ago.disconnected_ms = Some(now_ms() - 121_000);
    b.put_session(&gone_long_ago, HOUR).await.unwrap();
    assert_eq!(
        refusal(r.check(gone_long_ago.pid.as_str(), None, "alice").await),
        Some(Refusal::Expired)
    );
}

pub async fn a_session_that_missed_too_much_is_refused(b: Arc<dyn RecoveryBackend>) {
    let r = Recovery::new(b.clone(), Duration::from_secs(120));
    let pid = Pid::generate();
    let mine = rooms(&["user:alice"]);
    r.open(&pid, "alice", &mine, "sid-1").await.unwrap();
    for n in 0..=MAX_REPLAY {
        r.log(&mine, &[], "message:new", &format!(r#"{{"n":{n}}}"#))
            .await
            .unwrap();
    }
    let claim = r.check(pid.as_str(), None, "alice").await.unwrap();
    assert_eq!(
        r.missed(&claim, &mine).await.err(),
        Some(Refusal::TooFarBehind)
    );
}

/// `n` entries of about 270 bytes for `user:bob`.
async fn others_traffic(r: &Recovery, n: u32) {
    let filler = "x".repeat(200);
    for i in 0..n {
        r.log(
            &rooms(&["user:bob"]),
            &[],
            "message:new",
            &format!(r#"{{"n":{i},"f":"{filler}"}}"#),
        )
        .await
        .unwrap();
    }
}

/// A session whose rooms got nothing while the log filled with everyone else's traffic resumes,
/// with nothing to replay, however far past the node's tail budget (the read a replay would
/// need) or the log's budget (the trim) that traffic went: the issue-28 avalanche, where the
/// clients that had heard nothing since they connected were all refused.
pub async fn a_quiet_session_resumes_past_others_traffic(b: Arc<dyn RecoveryBackend>) {
    const KIB: u64 = 1024;
    let window = Duration::from_secs(120);
    let mine = rooms(&["user:alice", "users"]);
    let others = rooms(&["user:bob"]);
    // The tail's budget: 4 KiB, about 15 entries; the log's: plenty.
    let r = Recovery::new(b.clone(), window).with_budgets(1024 * KIB, 4 * KIB);
    let quiet = Pid::generate();
    r.open(&quiet, "alice", &mine, "sid-1").await.unwrap();
    others_traffic(&r, 100).await;
    let claim = r.check(quiet.as_str(), None, "alice").await.unwrap();
    assert_eq!(r.missed(&claim, &mine).await, Ok(Vec::new()));

    // The log's budget now 8 KiB: the trim cuts entries after both sessions began.
    let r = Recovery::new(b.clone(), window).with_budgets(8 * KIB, 4 * KIB);
    let heard = Pid::generate();
    r.open(&heard, "carol", &rooms(&["user:carol"]), "sid-2")
        .await
        .unwrap();
    let mark = r.log(&others, &[], "message:new", "{}").await.unwrap();
    r.log(&rooms(&["user:carol"]), &[], "message:new", "{}")
        .await
        .unwrap();
    others_traffic(&r, 100).await;
    r.trim().await.unwrap();
    let claim = r.check(quiet.as_str(), None, "alice").await.unwrap();
    assert_eq!(r.missed(&claim, &mine).await, Ok(Vec::new()));
    // One that had an entry of its own in what the trim cut cannot be served exactly.
    assert_eq!(
        r.check(heard.as_str(), Some(&mark.to_string()), "carol")
            .await
            .err(),
        Some(Refusal::Expired)
    );
}

macro_rules! recovery_contract_tests {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use super::*;
            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (backend, _guard) = $factory().await;
                        super::$name(backend).await;
                    }
                };
            }
            check!(the_log_reads_back_in_order_after_an_offset);
            check!(sessions_change_only_for_the_socket_that_holds_them);
            check!(a_resume_replays_what_the_rooms_got_after_the_offset);
            check!(refused_resumes_change_nothing);
            check!(a_session_that_missed_too_much_is_refused);
            check!(a_quiet_session_resumes_past_others_traffic);
        }
    };
}

async fn embedded() -> (Arc<dyn RecoveryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(EmbeddedRecovery::open(dir.path()).unwrap()), dir)
}

async fn redis_backend(redis: &RedisServer) -> Arc<RedisRecovery> {
    let client = builder(&redis.url(), COMMAND_TIMEOUT)
        .unwrap()
        .build()
        .unwrap();
    client.init().await.unwrap();
    Arc::new(RedisRecovery::new(client))
}

async fn redis() -> (Arc<dyn RecoveryBackend>, RedisServer) {
    let server = RedisServer::start().await;
    (redis_backend(&server).await, server)
}

recovery_contract_tests!(embedded, embedded);
recovery_contract_tests!(redis, redis);

#[tokio::test]
async fn the_embedded_log_and_sessions_survive_a_restart_on_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pid = Pid::generate();
    let mine = rooms(&["user:alice"]);
    let before = {
        let r = Recovery::new(
            Arc::new(EmbeddedRecovery::open(dir.path()).unwrap()),
            Duration::from_secs(120),
        );
        r.open(&pid, "alice", &mine, "sid-1").await.unwrap();
        let seen = r.log(&mine, &[], "message:new", "{}").await.unwrap();
        r.dropped(&pid, "sid-1").await.unwrap();
        seen
    };
    let r = Recovery::new(
        Arc::new(EmbeddedRecovery::open(dir.path()).unwrap()),
        Duration::from_secs(120),
    );
    let after = r
        .log(&mine, &[], "message:new", r#"{"late":true}"#)
        .await
        .unwrap();
    assert!(after > before, "offsets keep increasing across a restart");
    let claim = r
        .check(pid.as_str(), Some(&before.to_string()), "alice")
        .await
        .unwrap();
    let missed = r.missed(&claim, &mine).await.unwrap();
    assert_eq!(missed.iter().map(|e| e.offset).collect::<Vec<_>>(), [after]);
}

#[tokio::test]
async fn a_redis_that_restarts_empty_refuses_resumes_without_failing() {
    let mut server = RedisServer::start().await;
    let r = Recovery::new(redis_backend(&server).await, Duration::from_secs(120));
    let pid = Pid::generate();
    let mine = rooms(&["user:alice"]);
    r.open(&pid, "alice", &mine, "sid-1").await.unwrap();
    let seen = r.log(&mine, &[], "message:new", "{}").await.unwrap();
    r.dropped(&pid, "sid-1").await.unwrap();

    server.kill();
    assert_eq!(
        r.check(pid.as_str(), Some(&seen.to_string()), "alice")
            .await
            .err(),
        Some(Refusal::Unavailable),
        "Redis down: refused, not stuck"
    );
    server.restart().await;
    let mut answer = None;
    for _ in 0..100 {
        match r
            .check(pid.as_str(), Some(&seen.to_string()), "alice")
            .await
        {
            Err(Refusal::Unavailable) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => {
                answer = Some(other.err());
                break;
            }
        }
    }
    assert_eq!(
        answer,
        Some(Some(Refusal::Unknown)),
        "the log and sessions are gone"
    );
    let next = r.log(&mine, &[], "message:new", "{}").await.unwrap();
    assert!(next > seen || next.ms >= seen.ms, "the log starts again");
}

#[tokio::test]
async fn concurrent_replays_on_one_node_each_get_everything_they_missed() {
    let (b, _guard) = redis().await;
    let r = Arc::new(Recovery::new(b, Duration::from_secs(120)));
    let mine = rooms(&["user:alice"]);
    let mut claims = Vec::new();
    for i in 0..50 {
        let pid = Pid::generate();
        r.open(&pid, "alice", &mine, &format!("sid-{i}"))
            .await
            .unwrap();
        claims.push(r.check(pid.as_str(), None, "alice").await.unwrap());
    }
    for n in 0..20 {
        r.log(&mine, &[], "message:new", &format!(r#"{{"n":{n}}}"#))
            .await
            .unwrap();
    }
    let replays = claims.into_iter().map(|claim| {
        let r = r.clone();
        let mine = mine.clone();
        tokio::spawn(async move { r.missed(&claim, &mine).await.unwrap().len() })
    });
    for replay in replays {
        // Sessions opened one after another: each one missed the 20 events logged after all opened.
        assert_eq!(replay.await.unwrap(), 20);
    }
}

/// Issue 25, item 7: a node that resumes a session right after *another* node trimmed the shared
/// log for its byte budget (before its own trim timer has run) must not replay from Redis
/// without the trimmed entries and call the session recovered.
#[tokio::test]
async fn a_replay_on_one_node_sees_a_trim_another_node_just_made() {
    let server = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            Recovery::new(redis_backend(&server).await, Duration::from_secs(120))
                .with_budgets(4096, 64 * 1024 * 1024),
        );
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let rooms = vec!["user:u1".to_owned()];
    let pid = Pid::generate();
    a.open(&pid, "u1", &rooms, "s1").await.unwrap();
    let first = a.log(&rooms, &[], "message:new", "{}").await.unwrap();
    for _ in 0..20 {
        a.log(
            &rooms,
            &[],
            "message:new",
            &format!("\"{}\"", "x".repeat(1000)),
        )
        .await
        .unwrap();
    }

    // Node b trims for the budget; node c has not trimmed and holds no tail.
    b.trim().await.unwrap();
    let claim = c.check(pid.as_str(), Some(&first.to_string()), "u1").await;
    let replay = match claim {
        Ok(claim) => c.missed(&claim, &rooms).await.map(|m| m.len()),
        Err(refusal) => Err(refusal),
    };

    assert!(
        matches!(replay, Err(Refusal::Expired)),
        "a replay missing trimmed entries was accepted: {replay:?}"
    );
}
