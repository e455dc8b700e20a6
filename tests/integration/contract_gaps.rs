//! The two places Switchboard broke its own contract (PROTOCOL.md), over real sockets on one node
//! and on three with a real `redis-server`:
//!
//! - who a message is delivered to: in a chat with an assigned admin, another admin's live
//!   receipt, history call, `chat:sync` and confirmation deliver nothing, the assigned admin's
//!   do; in a chat with no staff participant, a staff member on another node makes a user's
//!   message `delivered` live;
//! - the `offline` a drain must not lose: a user whose only socket was on a node that drained
//!   or died, and who does not come back within `OFFLINE_GRACE_SECS`, is announced offline
//!   exactly once, by whichever node survives; an embedded node drained and started again
//!   announces the users who did not come back.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::Config;
use switchboard::auth::Keys;
use switchboard::domain::Role;

use crate::helpers::cluster::{Cluster, queued_statuses, status_of};
use crate::helpers::quiet::no_more;
use crate::helpers::{
    ProcessNode, SECRET, Sio, TEST_HEARTBEAT_SECS, TEST_TTL_SECS, TestNode, Topology, eventually,
    send,
};

const LONG: Duration = Duration::from_secs(10);
/// `OFFLINE_GRACE_SECS` of the presence tests.
const GRACE_SECS: u64 = 3;

// ---------------------------------------------------------------------------------------------
// Who a message is delivered to
// ---------------------------------------------------------------------------------------------

/// A chat staff `admin` opened with `user`: `admin` is its assigned admin and a participant.
async fn assigned_chat(node: &TestNode, admin: &str, user: &str) -> String {
    let chat = node.staff_chat_json(admin, user).await;
    assert_eq!(chat["assignedAdmin"], admin);
    chat["id"].as_str().unwrap().to_owned()
}

/// The statuses of the chat's history, oldest first, as its user sees them (a user's fetch
/// delivers only staff messages, of which these chats have none).
async fn statuses(node: &TestNode, chat: &str) -> Vec<String> {
    history(node, chat, "u1", Role::User)
        .await
        .iter()
        .map(|m| m["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// `GET /api/chats/{chat}/messages` as `who`, oldest first.
async fn history(node: &TestNode, chat: &str, who: &str, role: Role) -> Vec<Value> {
    let token = node.token(who, role);
    let (status, body) = node
        .call(
            Method::GET,
            &format!("/api/chats/{chat}/messages"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut messages: Vec<Value> = body["messages"].as_array().cloned().unwrap_or_default();
    messages.sort_by_key(|m| m["seq"].as_u64());
    messages
}

/// Waits for the `message:delivered` of `message` on `socket`, and checks who it names.
async fn delivered_to(socket: &Sio, message: &Value, who: &str, what: &str) {
    let got = socket
        .try_event("message:delivered", LONG)
        .await
        .unwrap_or_else(|| panic!("no message:delivered: {what}"));
    assert_eq!(got["messageId"], message["id"], "{what}: {got}");
    assert_eq!(got["deliveredTo"], who, "{what}: {got}");
}

/// Waits until `who` has no socket left, in presence and in every node's own count.
async fn gone_everywhere(nodes: &[&TestNode], who: &str) {
    assert!(
        eventually(LONG, || async {
            let mut gone = true;
            for n in nodes {
                gone &= !n.state.user_limits.has_socket_here(who)
                    && n.state
                        .presence
                        .status(who)
                        .await
                        .is_ok_and(|p| p.sockets == 0);
            }
            gone
        })
        .await,
        "{who} still counted"
    );
}

/// Waits until every node's presence counts `n` sockets of `who`.
async fn counted_everywhere(nodes: &[&TestNode], who: &str, n: u64) {
    for node in nodes {
        assert!(
            eventually(LONG, || async {
                node.state
                    .presence
                    .status(who)
                    .await
                    .is_ok_and(|p| p.sockets == n)
            })
            .await,
            "{who} not counted on every node"
        );
    }
}

/// The assigned-admin rule: the user `u1` on `at_user`, another admin `a2` on `at_other`, the
/// assigned admin `a1` on `at_assigned` (the same node three times on a single node).
async fn only_the_assigned_admin_delivers(
    at_user: &TestNode,
    at_other: &TestNode,
    at_assigned: &TestNode,
) {
    let nodes = [at_user, at_other, at_assigned];
    let chat = assigned_chat(at_assigned, "a1", "u1").await;
    let user = at_user.socket("u1", Role::User).await;
    let other = at_other.socket("a2", Role::Admin).await;
    counted_everywhere(&nodes, "a2", 1).await;

    // Another admin's live receipt, history call, chat:sync and confirmation: nothing.
    let m1 = send(&user, &chat, "first").await;
    let live = other
        .try_event("message:new", LONG)
        .await
        .expect("a2 gets it live");
    assert_eq!(live["message"]["id"], m1["id"]);
    no_more(
        &user,
        "u1",
        "message:delivered",
        &nodes,
        "another admin's live receipt delivered it",
    )
    .await;
    let seen = history(at_other, &chat, "a2", Role::Admin).await;
    assert_eq!(seen.len(), 1);
    no_more(
        &user,
        "u1",
        "message:delivered",
        &nodes,
        "a2's history delivered it",
    )
    .await;
    let sync = other
        .ack("chat:sync", json!({ "chatId": chat, "afterSeq": 0 }))
        .await;
    assert_eq!(sync["ok"], true, "{sync}");
    no_more(
        &user,
        "u1",
        "message:delivered",
        &nodes,
        "a2's chat:sync delivered it",
    )
    .await;
    let confirm = other
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": m1["id"] }),
        )
        .await;
    assert_eq!(
        confirm["ok"], true,
        "a confirmation from staff is accepted: {confirm}"
    );
    no_more(
        &user,
        "u1",
        "message:delivered",
        &nodes,
        "a2's confirmation delivered it",
    )
    .await;
    for node in nodes {
        assert_eq!(
            statuses(node, &chat).await,
            ["sent"],
            "every node still shows it sent"
        );
    }

    // The assigned admin's history call delivers it.
    history(at_assigned, &chat, "a1", Role::Admin).await;
    delivered_to(&user, &m1, "a1", "the assigned admin's history").await;
    assert_eq!(statuses(at_other, &chat).await, ["delivered"]);

    // Their confirmation: sent while a1 has no socket, confirmed once a1 connects.
    let m2 = send(&user, &chat, "second").await;
    no_more(
        &user,
        "u1",
        "message:delivered",
        &nodes,
        "a2 online, a1 not: sent",
    )
    .await;
    let assigned = at_assigned.socket("a1", Role::Admin).await;
    no_more(
        &user,
        "u1",
        "message:delivered",
        &nodes,
        "connecting alone delivers nothing",
    )
    .await;
    let confirm = assigned
        .ack(
            "message:delivered",
            json!({ "chatId": chat, "messageId": m2["id"] }),
        )
        .await;
    assert_eq!(confirm["ok"], true, "{confirm}");
    delivered_to(&user, &m2, "a1", "the assigned admin's confirmation").await;

    // Their live receipt, on whichever node they are.
    counted_everywhere(&nodes, "a1", 1).await;
    let m3 = send(&user, &chat, "third").await;
    delivered_to(&user, &m3, "a1", "the assigned admin's live receipt").await;
    no_more(&user, "u1", "message:delivered", &nodes, "one transition").await;

    // Their chat:sync.
    assigned.close();
    gone_everywhere(&nodes, "a1").await;
    let m4 = send(&user, &chat, "fourth").await;
    no_more(&user, "u1", "message:delivered", &nodes, "a1 gone: sent").await;
    let back = at_assigned.socket("a1", Role::Admin).await;
    let sync = back
        .ack("chat:sync", json!({ "chatId": chat, "afterSeq": 3 }))
        .await;
    assert_eq!(sync["ok"], true, "{sync}");
    delivered_to(&user, &m4, "a1", "the assigned admin's chat:sync").await;
    for node in nodes {
        assert_eq!(statuses(node, &chat).await, ["delivered"; 4]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_assigned_admin_delivers_on_one_node() {
    let node = TestNode::start().await;
    only_the_assigned_admin_delivers(&node, &node, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_assigned_admin_delivers_across_three_nodes() {
    let cluster = Cluster::start(3, Topology::Single).await;
    let [a, b, c] = cluster.nodes();
    only_the_assigned_admin_delivers(a, b, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_message_is_delivered_live_to_the_only_staff_member_on_another_node() {
    let cluster = Cluster::start(3, Topology::Single).await;
    let [a, b, c] = cluster.nodes();
    // A chat the user opened: no staff participant, so every staff member is a recipient.
    let chat = a.open_chat(&a.token("u1", Role::User)).await;
    let user = a.socket("u1", Role::User).await;
    let staff = b.socket("s1", Role::Admin).await;
    let watcher = c.socket("u1", Role::User).await;
    counted_everywhere(&[a, b, c], "s1", 1).await;

    let sent = send(&user, &chat, "anyone?").await;
    assert_eq!(sent["status"], "sent");
    let live = staff
        .try_event("message:new", LONG)
        .await
        .expect("s1 gets it live");
    assert_eq!(live["message"]["id"], sent["id"]);
    for socket in [&user, &staff, &watcher] {
        delivered_to(
            socket,
            &sent,
            "s1",
            "the only staff member, on another node",
        )
        .await;
    }
    no_more(
        &user,
        "u1",
        "message:delivered",
        &[a, b, c],
        "one message:delivered",
    )
    .await;
    for node in [&a, &b, &c] {
        assert_eq!(statuses(node, &chat).await, ["delivered"]);
    }
}

// ---------------------------------------------------------------------------------------------
// The offline a drain must not lose
// ---------------------------------------------------------------------------------------------

/// A `switchboard` process (so it can be sent SIGTERM or SIGKILL), ready when returned.
struct Proc {
    node: ProcessNode,
    port: u16,
}

impl Proc {
    async fn start(data: &Path, env: &[(&str, &str)]) -> Proc {
        let grace = GRACE_SECS.to_string();
        let mut settings = vec![
            ("OFFLINE_GRACE_SECS", grace.as_str()),
            ("DRAIN_DELAY_SECS", "0"),
        ];
        settings.extend_from_slice(env);
        let node = ProcessNode::start_with_env(data, &settings).await;
        Proc {
            port: node.port,
            node,
        }
    }

    /// A cluster node named `id` on `redis`.
    async fn cluster(data: &Path, redis: &str, id: &str) -> Proc {
        let (ttl, beat) = (TEST_TTL_SECS.to_string(), TEST_HEARTBEAT_SECS.to_string());
        Self::start(
            data,
            &[
                ("REDIS_URL", redis),
                ("NODE_ID", id),
                ("PRESENCE_TTL_SECS", &ttl),
                ("HEARTBEAT_INTERVAL_SECS", &beat),
            ],
        )
        .await
    }

    /// SIGTERM (a drain), then waits for the process to exit.
    async fn drain(&mut self) {
        self.node.drain().await;
    }

    /// SIGKILL: no drain, no presence withdrawal.
    fn kill(&mut self) {
        self.node.kill();
    }

    async fn socket(&self, data: &Path, id: &str, role: Role) -> Sio {
        Sio::connect(self.port, Some(&token(data, id, role)))
            .await
            .expect("socket connects")
    }

    /// `GET /api/users/{id}/status` (as staff).
    async fn user_status(&self, data: &Path, id: &str) -> Value {
        reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/api/users/{id}/status",
                self.port
            ))
            .bearer_auth(token(data, "status-watcher", Role::Admin))
            .send()
            .await
            .expect("status answers")
            .json()
            .await
            .expect("status is JSON")
    }
}

/// A token every test node (they share [`SECRET`]) accepts.
fn token(data: &Path, id: &str, role: Role) -> String {
    let mut cfg = Config::for_tests(data.to_owned());
    cfg.jwt_secret = Some(SECRET.into());
    Keys::load(&cfg)
        .expect("keys")
        .verifier
        .issue(
            id,
            role,
            Some(&format!("{id} name")),
            Duration::from_secs(3600),
        )
        .expect("HS256 token")
}

/// A cluster whose in-process nodes (`names`) have the tests' offline grace.
async fn watched_cluster(names: &[&str]) -> Cluster {
    Cluster::build(Topology::Single)
        .named(names)
        .each(|c| c.offline_grace = Duration::from_secs(GRACE_SECS))
        .start()
        .await
}

/// Expects exactly one `offline` for `user` on `admin`, no sooner than the grace after `gone`,
/// and nothing more about `user` for a few heartbeats after it.
async fn announced_offline_once(admin: &Sio, user: &str, gone: Instant) {
    let bound = Duration::from_secs(GRACE_SECS + TEST_TTL_SECS + 4 * TEST_HEARTBEAT_SECS + 5);
    assert_eq!(
        status_of(admin, user, bound).await.as_deref(),
        Some("offline"),
        "{user} announced offline"
    );
    assert!(
        gone.elapsed() >= Duration::from_secs(GRACE_SECS) - Duration::from_millis(100),
        "offline before the grace ended: {:?}",
        gone.elapsed()
    );
    assert_eq!(
        status_of(admin, user, Duration::from_secs(3 * TEST_HEARTBEAT_SECS)).await,
        None,
        "announced more than once"
    );
}

/// Expects no `user:status` about `user` on `admin` until well past the grace.
async fn never_announced(admin: &Sio, user: &str) {
    let quiet = Duration::from_secs(GRACE_SECS + TEST_TTL_SECS + 3 * TEST_HEARTBEAT_SECS);
    assert_eq!(
        status_of(admin, user, quiet).await,
        None,
        "{user} flickered"
    );
    assert!(queued_statuses(admin, user).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_nodes_user_is_announced_offline_once_by_another_node_after_the_grace() {
    let cluster = watched_cluster(&["stays"]).await;
    let (stays, data, redis) = (&cluster[0], cluster.data.clone(), cluster.url());
    let other = Proc::cluster(data.path(), &redis, "other").await;
    let mut leaves = Proc::cluster(data.path(), &redis, "leaves").await;
    let admin = stays.socket("a1", Role::Admin).await;
    let _only_there = leaves.socket(data.path(), "u1", Role::User).await;
    assert_eq!(
        status_of(&admin, "u1", LONG).await.as_deref(),
        Some("online")
    );

    let gone = Instant::now();
    leaves.drain().await;
    assert!(
        gone.elapsed() < Duration::from_secs(GRACE_SECS),
        "the drain outlasted the grace"
    );

    announced_offline_once(&admin, "u1", gone).await;
    assert_eq!(
        other.user_status(data.path(), "u1").await["status"],
        "offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_nodes_user_who_comes_back_inside_the_grace_is_never_announced_offline() {
    let cluster = watched_cluster(&["stays"]).await;
    let (stays, data, redis) = (&cluster[0], cluster.data.clone(), cluster.url());
    let _other = Proc::cluster(data.path(), &redis, "other").await;
    let mut leaves = Proc::cluster(data.path(), &redis, "leaves").await;
    let admin = stays.socket("a1", Role::Admin).await;
    let _only_there = leaves.socket(data.path(), "u1", Role::User).await;
    assert_eq!(
        status_of(&admin, "u1", LONG).await.as_deref(),
        Some("online")
    );

    leaves.drain().await;
    let _back = stays.socket("u1", Role::User).await;

    never_announced(&admin, "u1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_nodes_user_is_announced_offline_once_after_the_grace() {
    let cluster = watched_cluster(&["stays"]).await;
    let (stays, data, redis) = (&cluster[0], cluster.data.clone(), cluster.url());
    let _other = Proc::cluster(data.path(), &redis, "other").await;
    let mut doomed = Proc::cluster(data.path(), &redis, "doomed").await;
    let admin = stays.socket("a1", Role::Admin).await;
    let _only_there = doomed.socket(data.path(), "u1", Role::User).await;
    assert_eq!(
        status_of(&admin, "u1", LONG).await.as_deref(),
        Some("online")
    );

    doomed.kill();
    // The grace runs from the reaping (the node is found dead), not from the kill.
    assert!(
        eventually(Duration::from_secs(TEST_TTL_SECS + 5), || async {
            stays
                .state
                .presence
                .status("u1")
                .await
                .is_ok_and(|p| p.sockets == 0)
        })
        .await,
        "the dead node was not reaped"
    );
    announced_offline_once(&admin, "u1", Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_nodes_user_is_announced_once_even_when_the_node_that_reaped_it_dies_too() {
    let cluster = watched_cluster(&[]).await;
    let (data, redis) = (cluster.data.clone(), cluster.url());
    let mut reaper = Proc::cluster(data.path(), &redis, "reaper").await;
    let mut doomed = Proc::cluster(data.path(), &redis, "doomed").await;
    let _only_there = doomed.socket(data.path(), "u1", Role::User).await;
    assert!(
        eventually(LONG, || async {
            reaper.user_status(data.path(), "u1").await["sockets"] == 1
        })
        .await
    );

    // The only other node reaps the dead one (its users' grace starts), then dies in turn.
    doomed.kill();
    // The reap (and the user's grace) began after the last look that still saw the socket:
    // the earliest the grace can end is that look's start plus the grace.
    let alive_at = std::sync::Mutex::new(Instant::now());
    assert!(
        eventually(Duration::from_secs(TEST_TTL_SECS + 5), || async {
            let asked = Instant::now();
            let sockets = reaper.user_status(data.path(), "u1").await["sockets"].clone();
            if sockets == 1 {
                *alive_at.lock().unwrap() = asked;
            }
            sockets == 0
        })
        .await,
        "the dead node was not reaped"
    );
    let reaped = *alive_at.lock().unwrap();
    // A node that joins now, with an admin watching, must announce it when the grace ends.
    let stays = cluster.join("stays").await;
    let admin = stays.socket("a1", Role::Admin).await;
    reaper.kill();
    assert!(
        reaped.elapsed() < Duration::from_secs(GRACE_SECS),
        "too slow to test the grace"
    );

    announced_offline_once(&admin, "u1", reaped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_node_drained_and_restarted_announces_the_users_who_did_not_come_back() {
    let data = tempfile::tempdir().unwrap();
    let mut node = Proc::start(data.path(), &[]).await;
    let _gone = node.socket(data.path(), "u1", Role::User).await;
    let _returns = node.socket(data.path(), "u2", Role::User).await;
    for user in ["u1", "u2"] {
        assert!(
            eventually(LONG, || async {
                node.user_status(data.path(), user).await["sockets"] == 1
            })
            .await
        );
    }

    let drained = Instant::now();
    node.drain().await;
    let restarted = Proc::start(data.path(), &[]).await;
    let admin = restarted.socket(data.path(), "a1", Role::Admin).await;
    let _back = restarted.socket(data.path(), "u2", Role::User).await;
    assert!(
        drained.elapsed() < Duration::from_secs(GRACE_SECS),
        "the restart outlasted the grace"
    );

    announced_offline_once(&admin, "u1", drained).await;
    assert!(
        queued_statuses(&admin, "u2").iter().all(|s| s != "offline"),
        "u2 came back"
    );
    assert_eq!(
        restarted.user_status(data.path(), "u1").await["status"],
        "offline"
    );

    // Announced once: a second restart does not announce it again.
    drop(admin);
    let mut restarted = restarted;
    restarted.drain().await;
    let again = Proc::start(data.path(), &[]).await;
    let admin = again.socket(data.path(), "a1", Role::Admin).await;
    never_announced(&admin, "u1").await;
}
