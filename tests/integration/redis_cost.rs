//! What cluster mode costs Redis, measured: commands and bytes per chat message, per socket
//! connected and disconnected, and per node heartbeat, from `INFO commandstats` and `INFO
//! stats` deltas around each phase of a small bounded run (two nodes, one single server).
//! Ignored by default (it prints figures, it asserts little):
//!
//! ```sh
//! cargo test --test integration redis_cost -- --ignored --nocapture
//! ```
//!
//! The figures are in `docs/cluster.md` (Redis cost model).

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard::domain::Role;

use crate::helpers::cluster::{LONG, active_users};
use crate::helpers::redis::info;
use crate::helpers::send;
use crate::helpers::{Cluster, Topology, eventually, heartbeats_pass};

/// Commands (`cmdstat_NAME:calls=N`) and network bytes of the server so far.
#[derive(Default, Clone)]
struct Usage {
    calls: BTreeMap<String, u64>,
    bytes_in: u64,
    bytes_out: u64,
}

fn usage(port: u16) -> Usage {
    let mut u = Usage::default();
    for line in info(port, "commandstats").lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let (name, stats) = rest.split_once(':').unwrap_or_default();
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        u.calls.insert(name.to_owned(), calls);
    }
    for line in info(port, "stats").lines() {
        if let Some(n) = line.strip_prefix("total_net_input_bytes:") {
            u.bytes_in = n.trim().parse().unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("total_net_output_bytes:") {
            u.bytes_out = n.trim().parse().unwrap_or(0);
        }
    }
    u
}

/// Prints what happened between `before` and `after`, per `per` operations.
fn report(what: &str, before: &Usage, after: &Usage, per: f64) {
    let mut line = format!("{what}:");
    // The measurement's own INFO calls are left out.
    for (name, calls) in &after.calls {
        let delta = calls - before.calls.get(name).copied().unwrap_or(0);
        if delta > 0 && name != "info" {
            line.push_str(&format!(" {name}={:.2}", delta as f64 / per));
        }
    }
    line.push_str(&format!(
        " | bytes in {:.0}, out {:.0}",
        (after.bytes_in - before.bytes_in) as f64 / per,
        (after.bytes_out - before.bytes_out) as f64 / per
    ));
    eprintln!("{line}");
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn redis_cost_per_operation() {
    let cluster = Cluster::start(2, Topology::Single).await;
    let [a, b] = cluster.nodes();
    let admin = b.socket("a1", Role::Admin).await;
    let sender = a.socket("u1", Role::User).await;
    let chat = a.open_chat(&a.token("u1", Role::User)).await;
    assert!(eventually(LONG, || async { active_users(a, "").await["count"] == 2 }).await);
    let port = cluster.port();

    // Heartbeats: two idle nodes for a while (at least BEATS heartbeats each), counted.
    const BEATS: u64 = 5;
    let beats = || a.state.metrics.presence_heartbeats() + b.state.metrics.presence_heartbeats();
    let (before, beats_before) = (usage(port), beats());
    let (a_beat, b_beat) = tokio::join!(heartbeats_pass(a, BEATS), heartbeats_pass(b, BEATS));
    assert!(a_beat && b_beat, "both nodes kept beating");
    let (after, beats_after) = (usage(port), beats());
    report(
        "per node per heartbeat interval (idle, incl. readiness probes)",
        &before,
        &after,
        (beats_after - beats_before) as f64,
    );

    // Chat messages: one sender, staff on the other node.
    const MESSAGES: usize = 100;
    let before = usage(port);
    for i in 0..MESSAGES {
        send(
            &sender,
            &chat,
            &format!("message number {i} of the cost run"),
        )
        .await;
        // Paced under the rate limit.
        tokio::time::sleep(Duration::from_millis(55)).await;
    }
    for _ in 0..MESSAGES {
        admin
            .try_event("message:new", LONG)
            .await
            .expect("delivered across nodes");
    }
    let after = usage(port);
    report(
        "per chat message (incl. background during the run)",
        &before,
        &after,
        MESSAGES as f64,
    );

    // Connections and disconnections (each a first and last socket of its user).
    const SOCKETS: usize = 50;
    let before = usage(port);
    let mut sockets = Vec::new();
    for i in 0..SOCKETS {
        sockets.push(a.socket(&format!("c{i}"), Role::User).await);
    }
    assert!(
        eventually(LONG, || async {
            active_users(a, "").await["count"] == 2 + SOCKETS as u64
        })
        .await
    );
    let mid = usage(port);
    for s in &sockets {
        s.close();
    }
    assert!(eventually(LONG, || async { active_users(a, "").await["count"] == 2 }).await);
    let after = usage(port);
    report(
        "per connection (user online, announced)",
        &before,
        &mid,
        SOCKETS as f64,
    );
    report(
        "per disconnection (user offline, announced)",
        &mid,
        &after,
        SOCKETS as f64,
    );
}
