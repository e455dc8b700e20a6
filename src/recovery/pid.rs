//! The private session id a socket.io-client keeps and sends back to resume its session.

use base64::Engine;

/// A private session id: 128 random bits, base64url (22 characters). Secret to its client.
/// Kept inline (every socket's session holds one): no heap allocation per socket.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pid([u8; PID_LEN]);

const PID_LEN: usize = 22;

impl Pid {
    /// A fresh, unguessable id.
    pub fn generate() -> Pid {
        let mut id = [0u8; PID_LEN];
        let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(rand::random::<[u8; 16]>(), &mut id)
            .expect("16 bytes are 22 base64 characters");
        debug_assert_eq!(written, PID_LEN);
        Pid(id)
    }

    /// Accepts only the shape [`Pid::generate`] makes.
    pub fn parse(s: &str) -> Option<Pid> {
        let id: [u8; PID_LEN] = s.as_bytes().try_into().ok()?;
        id.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Pid(id))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (`generate` and `parse`).
        std::str::from_utf8(&self.0).expect("a pid is ASCII")
    }
}

impl std::fmt::Debug for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret to its client: never in logs.
        f.write_str("Pid(..)")
    }
}
