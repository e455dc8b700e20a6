//! The presence contract: `MemoryPresence` and `RedisPresence` (on a real `redis-server`) pass
//! the same checks; then what only a shared presence can do: nodes racing, dead nodes, a Redis
//! that restarts empty.
//!
//! The `check!` list is kept by the compiler: a check left out of it is a `pub async fn` nothing
//! calls, which `dead_code` under the suite's `clippy -D warnings` refuses (seen: dropping one
//! line fails with "function `...` is never used"). Every backend runs the one list.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::ClientLike;
use switchboard::cluster::redis::{COMMAND_TIMEOUT, builder};
use switchboard::domain::{Role, now};
use switchboard::presence::{MemoryPresence, Presence, RedisPresence, SocketEntry, Transition};

use crate::helpers::{RedisServer, eventually};

fn entry(user: &str, socket: &str, node: &str) -> SocketEntry {
    SocketEntry {
        user_id: user.into(),
        socket_id: socket.into(),
        user_name: format!("{user} name"),
        user_role: Role::User,
        connected_at: now(),
        node: node.into(),
    }
}

fn staff_entry(user: &str, socket: &str, node: &str) -> SocketEntry {
    SocketEntry {
        user_role: Role::Admin,
        ..entry(user, socket, node)
    }
}

/// The offline grace of the contract suite's presences.
const GRACE: Duration = Duration::from_millis(300);

/// Claims until `user` is claimed (or 5 s pass); returns every claim's result, in order.
async fn claim_until(p: &dyn Presence, user: &str) -> Vec<String> {
    let claimed = Mutex::new(Vec::new());
    eventually(Duration::from_secs(5), || async {
        let got = p.claim_due_offline().await.unwrap();
        let mut claimed = claimed.lock().unwrap();
        claimed.extend(got);
        claimed.iter().any(|u| u == user)
    })
    .await;
    claimed.into_inner().unwrap()
}

pub async fn a_users_offline_is_due_after_the_grace_and_claimed_once(p: Arc<dyn Presence>) {
    p.connect(&entry("u1", "s1", "n1")).await.unwrap();
    assert!(p.disconnect("u1", "s1").await.unwrap());
    let left = tokio::time::Instant::now();
    assert!(
        p.claim_due_offline().await.unwrap().is_empty(),
        "not due inside the grace"
    );
    assert_eq!(claim_until(&*p, "u1").await, ["u1"]);
    assert!(left.elapsed() >= GRACE - Duration::from_millis(50));
    assert!(
        p.claim_due_offline().await.unwrap().is_empty(),
        "claimed once"
    );
}

pub async fn a_user_back_inside_the_grace_is_never_due_nor_online_news(p: Arc<dyn Presence>) {
    assert!(p.connect(&entry("u1", "s1", "n1")).await.unwrap());
    assert!(p.disconnect("u1", "s1").await.unwrap());
    assert!(
        !p.connect(&entry("u1", "s2", "n1")).await.unwrap(),
        "offline was never announced: coming back is no news"
    );
    // Absence, against a witness instead of a fixed wait: another user who leaves now falls due
    // a grace later; once the witness is claimed, u1 would have been due too had it stayed due.
    assert!(p.connect(&entry("w1", "sw", "n1")).await.unwrap());
    assert!(p.disconnect("w1", "sw").await.unwrap());
    let claimed = claim_until(&*p, "w1").await;
    assert_eq!(claimed, ["w1"], "only the witness is due");
    // Gone again: due again, from this departure.
    assert!(p.disconnect("u1", "s2").await.unwrap());
    assert_eq!(claim_until(&*p, "u1").await, ["u1"]);
    assert!(
        p.connect(&entry("u1", "s3", "n1")).await.unwrap(),
        "back after the announced offline: online is news"
    );
}

pub async fn withdrawn_users_are_due_after_the_grace(p: Arc<dyn Presence>) {
    p.connect(&entry("u1", "s1", "n1")).await.unwrap();
    p.connect(&entry("u2", "s2", "n1")).await.unwrap();
    p.withdraw_node().await.unwrap();
    let mut claimed = claim_until(&*p, "u1").await;
    claimed.extend(claim_until(&*p, "u2").await);
    claimed.sort();
    assert_eq!(claimed, ["u1", "u2"]);
}

pub async fn a_connected_staff_member_is_found(p: Arc<dyn Presence>) {
    assert_eq!(p.staff_online().await.unwrap(), None);
    p.connect(&entry("u1", "s1", "n1")).await.unwrap();
    assert_eq!(p.staff_online().await.unwrap(), None, "users are not staff");
    p.connect(&staff_entry("a1", "s2", "n1")).await.unwrap();
    assert_eq!(p.staff_online().await.unwrap().as_deref(), Some("a1"));
    p.disconnect("a1", "s2").await.unwrap();
    assert_eq!(p.staff_online().await.unwrap(), None);
}

pub async fn first_socket_makes_a_user_online_and_the_last_offline(p: Arc<dyn Presence>) {
    assert!(
        p.connect(&entry("u1", "s1", "n1")).await.unwrap(),
        "first socket: online"
    );
    assert!(
        !p.connect(&entry("u1", "s2", "n1")).await.unwrap(),
        "second tab: no transition"
    );
    assert!(
        !p.connect(&entry("u1", "s2", "n1")).await.unwrap(),
        "registering twice changes nothing"
    );
    let status = p.status("u1").await.unwrap();
    assert_eq!((status.sockets, status.last_seen), (2, None));

    assert!(!p.disconnect("u1", "s1").await.unwrap());
    assert!(
        !p.disconnect("u1", "s1").await.unwrap(),
        "removing twice changes nothing"
    );
    assert!(
        p.disconnect("u1", "s2").await.unwrap(),
        "last socket: offline"
    );
    let status = p.status("u1").await.unwrap();
    assert_eq!(status.sockets, 0);
    assert!(status.last_seen.is_some());
    assert_eq!(p.status("nobody").await.unwrap().last_seen, None);
}

pub async fn pages_list_every_socket_once_with_cluster_counts(p: Arc<dyn Presence>) {
    for (user, socket) in [
        ("u1", "s1"),
        ("u1", "s2"),
        ("u2", "s3"),
        ("u3", "s4"),
        ("u3", "s5"),
    ] {
        p.connect(&entry(user, socket, "n1")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = p.sockets(cursor.as_deref(), 2).await.unwrap();
        assert!(page.entries.len() <= 2);
        assert_eq!((page.sockets, page.users), (5, 3));
        seen.extend(page.entries.iter().map(|e| e.socket_id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["s1", "s2", "s3", "s4", "s5"],
        "stable order, no gaps, no repeats"
    );
    let first = p.sockets(None, 10).await.unwrap();
    assert_eq!(first.entries[0], entry_like(&first.entries[0], "u1", "s1"));
    assert!(first.next_cursor.is_none());
}

fn entry_like(e: &SocketEntry, user: &str, socket: &str) -> SocketEntry {
    SocketEntry {
        user_id: user.into(),
        socket_id: socket.into(),
        user_name: format!("{user} name"),
        node: "n1".into(),
        ..e.clone()
    }
}

pub async fn withdrawing_the_node_leaves_its_users_offline(p: Arc<dyn Presence>) {
    p.connect(&entry("u1", "s1", "n1")).await.unwrap();
    p.connect(&entry("u1", "s2", "n1")).await.unwrap();
    p.connect(&entry("u2", "s3", "n1")).await.unwrap();
    let users: BTreeSet<String> = p.withdraw_node().await.unwrap().into_iter().collect();
    assert_eq!(users, BTreeSet::from(["u1".to_owned(), "u2".to_owned()]));
    let page = p.sockets(None, 10).await.unwrap();
    assert_eq!((page.sockets, page.users, page.entries.len()), (0, 0, 0));
}

/// Instantiates every contract check as a test for one backend. `$factory` is an async fn
/// returning `(Arc<dyn Presence>, guard)`; the guard lives as long as the test.
macro_rules! presence_contract_tests {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use super::*;
            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (presence, _guard) = $factory().await;
                        super::$name(presence).await;
                    }
                };
            }
            check!(first_socket_makes_a_user_online_and_the_last_offline);
            check!(pages_list_every_socket_once_with_cluster_counts);
            check!(withdrawing_the_node_leaves_its_users_offline);
            check!(a_users_offline_is_due_after_the_grace_and_claimed_once);
            check!(a_user_back_inside_the_grace_is_never_due_nor_online_news);
            check!(withdrawn_users_are_due_after_the_grace);
            check!(a_connected_staff_member_is_found);
        }
    };
}

async fn memory_presence() -> (Arc<dyn Presence>, ()) {
    (
        Arc::new(MemoryPresence::new().with_offline_grace(GRACE)),
        (),
    )
}

/// A `RedisPresence` for node `node` on `redis`, with a TTL of `ttl`.
async fn redis_node(redis: &RedisServer, node: &str, ttl: Duration) -> Arc<RedisPresence> {
    let client = builder(&redis.url(), COMMAND_TIMEOUT)
        .unwrap()
        .build()
        .unwrap();
    client.init().await.unwrap();
    Arc::new(RedisPresence::new(client, node.into(), ttl).with_offline_grace(GRACE))
}

async fn redis_presence() -> (Arc<dyn Presence>, RedisServer) {
    let redis = RedisServer::start().await;
    let p = redis_node(&redis, "n1", Duration::from_secs(15)).await;
    p.heartbeat().await.unwrap();
    (p, redis)
}

presence_contract_tests!(memory, memory_presence);
presence_contract_tests!(redis, redis_presence);

#[tokio::test]
async fn nodes_racing_for_one_user_produce_one_online_and_one_offline() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(15);
    let nodes = [
        redis_node(&redis, "n1", ttl).await,
        redis_node(&redis, "n2", ttl).await,
        redis_node(&redis, "n3", ttl).await,
    ];
    let connects = (0..30).map(|i| {
        let node = nodes[i % 3].clone();
        async move {
            node.connect(&entry("u1", &format!("s{i}"), &format!("n{}", i % 3 + 1)))
                .await
                .unwrap()
        }
    });
    let onlines = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .filter(|t| *t)
        .count();
    assert_eq!(onlines, 1, "exactly one socket made u1 online");
    assert_eq!(nodes[1].status("u1").await.unwrap().sockets, 30);

    let disconnects = (0..30).map(|i| {
        let node = nodes[i % 3].clone();
        async move { node.disconnect("u1", &format!("s{i}")).await.unwrap() }
    });
    let offlines = futures_util::future::join_all(disconnects)
        .await
        .into_iter()
        .filter(|t| *t)
        .count();
    assert_eq!(offlines, 1, "exactly one socket left u1 offline");
}

#[tokio::test]
async fn a_silent_node_is_reaped_by_exactly_one_survivor() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(1);
    let survivors = [
        redis_node(&redis, "n1", ttl).await,
        redis_node(&redis, "n2", ttl).await,
    ];
    let silent = redis_node(&redis, "dead", ttl).await;
    for node in survivors.iter().chain([&silent]) {
        node.heartbeat().await.unwrap();
    }
    silent.connect(&entry("u1", "s1", "dead")).await.unwrap();
    silent.connect(&entry("u2", "s2", "dead")).await.unwrap();
    survivors[0]
        .connect(&entry("u2", "s3", "n1"))
        .await
        .unwrap();

    // The survivors keep beating; the silent node's key expires after its TTL.
    let announced: Mutex<Vec<Transition>> = Mutex::default();
    let reaped = eventually(Duration::from_secs(5), || async {
        for node in &survivors {
            let got = node.heartbeat().await.unwrap();
            announced.lock().unwrap().extend(got);
        }
        !announced.lock().unwrap().is_empty()
    })
    .await;
    assert!(reaped, "the silent node was not reaped");
    let mut announced = announced.into_inner().unwrap();
    for node in &survivors {
        announced.extend(node.heartbeat().await.unwrap());
    }
    assert_eq!(
        announced,
        vec![Transition {
            user_id: "u1".into(),
            online: false
        }],
        "u1 once; u2 still has a socket"
    );
    let page = survivors[1].sockets(None, 10).await.unwrap();
    assert_eq!((page.sockets, page.users), (1, 1));
}

#[tokio::test]
async fn a_redis_restarted_empty_is_rewritten_within_one_heartbeat_without_announcements() {
    let mut redis = RedisServer::start().await;
    let ttl = Duration::from_secs(15);
    let (a, b) = (
        redis_node(&redis, "n1", ttl).await,
        redis_node(&redis, "n2", ttl).await,
    );
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    a.connect(&entry("u1", "s1", "n1")).await.unwrap();
    b.connect(&entry("u1", "s2", "n2")).await.unwrap();
    b.connect(&entry("u2", "s3", "n2")).await.unwrap();

    redis.restart().await;
    // u2 left while Redis was empty: the rewrite must not bring it back.
    let _ = b.disconnect("u2", "s3").await;
    let changes = Mutex::new(Vec::new());
    let rewritten = eventually(Duration::from_secs(10), || async {
        let (Ok(x), Ok(y)) = (a.heartbeat().await, b.heartbeat().await) else {
            return false;
        };
        changes.lock().unwrap().extend(x.into_iter().chain(y));
        a.sockets(None, 10).await.is_ok_and(|p| p.sockets == 2)
    })
    .await;
    assert!(rewritten, "the nodes did not write their sockets back");
    let changes = changes.into_inner().unwrap();
    assert!(
        changes.iter().all(|c| !c.online),
        "users online all along are not announced again: {changes:?}"
    );
    let page = b.sockets(None, 10).await.unwrap();
    assert_eq!((page.sockets, page.users), (2, 1));
    assert_eq!(a.status("u1").await.unwrap().sockets, 2);
    assert!(
        a.resyncs() >= 2 && b.resyncs() >= 2,
        "a first resync at start, one after the restart"
    );
}

#[tokio::test]
async fn a_dead_nodes_user_is_claimed_by_exactly_one_of_the_racing_survivors() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(1);
    let survivors = [
        redis_node(&redis, "n1", ttl).await,
        redis_node(&redis, "n2", ttl).await,
        redis_node(&redis, "n3", ttl).await,
    ];
    let silent = redis_node(&redis, "dead", ttl).await;
    for node in survivors.iter().chain([&silent]) {
        node.heartbeat().await.unwrap();
    }
    silent.connect(&entry("u1", "s1", "dead")).await.unwrap();
    // Reaped by one survivor's heartbeat, then claimed by whichever survivor asks after the
    // grace: each claim of the three races the others.
    let claimed = Mutex::new(Vec::new());
    let any = eventually(Duration::from_secs(10), || async {
        let claims = survivors.iter().map(|node| async move {
            node.heartbeat().await.unwrap();
            node.claim_due_offline().await.unwrap()
        });
        let got = futures_util::future::join_all(claims).await;
        let mut claimed = claimed.lock().unwrap();
        claimed.extend(got.into_iter().flatten());
        !claimed.is_empty()
    })
    .await;
    assert!(any, "never claimed");
    let mut claimed = claimed.into_inner().unwrap();
    for node in &survivors {
        claimed.extend(node.claim_due_offline().await.unwrap());
    }
    assert_eq!(claimed, ["u1"], "one claim, cluster-wide");
}

#[tokio::test]
async fn a_due_offline_outlives_the_node_that_saw_the_departure() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(15);
    let leaving = redis_node(&redis, "n1", ttl).await;
    leaving.heartbeat().await.unwrap();
    leaving.connect(&entry("u1", "s1", "n1")).await.unwrap();
    assert!(leaving.disconnect("u1", "s1").await.unwrap());
    drop(leaving);
    let other = redis_node(&redis, "n2", ttl).await;
    assert_eq!(claim_until(&*other, "u1").await, ["u1"]);
}
