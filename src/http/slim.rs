//! Slims Socket.IO handshake requests before socketioxide keeps them.
//!
//! socketioxide keeps every socket's handshake request parts (headers, URI, extensions) for the
//! socket's whole life. hyper parses header values and the URI as slices of its connection read
//! buffer, so each kept request pins that whole buffer (up to 16 KiB) per idle connection. This
//! layer rebuilds `/socket.io/` requests from deep copies of the URI and headers and carries over
//! only the one extension the WebSocket upgrade needs (hyper's `OnUpgrade`), so the buffer is
//! freed once the handshake is parsed.
//!
//! A request that opens a session (no `sid` in its query) keeps only the header the Engine.IO
//! layer reads: Switchboard authenticates with the CONNECT packet's `auth` object and never looks
//! at a socket's headers, so the browser's cookies, user agent and the like (about 0.6 KB) are not
//! kept for the socket's life. Requests within a session pass every header on. Measured in
//! `loadtest/README.md`.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

/// The headers a session-opening request keeps: what the Engine.IO layer reads (the WebSocket
/// accept key; hyper has already checked the upgrade headers by then).
const SESSION_HEADERS: [HeaderName; 1] = [header::SEC_WEBSOCKET_KEY];

/// Whether a `/socket.io/` request opens a new Engine.IO session: it names no `sid` (the
/// handshake `GET`, a WebSocket upgrade that starts its own session).
pub fn opens_session(uri: &Uri) -> bool {
    !uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}

/// `axum::middleware::map_request` function; other requests pass untouched.
pub async fn slim_handshake(req: Request) -> Request {
    if !req.uri().path().starts_with("/socket.io") {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    let opens_session = opens_session(&parts.uri);
    let mut slim = Request::new(body);
    *slim.method_mut() = parts.method;
    *slim.version_mut() = parts.version;
    // `Uri::from_str` copies; the parsed one shares hyper's buffer.
    *slim.uri_mut() = parts.uri.to_string().parse::<Uri>().unwrap_or(parts.uri);
    let kept = |name: &HeaderName| !opens_session || SESSION_HEADERS.contains(name);
    // Sized to what is kept: a default map reserves room for dozens of headers.
    let mut headers = HeaderMap::with_capacity(parts.headers.keys().filter(|n| kept(n)).count());
    for (name, value) in &parts.headers {
        if !kept(name) {
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .header(header::COOKIE, "session=secret")
            .header(header::USER_AGENT, "test")
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_opening_request_keeps_only_the_upgrade_headers() {
        let slim = slim_handshake(request("/socket.io/?EIO=4&transport=websocket")).await;
        let names: Vec<_> = slim.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["sec-websocket-key"]);
        assert_eq!(slim.uri().query(), Some("EIO=4&transport=websocket"));
    }

    #[tokio::test]
    async fn requests_within_a_session_and_other_routes_keep_every_header() {
        let slim = slim_handshake(request("/socket.io/?EIO=4&transport=polling&sid=abc")).await;
        assert_eq!(slim.headers().len(), 4);
        let other = slim_handshake(request("/api/chats")).await;
        assert_eq!(other.headers().len(), 4);
    }
}
