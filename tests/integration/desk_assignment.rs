//! Auto-assignment (PROTOCOL.md, "The support desk"; `ASSIGNMENT=auto`) over real sockets: the
//! fewest open chats below the capacity, ties to the least recently assigned, the queue and
//! its draining (an agent available, a chat closed), reassignment after `REASSIGN_AFTER_SECS`,
//! and the races the issue names on three nodes with a real Redis (every topology) and on
//! MongoDB: a storm of chats gives exactly the capacity's worth of assignments and queues the
//! rest in order, also with an agent going away mid-storm.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::{AssignmentMode, Config};
use switchboard::domain::{Chat, ChatId, ChatStatus, Role};

use crate::helpers::{Cluster, Sio, Store, TestNode, Topology, WAIT, eventually};

/// Long enough for any pass a wake started to have ended.
const SETTLE: Duration = Duration::from_secs(15);

/// `ASSIGNMENT=auto` with a capacity of `cap` and `REASSIGN_AFTER_SECS` of `reassign` (0: never).
fn auto(c: &mut Config, cap: u32, reassign: u64) {
    c.assignment.mode = AssignmentMode::Auto;
    c.assignment.max_open_chats_per_agent = cap;
    c.assignment.reassign_after = Duration::from_secs(reassign);
}

/// The next `event` about `chat` on `socket` (earlier ones about other chats are skipped).
async fn event_for(socket: &Sio, event: &str, chat: &str) -> Value {
    event_where(socket, event, chat, |_| true).await
}

/// The next `event` about `chat` on `socket` that `wanted` accepts (earlier ones are skipped).
async fn event_where(
    socket: &Sio,
    event: &str,
    chat: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let e = socket.event(event).await;
        if e["chat"]["id"] == chat && wanted(&e) {
            return e;
        }
    }
}

/// A chat as the store has it now.
async fn stored(node: &TestNode, chat: &str) -> Chat {
    node.state
        .store
        .chat(&ChatId::from_trusted(chat.to_owned()))
        .await
        .unwrap()
        .expect("the chat exists")
}

/// `PATCH /api/chats/{chat}` as `by`; asserts `200`.
async fn patch(node: &TestNode, by: &str, chat: &str, body: Value) -> Value {
    let token = node.token(by, Role::Admin);
    let (status, answer) = node
        .call(
            Method::PATCH,
            &format!("/api/chats/{chat}"),
            Some(&token),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// A staff socket, once its `available` is known cluster-wide.
async fn available_agent(node: &TestNode, id: &str) -> Sio {
    let socket = node.socket(id, Role::Admin).await;
    assert!(
        eventually(WAIT, || async {
            node.state
                .availability
                .available_staff()
                .await
                .is_ok_and(|s| s.iter().any(|a| a == id))
        })
        .await,
        "{id} available"
    );
    socket
}

async fn say(socket: &Sio, status: &str) {
    let ack = socket
        .ack("staff:availability", json!({ "status": status }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_chat_goes_to_the_agent_with_the_fewest_open_chats_and_ties_to_the_least_recently_assigned()
 {
    // Arrange: two available agents; a1 already holds a chat staff opened.
    let node = TestNode::start_with(|c| auto(c, 3, 0)).await;
    let _a1 = available_agent(&node, "a1").await;
    let a2 = available_agent(&node, "a2").await;
    node.staff_chat("a1", "u0").await;
    let user = node.socket("u1", Role::User).await;
    let token = node.token("u1", Role::User);

    // Act: the user opens a chat.
    let first = node.open_chat(&token).await;

    // Assert: it was queued, then went to a2 (no open chat), announced by `system`.
    let created = event_for(&user, "chat:created", &first).await;
    assert!(created["chat"]["queuedAt"].is_string(), "{created}");
    for socket in [&user, &a2] {
        let updated = event_for(socket, "chat:updated", &first).await;
        assert_eq!(updated["by"], "system");
        assert_eq!(updated["changed"], json!(["assignedAdmin", "participants"]));
        assert_eq!(updated["chat"]["assignedAdmin"], "a2");
        assert_eq!(updated["chat"]["participants"], json!(["u1", "a2"]));
        assert!(updated["chat"]["assignedAt"].is_string(), "{updated}");
        assert!(updated["chat"].get("queuedAt").is_none(), "{updated}");
    }

    // Act: a second chat, with one open chat each.
    let second = node.open_chat(&token).await;

    // Assert: a1 was assigned less recently (its chat is older), so a1 gets it.
    let updated = event_for(&user, "chat:updated", &second).await;
    assert_eq!(updated["chat"]["assignedAdmin"], "a1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_chats_go_oldest_first_when_an_agent_becomes_available_and_when_a_chat_closes() {
    // Arrange: nobody available, capacity 2.
    let node = TestNode::start_with(|c| auto(c, 2, 0)).await;
    let user = node.socket("u1", Role::User).await;
    let token = node.token("u1", Role::User);

    // Act: three chats while nobody is there.
    let mut chats = Vec::new();
    for _ in 0..3 {
        chats.push(node.open_chat(&token).await);
    }

    // Assert: all three wait in the queue, unassigned.
    for chat in &chats {
        let c = stored(&node, chat).await;
        assert!(c.queued_at.is_some() && c.assigned_admin.is_none(), "{c:?}");
    }

    // Act: an agent arrives.
    let a1 = node.socket("a1", Role::Admin).await;

    // Assert: the two oldest go to them, in order; the third waits.
    for chat in &chats[..2] {
        let updated = user.event("chat:updated").await;
        assert_eq!(updated["chat"]["id"], chat.as_str());
        assert_eq!(updated["chat"]["assignedAdmin"], "a1");
    }
    assert!(stored(&node, &chats[2]).await.queued_at.is_some());

    // Act: a1 closes the first chat.
    patch(&node, "a1", &chats[0], json!({ "status": "closed" })).await;

    // Assert: the place it freed goes to the waiting chat.
    let updated = event_for(&a1, "chat:updated", &chats[2]).await;
    assert_eq!(updated["by"], "system");
    assert_eq!(updated["chat"]["assignedAdmin"], "a1");
    assert!(stored(&node, &chats[2]).await.queued_at.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_away_longer_than_reassign_after_loses_their_chats_to_the_front_of_the_queue() {
    // Arrange: capacity 1, reassignment after 1 s; a1 takes the first chat.
    let node = TestNode::start_with(|c| auto(c, 1, 1)).await;
    let a1 = available_agent(&node, "a1").await;
    let user = node.socket("u1", Role::User).await;
    let token = node.token("u1", Role::User);
    let first = node.open_chat(&token).await;
    let assigned = event_for(&user, "chat:updated", &first).await;
    assert_eq!(assigned["chat"]["assignedAdmin"], "a1");

    // Act: a1 goes away; a second chat queues behind nobody.
    say(&a1, "away").await;
    let second = node.open_chat(&token).await;

    // Assert: within a few seconds the first chat is back in the queue, a1 told too.
    let requeued = event_where(&a1, "chat:updated", &first, |e| {
        e["chat"].get("assignedAdmin").is_none()
    })
    .await;
    assert_eq!(requeued["by"], "system");
    assert_eq!(
        requeued["changed"],
        json!(["assignedAdmin", "participants"])
    );
    assert!(
        requeued["chat"].get("assignedAdmin").is_none(),
        "{requeued}"
    );
    assert_eq!(requeued["chat"]["participants"], json!(["u1"]));
    let (first_at, second_at) = (
        stored(&node, &first).await.queued_at.unwrap(),
        stored(&node, &second).await.queued_at.unwrap(),
    );
    assert!(first_at < second_at, "back at the front of the queue");

    // Act: another agent arrives (room for one chat).
    let _a2 = node.socket("a2", Role::Admin).await;

    // Assert: they get the chat at the front.
    let taken = event_where(&user, "chat:updated", &first, |e| {
        e["chat"]["assignedAdmin"] == "a2"
    })
    .await;
    assert_eq!(taken["by"], "system");
    assert!(stored(&node, &second).await.assigned_admin.is_none());
}

/// Three auto-assigning nodes on a Redis of `topology`, with capacity `cap`.
async fn three_nodes(topology: Topology, store: Store, cap: u32) -> Cluster {
    Cluster::build(topology)
        .named(&["as-0", "as-1", "as-2"])
        .store(store)
        .each(move |c| auto(c, cap, 0))
        .start()
        .await
}

/// Where the cluster tests keep their chats.
#[derive(Clone, Copy)]
enum Backend {
    /// One embedded store on a shared `DATA_DIR`.
    Embedded,
    /// The MongoDB-wire test server.
    Mongo,
}

/// `n` auto-assigning nodes `{prefix}-{i}` on the Redis at `url`, with capacity `cap`, on one
/// store.
async fn auto_cluster(
    url: &str,
    backend: Backend,
    cap: u32,
    n: usize,
    prefix: &str,
) -> Vec<TestNode> {
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let database = crate::helpers::mongo::fresh_database();
    let mut nodes = Vec::new();
    for i in 0..n {
        let database = database.clone();
        let node = TestNode::cluster_with(data.clone(), url, &format!("{prefix}-{i}"), |c| {
            auto(c, cap, 0);
            if let Backend::Mongo = backend {
                c.mongodb_uri = Some(crate::helpers::mongo::shared().uri().into());
                c.mongodb_database = database;
            }
        })
        .await;
        nodes.push(node);
    }
    nodes
}

/// `n` users opening a chat each at once, spread over the nodes; their ids.
async fn storm(nodes: &[TestNode], from: usize, n: usize) -> Vec<String> {
    join_all((from..from + n).map(|i| {
        let node = &nodes[i % nodes.len()];
        async move {
            node.open_chat(&node.token(&format!("u{i}"), Role::User))
                .await
        }
    }))
    .await
}

/// Waits until a pass that started after now has ended somewhere in the cluster.
async fn a_pass_has_run(nodes: &[TestNode]) {
    let passes = || {
        nodes
            .iter()
            .map(|n| n.state.metrics.desk.passes.get())
            .sum::<u64>()
    };
    let start = passes();
    assert!(
        eventually(SETTLE, || async { passes() >= start + 2 }).await,
        "no assignment pass ran"
    );
}

/// Every chat's staff participants: at most one, and it is its assigned admin.
async fn one_admin_each(node: &TestNode, chats: &[String]) -> Vec<Chat> {
    let mut all = Vec::new();
    for id in chats {
        let chat = stored(node, id).await;
        let staff: Vec<&String> = chat
            .participants
            .iter()
            .filter(|p| p.starts_with('a'))
            .collect();
        assert_eq!(
            staff,
            chat.assigned_admin.iter().collect::<Vec<_>>(),
            "one staff participant, the assigned admin: {chat:?}"
        );
        all.push(chat);
    }
    all
}

/// Open chats assigned to `agent`.
fn count_of(chats: &[Chat], agent: &str) -> usize {
    chats
        .iter()
        .filter(|c| c.status == ChatStatus::Open && c.assigned_admin.as_deref() == Some(agent))
        .count()
}

/// The queue's order: `queuedAt`, then id.
fn queue_of(chats: &[Chat]) -> Vec<String> {
    let mut queued: Vec<&Chat> = chats.iter().filter(|c| c.queued_at.is_some()).collect();
    queued.sort_by(|a, b| (a.queued_at, &a.id).cmp(&(b.queued_at, &b.id)));
    queued.iter().map(|c| c.id.as_str().to_owned()).collect()
}

async fn a_storm_on_three_nodes_fills_both_agents_to_capacity_and_queues_the_rest_in_order(
    topology: Topology,
    store: Store,
) {
    // Arrange: capacity 3; a1 on the first node, a2 on the second.
    let cluster = three_nodes(topology, store, 3).await;
    let nodes = &cluster.nodes;
    let a1 = available_agent(&nodes[0], "a1").await;
    let _a2 = available_agent(&nodes[1], "a2").await;
    assert!(
        eventually(WAIT, || async {
            nodes[2].state.availability.available().await.ok() == Some(2)
        })
        .await
    );

    // Act: 24 users open a chat at once on the three nodes.
    let chats = storm(nodes, 0, 24).await;
    a_pass_has_run(nodes).await;

    // Assert: exactly 2 x 3 assignments, 3 each, one admin per chat, the rest queued.
    let all = one_admin_each(&nodes[2], &chats).await;
    assert_eq!((count_of(&all, "a1"), count_of(&all, "a2")), (3, 3));
    let queue = queue_of(&all);
    assert_eq!(queue.len(), 18);

    // Act: a1 closes one chat, on the third node.
    let closed = all
        .iter()
        .find(|c| c.assigned_admin.as_deref() == Some("a1"))
        .unwrap();
    patch(
        &nodes[2],
        "a1",
        closed.id.as_str(),
        json!({ "status": "closed" }),
    )
    .await;

    // Assert: the oldest waiting chat goes to a1, and only it.
    let taken = event_for(&a1, "chat:updated", &queue[0]).await;
    assert_eq!(taken["by"], "system");
    assert_eq!(taken["chat"]["assignedAdmin"], "a1");
    a_pass_has_run(nodes).await;
    let all = one_admin_each(&nodes[0], &chats).await;
    assert_eq!((count_of(&all, "a1"), count_of(&all, "a2")), (3, 3));
    assert_eq!(
        queue_of(&all),
        queue[1..].to_vec(),
        "the rest wait in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_on_three_nodes_single_redis() {
    a_storm_on_three_nodes_fills_both_agents_to_capacity_and_queues_the_rest_in_order(
        Topology::Single,
        Store::Embedded,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_on_three_nodes_redis_cluster() {
    a_storm_on_three_nodes_fills_both_agents_to_capacity_and_queues_the_rest_in_order(
        Topology::Cluster,
        Store::Embedded,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_on_three_nodes_sentinel_and_mongodb() {
    a_storm_on_three_nodes_fills_both_agents_to_capacity_and_queues_the_rest_in_order(
        Topology::Sentinel,
        Store::Mongo,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_going_away_mid_storm_gets_nothing_after_and_nobody_goes_over_capacity() {
    // Arrange: capacity 4; a1 and a2 available on two nodes.
    let cluster = three_nodes(Topology::Single, Store::Embedded, 4).await;
    let nodes = &cluster.nodes;
    let _a1 = available_agent(&nodes[0], "a1").await;
    let a2 = available_agent(&nodes[1], "a2").await;

    // Act: a storm of 20 chats, a2 saying `away` in the middle of it.
    let first = storm(nodes, 0, 3).await;
    let (rest, ()) = tokio::join!(storm(nodes, 3, 17), say(&a2, "away"));
    let chats: Vec<String> = first.into_iter().chain(rest).collect();
    a_pass_has_run(nodes).await;

    // Assert: a1 full, a2 at most full, every other chat queued, one admin each.
    let all = one_admin_each(&nodes[0], &chats).await;
    let (by_a1, by_a2) = (count_of(&all, "a1"), count_of(&all, "a2"));
    assert_eq!(by_a1, 4);
    assert!(by_a2 <= 4, "a2 has {by_a2}");
    assert_eq!(queue_of(&all).len(), 20 - by_a1 - by_a2);

    // Act: one more chat, with a1 full and a2 away.
    let late = storm(nodes, 20, 1).await;
    a_pass_has_run(nodes).await;

    // Assert: nobody takes it; a2 got nothing after saying away.
    let all = one_admin_each(&nodes[2], &chats).await;
    assert_eq!(count_of(&all, "a2"), by_a2);
    assert!(stored(&nodes[2], &late[0]).await.assigned_admin.is_none());

    // Act: a2 is back.
    say(&a2, "available").await;

    // Assert: a2 fills up to the capacity from the front of the queue.
    let queue = queue_of(&all);
    let wanted = 4 - by_a2;
    for chat in &queue[..wanted] {
        let taken = event_for(&a2, "chat:updated", chat).await;
        assert_eq!(taken["chat"]["assignedAdmin"], "a2");
    }
    a_pass_has_run(nodes).await;
    let mut everything = chats.clone();
    everything.extend(late.iter().cloned());
    let all = one_admin_each(&nodes[1], &everything).await;
    assert_eq!((count_of(&all, "a1"), count_of(&all, "a2")), (4, 4));
    let mut rest = queue[wanted..].to_vec();
    rest.extend(late);
    assert_eq!(
        queue_of(&all),
        rest,
        "the rest wait in order, the late chat last"
    );
}

/// Two auto-assigning nodes `gate-0` and `gate-1` of capacity `cap` on `redis`.
async fn two_nodes(
    redis: &crate::helpers::RedisServer,
    backend: Backend,
    cap: u32,
) -> Vec<TestNode> {
    auto_cluster(&redis.url(), backend, cap, 2, "gate").await
}

/// Waits until `node` has `n` assignment writes held by the test hook.
async fn writes_held(node: &TestNode, n: usize) {
    let hooks = &node.state.test_hooks;
    assert!(
        eventually(WAIT, || async { hooks.assignment_writes_waiting() == n }).await,
        "{n} assignment writes held on {}",
        node.state.node_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pass_stalled_past_its_lease_cannot_put_an_agent_over_capacity() {
    stalled_pass_overlaps_the_next(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_mongodb_a_pass_stalled_past_its_lease_cannot_put_an_agent_over_capacity() {
    stalled_pass_overlaps_the_next(Backend::Mongo).await;
}

/// A pass stalls before its write past its lease; the next pass reads the loads, then the
/// stalled write lands (SQLite: counted; MongoDB: refused by the next pass's fence), then the
/// next pass writes: nobody goes over the capacity.
async fn stalled_pass_overlaps_the_next(backend: Backend) {
    // Arrange: capacity 1, one agent, two nodes; every assignment write waits for the test.
    let redis = crate::helpers::RedisServer::start().await;
    let nodes = two_nodes(&redis, backend, 1).await;
    let (stalled, next) = (&nodes[0], &nodes[1]);
    let _a1 = available_agent(stalled, "a1").await;
    for node in &nodes {
        node.state.test_hooks.hold_assignment_writes(true);
    }

    // Act: a pass gives the first chat to a1 and stalls before its write...
    let first = stalled.open_chat(&stalled.token("u1", Role::User)).await;
    writes_held(stalled, 1).await;
    // ...past its lease (as 10 s without a renewal would end it): the next pass starts,
    // reads a1's load (0) and the queue, and stalls before its first write.
    crate::helpers::redis::cli(redis.port, &["DEL", "{sb}:desk:assign:pass"]);
    let second = next.open_chat(&next.token("u2", Role::User)).await;
    writes_held(next, 1).await;
    // The stalled write goes (and its pass ends), then the next pass goes on from what it
    // read.
    stalled.state.test_hooks.hold_assignment_writes(false);
    assert!(
        eventually(WAIT, || async {
            stalled.state.assigning.try_lock().is_ok()
        })
        .await
    );
    next.state.test_hooks.hold_assignment_writes(false);
    a_pass_has_run(&nodes).await;

    // Assert: a1 holds one chat, the capacity; the second waits in the queue.
    let all = one_admin_each(next, &[first, second.clone()]).await;
    assert_eq!(count_of(&all, "a1"), 1, "a1 over capacity: {all:#?}");
    assert_eq!(queue_of(&all), vec![second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_chat_reopened_with_nobody_assigned_goes_back_to_the_queue() {
    // Arrange: nobody available; a user's chat waits in the queue, and staff close it.
    let node = TestNode::start_with(|c| auto(c, 2, 0)).await;
    let user = node.socket("u1", Role::User).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;
    patch(&node, "a1", &chat, json!({ "status": "closed" })).await;
    let closed = stored(&node, &chat).await;
    assert!(
        closed.queued_at.is_none() && closed.assigned_admin.is_none(),
        "{closed:?}"
    );

    // Act: staff reopen it.
    patch(&node, "a1", &chat, json!({ "status": "open" })).await;

    // Assert: it waits in the queue again, and goes to the next agent who is available.
    let reopened = stored(&node, &chat).await;
    assert_eq!(reopened.status, ChatStatus::Open);
    assert!(
        reopened.queued_at.is_some(),
        "reopened into the queue: {reopened:?}"
    );
    let _a2 = node.socket("a2", Role::Admin).await;
    let taken = event_where(&user, "chat:updated", &chat, |e| {
        e["chat"]["assignedAdmin"] == "a2"
    })
    .await;
    assert_eq!(taken["by"], "system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_node_gives_the_assignment_gate_up() {
    // Arrange: two nodes, one agent; a pass holds the gate, stalled before its write.
    let redis = crate::helpers::RedisServer::start().await;
    let mut nodes = two_nodes(&redis, Backend::Embedded, 1).await;
    let _a1 = available_agent(&nodes[1], "a1").await;
    for node in &nodes {
        node.state.test_hooks.hold_assignment_writes(true);
    }
    let chat = nodes[0].open_chat(&nodes[0].token("u1", Role::User)).await;
    let held = || {
        nodes
            .iter()
            .map(|n| n.state.test_hooks.assignment_writes_waiting())
            .sum::<usize>()
    };
    assert!(eventually(WAIT, || async { held() == 1 }).await);
    let holder = || crate::helpers::redis::cli(redis.port, &["GET", "{sb}:desk:assign:pass"]);
    // Whichever node's wake or tick took it: that one drains.
    let drained = usize::from(holder().trim() == "gate-1");
    assert_eq!(holder().trim(), format!("gate-{drained}"));
    let survivor = 1 - drained;
    nodes[survivor]
        .state
        .test_hooks
        .hold_assignment_writes(false);

    // Act: the holder drains, its pass still stalled.
    nodes.remove(drained).stop().await;

    // Assert: the gate is free at once, not after its 10 s lease, and the survivor assigns.
    assert_ne!(
        holder().trim(),
        format!("gate-{drained}"),
        "gate still held"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            stored(&nodes[0], &chat).await.assigned_admin.as_deref() == Some("a1")
        })
        .await,
        "the survivor assigns without waiting for the lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_mongodb_a_patch_racing_a_pass_never_lets_the_pass_put_an_agent_over_capacity() {
    patch_racing_a_pass(Backend::Mongo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_racing_a_pass_never_lets_the_pass_put_an_agent_over_capacity() {
    patch_racing_a_pass(Backend::Embedded).await;
}

/// A pass has counted a1's load (0, capacity 1) and stalls before its write; meanwhile a staff
/// `PATCH` on the other node assigns a1 another chat. The `PATCH` must not land inside the
/// pass's count-then-write (MongoDB cannot count in the write: the pass would put a1 over the
/// capacity): it waits for the pass, which assigns a1 at 0; then the `PATCH` goes (a staff
/// `PATCH` may pass the capacity on purpose).
async fn patch_racing_a_pass(backend: Backend) {
    // Arrange: capacity 1, a1 available, a chat a9 holds; every assignment write waits.
    let redis = crate::helpers::RedisServer::start().await;
    let nodes = two_nodes(&redis, backend, 1).await;
    let a1 = available_agent(&nodes[0], "a1").await;
    let held_by_a9 = nodes[1].staff_chat("a9", "u-held").await;
    for node in &nodes {
        node.state.test_hooks.hold_assignment_writes(true);
    }
    // A pass gives a new chat to a1 (load 0) and stalls before its write.
    let queued = nodes[0].open_chat(&nodes[0].token("u1", Role::User)).await;
    let held = || {
        nodes
            .iter()
            .map(|n| n.state.test_hooks.assignment_writes_waiting())
            .sum::<usize>()
    };
    assert!(eventually(WAIT, || async { held() == 1 }).await);

    // Act: a PATCH assigns a1 the other chat, from the other node, while the pass stalls.
    let waited = || {
        nodes
            .iter()
            .map(|n| n.state.test_hooks.patches_waited_for_gate())
            .sum::<usize>()
    };
    let patching = patch(
        &nodes[1],
        "a9",
        &held_by_a9,
        json!({ "assignedAdmin": "a1" }),
    );
    tokio::pin!(patching);
    let landed_inside = tokio::select! {
        _ = &mut patching => true,
        waits = eventually(WAIT, || async { waited() > 0 }) => {
            assert!(waits, "the PATCH neither landed nor waited");
            false
        }
    };
    for node in &nodes {
        node.state.test_hooks.hold_assignment_writes(false);
    }
    if !landed_inside {
        patching.await;
    }

    // Assert: the PATCH did not land between the pass's count and its write, and a1 heard
    // the pass's assignment (made at load 0) before the PATCH's.
    assert!(
        !landed_inside,
        "the PATCH landed inside a pass's count-then-write: the pass put a1 over capacity"
    );
    let mut order = Vec::new();
    while order.len() < 2 {
        let e = a1.event("chat:updated").await;
        let id = e["chat"]["id"].as_str().unwrap_or_default().to_owned();
        if e["chat"]["assignedAdmin"] == "a1" && !order.contains(&id) {
            order.push(id);
        }
    }
    assert_eq!(
        order,
        [queued.clone(), held_by_a9.clone()],
        "assigned in that order"
    );
    let all = one_admin_each(&nodes[0], &[queued, held_by_a9.clone()]).await;
    assert_eq!(count_of(&all, "a1"), 2, "{all:#?}");
}
