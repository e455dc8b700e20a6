//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! with the key given as `whsec_` + base64. Receivers check them with the official
//! `standardwebhooks` libraries (the tests do, with the PyPI one).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One endpoint secret, decoded. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// A `whsec_` + base64 secret of at least 24 bytes (the spec asks for 24 to 64).
    pub fn parse(secret: &str) -> Result<Self, String> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or("a webhook secret starts with whsec_")?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "a webhook secret is whsec_ followed by base64")?;
        if key.len() < 24 {
            return Err("a webhook secret holds at least 24 bytes".into());
        }
        Ok(Self(key))
    }

    /// The `v1,<base64>` signature of one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per current key, space-separated.
pub fn signature_header(keys: &[SigningKey], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|k| k.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference implementations.
    #[test]
    fn signs_as_the_specification_example() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
