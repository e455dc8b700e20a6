//! A node over real sockets: handshake, messages, typing, reads, reports, presence, REST,
//! authorization, bad input and restarts.

use serde_json::json;
use switchboard::domain::Role;

use crate::helpers::{ConnectError, Sio, TestNode};

#[tokio::test]
async fn message_send_is_saved_then_delivered_to_participants_and_staff() {
    let node = TestNode::start().await;
    let user = node.socket("u1", Role::User).await;
    let admin = node.socket("a1", Role::Admin).await;
    let chat = node.open_chat(&node.token("u1", Role::User)).await;

    let ack = user
        .ack(
            "message:send",
            json!({ "chatId": chat, "message": { "content": "  hello  " } }),
        )
        .await;

    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["content"], "hello");
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["senderId"], "u1");
    let seen_by_admin = admin.event("message:new").await;
    assert_eq!(seen_by_admin["message"]["id"], ack["message"]["id"]);
    let seen_by_sender = user.event("message:new").await;
    assert_eq!(seen_by_sender["chatId"], chat.as_str());
}

#[tokio::test]
async fn missing_or_bad_token_is_refused_at_handshake() {
    let node = TestNode::start().await;
    for auth in [
        None,
        Some(json!({ "token": "nope" })),
        Some(json!({ "token": 42 })),
    ] {
        match Sio::connect_with(node.port, auth.clone()).await {
            Err(ConnectError::Refused(m)) => {
                assert!(m.starts_with("UNAUTHORIZED"), "{auth:?}: {m}")
            }
            Ok(_) => panic!("{auth:?} connected"),
            Err(e) => panic!("{auth:?}: {e:?}"),
        }
    }
}
