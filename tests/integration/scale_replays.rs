//! Issue 28's retry loop: at 30,000 clients the survivors closed 14,837 resumed transports
//! because their replay's log read passed its deadline, so each returning client was told
//! `recovered` two or three times and never given its replay. The reads were queued on one lock
//! held across Redis round trips (a log read, then the cut), one reader after another, so on a
//! slow Redis a storm's waits added up. Here one survivor reaches Redis through a proxy that
//! answers every command late, and resumes arrive one after another, each with an older offset
//! than the last (so each needs part of the log the node has not read yet): every one of them
//! must be replayed once, at its first attempt, and hear live events afterwards.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::Role;

use crate::helpers::slow_redis::DelayProxy;
use crate::helpers::{Cluster, Sio, Topology, connect_users};

fn seq(event: &Value) -> u64 {
    event["message"]["seq"]
        .as_u64()
        .expect("a message with a seq")
}

/// One returning client: its token, chat, session, the offset it resumes from, and the `seq`
/// of the message it missed.
struct Returning {
    token: String,
    chat: String,
    pid: String,
    offset: String,
    missed: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_resumes_on_a_slow_redis_is_replayed_at_the_first_attempt() {
    const CLIENTS: usize = 36;
    // Every command the survivor sends waits this long; resumes arrive a little slower than
    // one per round trip, as a storm's do when Redis is the bottleneck.
    const LATENCY: Duration = Duration::from_millis(250);
    const SPACING: Duration = Duration::from_millis(300);
    let cluster = Cluster::start(0, Topology::Single).await;
    let proxy = DelayProxy::start(cluster.port()).await;
    // The admin sends three messages per client: a REST and socket budget for that.
    let survivor = cluster
        .join_via(&proxy.url, "survivor", |c| c.rate_limit_per_sec = 1000)
        .await;
    let mut doomed = cluster.process("doomed").await;
    let admin = survivor.socket("a1", Role::Admin).await;
    let send =
        |chat: &str, content: &str| json!({ "chatId": chat, "message": { "content": content } });

    // Each client on the doomed node gets one message, in turn: client i's offset is older
    // than client i + 1's.
    let mut clients = Vec::new();
    let mut held = Vec::new();
    for (token, sock) in connect_users(&survivor, doomed.port, "storm", CLIENTS).await {
        let chat = survivor.open_chat(&token).await;
        assert_eq!(
            admin.ack("message:send", send(&chat, "before")).await["ok"],
            true
        );
        assert_eq!(seq(&sock.event("message:new").await), 1);
        clients.push(Returning {
            pid: sock.pid.clone().expect("a pid"),
            offset: sock.last_offset().expect("message:new carries its offset"),
            token,
            chat,
            missed: 0,
        });
        held.push(sock);
    }
    doomed.kill();
    drop(held);
    for c in &mut clients {
        let gap = admin.ack("message:send", send(&c.chat, "gap")).await;
        c.missed = gap["message"]["seq"].as_u64().expect("saved");
    }

    // The newest offset first: each resume needs an older piece of the log than the last.
    proxy.set_latency(LATENCY);
    let storm: Vec<_> = clients
        .iter()
        .rev()
        .enumerate()
        .map(|(k, c)| {
            let auth = json!({ "token": c.token, "pid": c.pid, "offset": c.offset });
            let port = survivor.port;
            tokio::spawn(async move {
                tokio::time::sleep(SPACING * k as u32).await;
                Sio::connect_with(port, Some(auth)).await
            })
        })
        .collect();
    let mut back = Vec::new();
    for (call, c) in storm.into_iter().zip(clients.iter().rev()) {
        let sock = call.await.expect("joins").expect("reconnects");
        assert_eq!(sock.pid.as_deref(), Some(c.pid.as_str()), "recovered");
        back.push(sock);
    }
    back.reverse();

    // Each one's replay arrives on the connection it was promised on (a closed transport is a
    // trip round the retry loop: told `recovered`, given nothing).
    let mut failures = Vec::new();
    for (i, (sock, c)) in back.iter().zip(&clients).enumerate() {
        let within = Duration::from_secs(15);
        let replay = tokio::select! {
            e = sock.try_event("message:new", within) => e,
            // Closed: what arrived before the close is queued.
            _ = sock.closed(within) => sock.try_event("message:new", Duration::ZERO).await,
        };
        match replay {
            Some(e) if seq(&e) == c.missed => {}
            Some(e) => failures.push(format!("client {i}: replayed seq {}", seq(&e))),
            None if sock.closed(Duration::ZERO).await => failures.push(format!(
                "client {i}: told recovered, then its transport was closed without the replay"
            )),
            None => failures.push(format!("client {i}: recovered and deaf")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} resumes not replayed at the first attempt: {failures:#?}",
        failures.len()
    );

    // Live events afterwards, once, after the replay.
    proxy.set_latency(Duration::ZERO);
    for (sock, c) in back.iter().zip(&clients) {
        let live = admin.ack("message:send", send(&c.chat, "after")).await;
        let live_seq = live["message"]["seq"].as_u64().expect("saved");
        assert_eq!(seq(&sock.event("message:new").await), live_seq);
        assert!(sock.drain("message:new").is_empty(), "each message once");
    }
}
