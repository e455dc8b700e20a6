//! Redis failovers under traffic, on real servers: a Sentinel group whose primary is SIGKILLed,
//! a Redis Cluster whose masters are SIGKILLed one after the other, and a primary replaced
//! behind one address (a TCP proxy switched to a promoted replica that holds an older copy of
//! the data); and `/readyz` through a short and a long Redis outage.
//!
//! In each failover: no acknowledged message is lost (every one reaches staff on the other
//! node), cross-node delivery resumes within [`RESUME_BOUND`] (the measured lag is printed:
//! `cargo test failover -- --nocapture`), presence is right on every node within
//! [`PRESENCE_BOUND`], and nobody who stayed is announced offline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::domain::Role;
use tokio::sync::watch;

use crate::helpers::cluster::{LONG, active_users, queued_statuses, readyz, shared_dir, status_of};
use crate::helpers::redis::{RedisCluster, RedisServer, SentinelGroup, TcpProxy, cli};
use crate::helpers::{Sio, TestNode, eventually, heartbeats_pass};

/// The longest an acknowledged message may take to reach the other node across a failover
/// (docs/cluster.md gives the measured figures and where the time goes).
const RESUME_BOUND: Duration = Duration::from_secs(15);

/// How soon after Redis is whole again presence must be right on every node: a reconnect, one
/// heartbeat, and the time to look.
const PRESENCE_BOUND: Duration = Duration::from_secs(10);

/// Two nodes with sockets on both and one sender on each, sending until told to stop.
struct Scene {
    a: TestNode,
    b: TestNode,
    /// Staff on node a and on node b (their `user:status` events are checked).
    admin_a: Sio,
    admin_b: Sio,
    /// Users who stay connected throughout (u2 on both nodes, u3 on b only).
    _stay: Vec<Sio>,
    /// The senders' traffic: u1 on node a, u4 on node b.
    traffic: Vec<Traffic>,
    /// What staff received on the other node: on b for a's sender, on a for b's.
    received: Vec<Receiver>,
    _data: Arc<tempfile::TempDir>,
}

/// A sender's acknowledged messages: id -> when the ack arrived.
struct Traffic {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<BTreeMap<String, Instant>>,
}

/// The `message:new` ids one staff socket received, and when each first arrived.
struct Receiver {
    seen: Arc<std::sync::Mutex<BTreeMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends on `chat` every 80 ms (under the rate limit), each with its own `clientMessageId`,
/// until stopped (at most 1,000 messages).
fn send_until_stopped(sender: Sio, chat: String, tag: &'static str) -> Traffic {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(80));
        for i in 0..1_000 {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => break,
            }
            let payload = json!({
                "chatId": chat,
                "message": { "content": format!("{tag}{i}") },
                "clientMessageId": format!("{tag}{i}"),
            });
            if let Some(ack) = sender
                .try_ack("message:send", payload, Duration::from_secs(5))
                .await
                && ack["ok"] == true
            {
                acked.insert(
                    ack["message"]["id"].as_str().unwrap().to_owned(),
                    Instant::now(),
                );
            }
        }
        acked
    });
    Traffic { stop, task }
}

/// Records every `message:new` that reaches `socket`.
fn receive(socket: Sio) -> Receiver {
    let seen = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                if let Some(e) = socket.try_event("message:new", LONG).await {
                    let id = e["message"]["id"].as_str().unwrap_or_default().to_owned();
                    seen.lock().unwrap().entry(id).or_insert_with(Instant::now);
                }
            }
        }
    });
    Receiver { seen, task }
}

impl Scene {
    async fn start(url: &str) -> Scene {
        let data = shared_dir();
        let a = TestNode::cluster(data.clone(), url, "node-a").await;
        let b = TestNode::cluster(data.clone(), url, "node-b").await;
        let admin_a = a.socket("a1", Role::Admin).await;
        let admin_b = b.socket("a2", Role::Admin).await;
        let stay = vec![
            a.socket("u2", Role::User).await,
            b.socket("u2", Role::User).await,
            b.socket("u3", Role::User).await,
        ];
        let sender_a = a.socket("u1", Role::User).await;
        let sender_b = b.socket("u4", Role::User).await;
        let chat_a = a.open_chat(&a.token("u1", Role::User)).await;
        let chat_b = b.open_chat(&b.token("u4", Role::User)).await;
        // Staff reads the other node's messages on a connection of its own, so reading them
        // never competes with the status checks on `admin_a` / `admin_b`.
        let received = vec![
            receive(b.socket("a2", Role::Admin).await),
            receive(a.socket("a1", Role::Admin).await),
        ];
        assert!(
            eventually(LONG, || async { active_users(&a, "").await["count"] == 9 }).await,
            "every socket registered"
        );
        let traffic = vec![
            send_until_stopped(sender_a, chat_a, "a"),
            send_until_stopped(sender_b, chat_b, "b"),
        ];
        let scene = Scene {
            a,
            b,
            admin_a,
            admin_b,
            _stay: stay,
            traffic,
            received,
            _data: data,
        };
        // Traffic flows both ways before anything fails.
        assert!(
            eventually(LONG, || async {
                scene
                    .received
                    .iter()
                    .all(|r| r.seen.lock().unwrap().len() >= 5)
            })
            .await,
            "traffic flows across nodes"
        );
        scene
    }

    /// Waits until messages cross between the nodes again, both ways (five more each).
    async fn traffic_crosses_again(&self, what: &str) {
        let before: Vec<usize> = self
            .received
            .iter()
            .map(|r| r.seen.lock().unwrap().len())
            .collect();
        let again = eventually(RESUME_BOUND, || async {
            self.received
                .iter()
                .zip(&before)
                .all(|(r, n)| r.seen.lock().unwrap().len() >= n + 5)
        })
        .await;
        assert!(
            again,
            "{what}: cross-node delivery did not resume within {RESUME_BOUND:?}"
        );
    }

    /// Stops the traffic; checks that every acknowledged message reached staff on the other
    /// node, within `RESUME_BOUND` of its ack. Returns the longest lag.
    async fn no_acknowledged_message_lost(&mut self, what: &str) -> Duration {
        for t in &self.traffic {
            let _ = t.stop.send(true);
        }
        let mut sent = Vec::new();
        for t in self.traffic.drain(..) {
            let acked = tokio::time::timeout(LONG, t.task)
                .await
                .expect("traffic stops")
                .expect("traffic task");
            sent.push(acked);
        }
        let mut worst = Duration::ZERO;
        let mut count = 0;
        for (acked, r) in sent.iter().zip(&self.received) {
            let all_there = eventually(RESUME_BOUND, || async {
                let seen = r.seen.lock().unwrap();
                acked.keys().all(|id| seen.contains_key(id))
            })
            .await;
            let seen = r.seen.lock().unwrap().clone();
            let missing = acked.keys().filter(|id| !seen.contains_key(*id)).count();
            assert!(
                all_there,
                "{what}: {missing} of {} acknowledged messages never reached the other node",
                acked.len()
            );
            for (id, at) in acked {
                worst = worst.max(seen[id].saturating_duration_since(*at));
            }
            count += acked.len();
        }
        eprintln!(
            "{what}: {count} acknowledged messages, every one delivered across nodes; \
             longest ack-to-other-node lag {worst:?}"
        );
        assert!(count >= 10, "{what}: only {count} messages acknowledged");
        assert!(
            worst <= RESUME_BOUND,
            "{what}: cross-node delivery took {worst:?}"
        );
        worst
    }

    /// Presence is right on both nodes (`sockets` and `users` counted the same on each), nobody
    /// was announced offline (nobody left), and each user in `joined` (connected during the
    /// failover) was announced online.
    async fn presence_is_right(&self, what: &str, sockets: u64, users: u64, joined: &[&str]) {
        let right = eventually(PRESENCE_BOUND, || async {
            let (va, vb) = (
                active_users(&self.a, "").await,
                active_users(&self.b, "").await,
            );
            va["count"] == sockets
                && va["users"] == users
                && vb["count"] == sockets
                && vb["activeUsers"] == va["activeUsers"]
        })
        .await;
        assert!(
            right,
            "{what}: presence not right within {PRESENCE_BOUND:?}: {} / {}",
            active_users(&self.a, "").await,
            active_users(&self.b, "").await
        );
        for admin in [&self.admin_a, &self.admin_b] {
            // Read in arrival order: a replayed status may come after a local one.
            let mut waiting: Vec<&str> = joined.to_vec();
            let deadline = tokio::time::Instant::now() + LONG;
            while !waiting.is_empty() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let Some(e) = admin.try_event("user:status", left).await else {
                    panic!("{what}: {waiting:?} never announced online");
                };
                assert_ne!(e["status"], "offline", "{what}: {e}");
                waiting.retain(|u| e["userId"] != *u);
            }
        }
        // Two heartbeats on each node: a late reap or resync would announce now.
        let (a_beat, b_beat) =
            tokio::join!(heartbeats_pass(&self.a, 2), heartbeats_pass(&self.b, 2));
        assert!(a_beat && b_beat, "{what}: both nodes kept beating");
        for admin in [&self.admin_a, &self.admin_b] {
            for user in ["u1", "u2", "u3", "u4", "a1", "a2"].iter().chain(joined) {
                let statuses = queued_statuses(admin, user);
                assert!(
                    !statuses.contains(&"offline".to_owned()),
                    "{what}: {user}, who never left, was announced offline: {statuses:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_sentinel_failover_under_traffic_loses_no_acknowledged_message() {
    let mut group = SentinelGroup::start().await;
    let mut scene = Scene::start(&group.url()).await;

    let took = group.fail_over().await;
    eprintln!("sentinel: replica promoted {took:?} after the primary was killed");
    // A user who connects while the primary is gone is counted once it is back.
    let joined = scene.b.socket("u5", Role::User).await;
    assert_ne!(group.current_primary(), Some(group.primary.port));

    scene.traffic_crosses_again("sentinel failover").await;
    let lag = scene
        .no_acknowledged_message_lost("sentinel failover")
        .await;
    eprintln!("sentinel failover: promotion {took:?}, delivery lag at most {lag:?}");
    scene
        .presence_is_right("sentinel failover", 10, 7, &["u5"])
        .await;
    drop(joined);
}

#[tokio::test]
async fn a_redis_cluster_survives_its_masters_failing_over_under_traffic() {
    let mut cluster = RedisCluster::start(true).await;
    let mut scene = Scene::start(&cluster.url()).await;

    // First the master of the adapter's request channel (cross-node delivery), then the master
    // of the presence slot.
    let (_, took) = cluster.fail_over_master_of("switchboard-request#/#").await;
    eprintln!("cluster: pub/sub slot failed over in {took:?}");
    let joined = scene.b.socket("u5", Role::User).await;
    assert!(
        eventually(LONG, || async {
            active_users(&scene.a, "").await["count"] == 10
        })
        .await,
        "a socket connected after the first failover is counted"
    );
    let (_, took) = cluster.fail_over_master_of("{sb}:nodes").await;
    eprintln!("cluster: presence slot failed over in {took:?}");
    let late = scene.a.socket("u6", Role::User).await;

    scene.traffic_crosses_again("cluster failovers").await;
    let lag = scene
        .no_acknowledged_message_lost("cluster failovers")
        .await;
    eprintln!("cluster failovers: delivery lag at most {lag:?}");
    scene
        .presence_is_right("cluster failovers", 11, 8, &["u5", "u6"])
        .await;
    drop((joined, late));
}

#[tokio::test]
async fn a_primary_replaced_behind_its_address_by_an_older_copy_is_rebuilt() {
    let mut primary = RedisServer::start().await;
    let replica = RedisServer::start_replica_of(primary.port).await;
    let proxy = TcpProxy::start(primary.port).await;
    let mut scene = Scene::start(&proxy.url()).await;

    // The replica stops following: what it holds from now on is older than the primary.
    let replica_port = replica.port;
    let out = tokio::task::spawn_blocking(move || cli(replica_port, &["REPLICAOF", "NO", "ONE"]))
        .await
        .unwrap();
    assert!(out.contains("OK"), "{out}");
    // This socket is known only to the primary about to be lost.
    let only_on_old = scene.a.socket("u5", Role::User).await;
    for admin in [&scene.admin_a, &scene.admin_b] {
        assert_eq!(
            status_of(admin, "u5", LONG).await.as_deref(),
            Some("online")
        );
    }
    assert_eq!(active_users(&scene.b, "").await["count"], 10);
    // The managed service fails over: the old primary dies, the address now leads to the
    // promoted replica, and every open connection is cut.
    primary.kill();
    proxy.switch_to(replica.port);

    scene.traffic_crosses_again("switched address").await;
    let lag = scene.no_acknowledged_message_lost("switched address").await;
    eprintln!("switched address: delivery lag at most {lag:?}");
    // u5 is written back by its node (and not announced online a second time).
    scene
        .presence_is_right("switched address", 10, 7, &[])
        .await;
    for admin in [&scene.admin_a, &scene.admin_b] {
        assert_eq!(
            queued_statuses(admin, "u5"),
            Vec::<String>::new(),
            "u5, online all along, was announced again"
        );
    }
    drop(only_on_old);
}

/// How long `/readyz` took to answer, and what it said.
async fn timed_readyz(port: u16) -> (u16, Duration) {
    let started = Instant::now();
    let status = readyz(port).await;
    (status, started.elapsed())
}

#[tokio::test]
async fn readyz_rides_out_a_redis_blip_turns_503_after_the_grace_and_answers_at_once() {
    let redis = RedisServer::start().await;
    let data = shared_dir();
    let node = TestNode::cluster(data.clone(), &redis.url(), "node-a").await;
    assert_eq!(readyz(node.port).await, 200);
    const GRACE: Duration = switchboard::http::health::READINESS_GRACE;
    const PROBE: Duration = switchboard::http::health::PROBE_INTERVAL;
    // "At once": without waiting on Redis. A `/readyz` that asked Redis itself would wait out a
    // probe's bound (PROBE_INTERVAL) or the whole stall; below that, the margin is for a
    // machine busy with the rest of the suite (CI once saw a 100 ms bound missed).
    const AT_ONCE: Duration = PROBE.saturating_sub(Duration::from_millis(100));
    // The 503 comes between GRACE + 1 and GRACE + 2 probes after the outage began (the first
    // failed probe is recorded up to two probe intervals in); the rest is a busy machine's
    // late timers.
    const LATE: Duration = Duration::from_millis(2_500);

    // A blip shorter than the grace (Redis stalls: commands wait unanswered).
    redis.pause();
    let blip = Instant::now();
    while blip.elapsed() < Duration::from_millis(1_500) {
        let (status, took) = timed_readyz(node.port).await;
        assert_eq!(status, 200, "503 {:?} into a blip", blip.elapsed());
        assert!(took < AT_ONCE, "/readyz took {took:?} while Redis stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.resume();
    assert!(eventually(LONG, || async { readyz(node.port).await == 200 }).await);
    // The watcher has seen Redis answer again, so the next outage starts its own grace.
    assert!(
        eventually(LONG, || async { node.state.readiness.adapter.reachable() }).await,
        "the watcher saw Redis answer again"
    );

    // A longer outage: 503 once the grace is over, and never slow to say so.
    redis.pause();
    let outage = Instant::now();
    let turned = loop {
        let (status, took) = timed_readyz(node.port).await;
        assert!(took < AT_ONCE, "/readyz took {took:?} during an outage");
        if status == 503 {
            break outage.elapsed();
        }
        assert!(
            outage.elapsed() < GRACE + LATE + Duration::from_secs(1),
            "/readyz still 200 {:?} into an outage",
            outage.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("/readyz turned 503 {turned:?} into the outage (grace {GRACE:?})");
    assert!(turned >= GRACE, "503 after only {turned:?}");
    assert!(
        turned <= GRACE + LATE,
        "the outage was noticed late: 503 after {turned:?}"
    );
    redis.resume();
    assert!(
        eventually(Duration::from_secs(3), || async {
            readyz(node.port).await == 200
        })
        .await,
        "ready again once Redis answers"
    );
}
