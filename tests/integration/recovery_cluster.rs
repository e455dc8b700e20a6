//! Connection state recovery across a cluster: a client whose node dies without warning
//! (SIGKILL) resumes its session on another node, with every event it missed, once and in
//! order, as socket.io-client would ask for it (`{ token, pid, offset }` in the handshake).

use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::{Cluster, Sio, Topology};

fn seq(event: &Value) -> u64 {
    event["message"]["seq"]
        .as_u64()
        .expect("a message with a seq")
}

#[tokio::test]
async fn a_client_of_a_killed_node_resumes_on_another_node_with_every_missed_event() {
    let cluster = Cluster::build(Topology::Single)
        .named(&["survivor"])
        .start()
        .await;
    let survivor = &cluster[0];
    let mut doomed = cluster.process("doomed").await;
    let alice = survivor.token("alice", Role::User);
    let chat = survivor.open_chat(&alice).await;
    let admin = survivor.socket("a1", Role::Admin).await;
    let send = |content: &str| json!({ "chatId": chat, "message": { "content": content } });

    let sock = Sio::connect(doomed.port, Some(&alice))
        .await
        .expect("connects");
    let pid = sock.pid.clone().expect("the CONNECT answer carries a pid");
    assert_eq!(admin.ack("message:send", send("before")).await["ok"], true);
    assert_eq!(seq(&sock.event("message:new").await), 1);
    let offset = sock.last_offset().expect("message:new carries its offset");

    doomed.kill();
    let mut missed = Vec::new();
    for i in 0..5 {
        let ack = admin.ack("message:send", send(&format!("gap {i}"))).await;
        missed.push(ack["message"]["seq"].as_u64().unwrap());
    }

    // Another user cannot take the session over.
    let mallory = survivor.token("mallory", Role::User);
    let thief = Sio::connect_with(
        survivor.port,
        Some(json!({ "token": mallory, "pid": pid, "offset": offset })),
    )
    .await
    .expect("connects as a new session");
    assert_ne!(
        thief.pid.as_deref(),
        Some(pid.as_str()),
        "another user's pid: not recovered"
    );
    thief.ack("joinUserRoom", json!("mallory")).await;
    assert!(
        thief.drain("message:new").is_empty(),
        "none of alice's events"
    );

    let back = Sio::connect_with(
        survivor.port,
        Some(json!({ "token": alice, "pid": pid, "offset": offset })),
    )
    .await
    .expect("reconnects");
    assert_eq!(
        back.pid.as_deref(),
        Some(pid.as_str()),
        "recovered: the same pid"
    );
    // Its first event is handled after the replay is written.
    back.ack("joinUserRoom", json!("alice")).await;
    let replayed: Vec<u64> = back.drain("message:new").iter().map(seq).collect();
    assert_eq!(replayed, missed, "every missed message once, in order");

    let live = admin.ack("message:send", send("after")).await;
    assert_eq!(
        seq(&back.event("message:new").await),
        live["message"]["seq"].as_u64().unwrap()
    );
}
