//! The development console's token minting (security review #25, finding 1): a token is minted
//! over HTTP only with the console code the node printed at start-up, whatever address the
//! request comes from; in production the console's routes do not exist and no body is read.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::config::Environment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestNode;

async fn mint(node: &TestNode, body: Value) -> (u16, Value) {
    let res = node
        .http
        .post(node.url("/console/token"))
        .header("origin", format!("http://127.0.0.1:{}", node.port))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_loopback_request_without_the_console_code_gets_no_token() {
    // Arrange: a development node; the code is what its log printed (kept in DATA_DIR).
    let node = TestNode::start().await;
    let code = std::fs::read_to_string(node.data.path().join("console-code")).unwrap();

    // Act: what any local account (or a same-host proxy) can send, then the person at the console.
    let (without, refusal) = mint(&node, json!({ "name": "Mallory", "role": "admin" })).await;
    let (wrong, _) = mint(
        &node,
        json!({ "name": "Mallory", "role": "admin", "code": "AAAA-BBBB-CCCC" }),
    )
    .await;
    let (with, minted) = mint(
        &node,
        json!({ "name": "Alice", "role": "user", "code": code.trim() }),
    )
    .await;

    // Assert
    assert_eq!(without, 403, "{refusal}");
    assert_eq!(refusal["error"]["code"], "FORBIDDEN");
    assert_eq!(wrong, 403);
    assert_eq!(with, 200, "{minted}");
    assert_eq!(minted["user"]["id"], "alice");
    node.stop().await;
}

#[tokio::test]
async fn in_production_the_console_routes_do_not_exist_and_no_body_is_read() {
    // Arrange
    let node = TestNode::start_with(|c| c.environment = Environment::Production).await;
    assert!(
        !node.data.path().join("console-code").exists(),
        "no code in production"
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();

    // Act: a body announced and never sent.
    stream
        .write_all(
            b"POST /console/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;

    // Assert: answered at once, without waiting for the body.
    assert!(read.is_ok(), "no answer while the body was pending");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    for route in ["/", "/console/console.js"] {
        let res = node.http.get(node.url(route)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 404, "{route}");
    }
    node.stop().await;
}
