//! HS256 tokens with the claims of PROTOCOL.md (`id`, `role`, `name`, `iat`, `exp`), minted from
//! `JWT_SECRET` the way a real token issuer would.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Mints a token valid for `ttl_secs`.
pub fn mint(secret: &str, id: &str, role: &str, ttl_secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "id": id, "role": role, "name": id, "iat": now, "exp": now + ttl_secs });
    let body = B64.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}
