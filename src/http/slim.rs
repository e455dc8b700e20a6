//! Slims Socket.IO handshake requests before socketioxide keeps them.
//!
//! socketioxide keeps every socket's handshake request parts (headers, URI, extensions) for the
//! socket's whole life. hyper parses header values and the URI as slices of its connection read
//! buffer, so each kept request pins that whole buffer (up to 16 KiB) per idle connection. This
//! layer rebuilds `/socket.io/` requests from deep copies of the URI and headers and carries over
//! only the one extension the WebSocket upgrade needs (hyper's `OnUpgrade`), so the buffer is
//! freed once the handshake is parsed. Measured in `loadtest/README.md`.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Uri};

/// `axum::middleware::map_request` function; other requests pass untouched.
pub async fn slim_handshake(req: Request) -> Request {
    if !req.uri().path().starts_with("/socket.io") {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    let mut slim = Request::new(body);
    *slim.method_mut() = parts.method;
    *slim.version_mut() = parts.version;
    // `Uri::from_str` copies; the parsed one shares hyper's buffer.
    *slim.uri_mut() = parts.uri.to_string().parse::<Uri>().unwrap_or(parts.uri);
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.append(name.clone(), copy);
        }
    }
    *slim.headers_mut() = headers;
    if let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
        slim.extensions_mut().insert(upgrade);
    }
    slim
}
