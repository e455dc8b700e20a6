//! Just enough HTTP/1.1 to open chats over the REST API: one request per connection.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sio::Target;

/// `POST path` with a JSON body and a Bearer token; returns the status and the JSON body.
pub async fn post_json(
    target: &Target,
    path: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, Value), String> {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.host,
        body.len()
    );
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    let json = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk is all these small bodies ever take.
        rest.split_once("\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
            .rsplit_once("\r\n0\r\n")
            .map(|(b, _)| b)
            .unwrap_or("")
    } else {
        rest
    };
    Ok((
        status,
        serde_json::from_str(json.trim()).unwrap_or(Value::Null),
    ))
}

/// Opens a chat: a user opens their own (`participant` None), staff open one with `participant`.
pub async fn open_chat(
    target: &Target,
    token: &str,
    participant: Option<&str>,
) -> Result<String, String> {
    let body = match participant {
        Some(p) => serde_json::json!({ "participantId": p }),
        None => serde_json::json!({}),
    };
    let (status, json) = post_json(target, "/api/chats", token, &body).await?;
    match json["id"].as_str() {
        Some(id) if status < 300 => Ok(id.to_owned()),
        _ => Err(format!("POST /api/chats: {status} {json}")),
    }
}
