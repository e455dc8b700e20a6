//! Issue 25, items 2 (the application part), 3 and 7, tried as an attacker meets them, over real
//! sockets to real nodes: handshakes a client hangs up on, history pages and `chat:sync`
//! answers of big messages, resumes past the per-user budget, the recovery log and the tail
//! cache under a burst of big messages, and one user's messages across several sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::domain::Role;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Sio, TestNode, WAIT, eventually};

/// How long a test waits to be sure an event does not come.
const QUIET: Duration = Duration::from_millis(400);

/// A counter of the node's Prometheus text, summed over the lines that start with `prefix`.
fn metric(node: &TestNode, prefix: &str) -> f64 {
    node.state
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A chat staff `admin` opened with `user`: both are participants.
async fn staff_chat(node: &TestNode, admin: &str, user: &str) -> String {
    let token = node.token(admin, Role::Admin);
    let (status, chat) = node
        .call(
            Method::POST,
            "/api/chats",
            Some(&token),
            Some(json!({ "participantId": user })),
        )
        .await;
    assert_eq!(status, 201, "{chat}");
    chat["id"].as_str().unwrap().to_owned()
}

/// Opens an Engine.IO session over WebSocket, sends `CONNECT` with `token` and hangs up at
/// once (a close frame right behind it, then the TCP connection dropped), reading nothing.
async fn hang_up_over_websocket(port: u16, token: &str) {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let open = tokio::time::timeout(WAIT, ws.next()).await;
    assert!(
        matches!(&open, Ok(Some(Ok(Message::Text(t)))) if t.starts_with('0')),
        "open packet: {open:?}"
    );
    let connect = format!("40{}", json!({ "token": token }));
    ws.feed(Message::text(connect)).await.expect("feed");
    ws.feed(Message::Close(None)).await.expect("feed close");
    ws.flush().await.ok();
    drop(ws);
}

/// Opens an Engine.IO session over long-polling, then POSTs `CONNECT` with `token` and the
/// Engine.IO close packet in one body: the session ends before the answer could be polled.
async fn hang_up_over_polling(node: &TestNode, token: &str) {
    let base = node.url("/socket.io/?EIO=4&transport=polling");
    let open = node.http.get(&base).send().await.expect("open").text().await.unwrap();
    let body: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    let sid = body["sid"].as_str().unwrap();
    let payload = format!("40{}\u{1e}1", json!({ "token": token }));
    let res = node
        .http
        .post(format!("{base}&sid={sid}"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(payload)
        .send()
        .await
        .expect("post");
    assert!(res.status().is_success(), "POST: {}", res.status());
}

/// Item 3: clients that hang up during the handshake, more than `MAX_SOCKETS_PER_USER` times,
/// leave the user's socket count as it was: the user is not present (a staff message to them
/// stays `sent`), and can still open every socket the limit allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshakes_hung_up_on_leave_no_socket_counted() {
    const MAX: u32 = 3;
    let node = TestNode::start_with(|c| c.max_sockets_per_user = MAX).await;
    let chat = staff_chat(&node, "hang-admin", "hang-user").await;
    let token = node.token("hang-user", Role::User);
    let accepted = metric(&node, "switchboard_connections_total{outcome=\"accepted\"");

    let hang_ups = 2 * (MAX as usize + 2);
    for i in 0..hang_ups {
        if i % 2 == 0 {
            hang_up_over_websocket(node.port, &token).await;
        } else {
            hang_up_over_polling(&node, &token).await;
        }
    }
    // Every one of them passed the middleware (the race is in what happens after), and every
    // socket that did get in has been taken out again.
    let settled = eventually(Duration::from_secs(10), || async {
        metric(&node, "switchboard_connections_total{outcome=\"accepted\"")
            >= accepted + hang_ups as f64
            && node.state.metrics.sockets_connected.get() == 0
    })
    .await;
    let staff = node.socket("hang-admin", Role::Admin).await;
    let ack = staff
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "are you there?" } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["status"], "sent", "the user is not here: {ack}");
    assert!(
        staff.try_event("message:delivered", QUIET).await.is_none(),
        "no delivery to a user who hung up"
    );
    assert!(
        !node.state.user_limits.has_socket_here("hang-user"),
        "the user's socket count is left over from {hang_ups} hang-ups (settled: {settled}, \
         gauge: {})",
        node.state.metrics.sockets_connected.get()
    );

    let mut sockets = Vec::new();
    for _ in 0..MAX {
        sockets.push(
            Sio::connect(node.port, Some(&token))
                .await
                .expect("the user connects up to MAX_SOCKETS_PER_USER"),
        );
    }
}
