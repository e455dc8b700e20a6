//! The handshake's `auth` object, read as the middleware reads it (`realtime/handshake.rs`):
//! the JSON a CONNECT packet carries, its `token` verified as given and again re-signed with the
//! node's secret (so the claims' rules are reached, not only the signature check), and its
//! `pid` and `offset` checked as a resume is. Never a panic; what is accepted keeps the rules
//! (PROTOCOL.md, Identity) and the resume's parts print back to what was sent.
#![no_main]

use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use switchboard::auth::{Verified, Verifier};
use switchboard::config::JwtAlgorithm;
use switchboard::realtime::handshake::Handshake;
use switchboard::recovery::parse_resume;

/// The secret the seed tokens are signed with (tests/js/lib/harness.js).
const SECRET: &[u8] = b"js-client-tests-secret-0123456789";

/// A fixed "now" (ms), so a run replays the same way whatever the day.
const NOW_MS: u64 = 1_765_000_000_000;

fn verifier() -> &'static Verifier {
    static V: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    V.get_or_init(|| Verifier::hmac(SECRET, JwtAlgorithm::HS256))
}

/// What an accepted token must name: PROTOCOL.md's rules for `id` and `name`.
fn check_identity(v: &Verified) {
    let u = &v.user;
    let n = u.id.chars().count();
    assert!((1..=64).contains(&n), "accepted id of {n} characters");
    assert!(!u.id.chars().any(char::is_control), "accepted id with a control character");
    assert!(u.name.chars().count() <= 100, "accepted a name over 100 characters");
    assert!(!u.name.chars().any(char::is_control), "accepted name with a control character");
}

/// `header.payload` signed with HS256 and the node's secret.
fn resign(token: &str) -> Option<String> {
    let mut parts = token.splitn(3, '.');
    let (head, payload) = (parts.next()?, parts.next()?);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).ok()?;
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Some(format!("{head}.{payload}.{sig}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(auth) = serde_json::from_slice::<Handshake>(data) else {
        return;
    };
    if let Ok(v) = verifier().verify_token(&auth.token) {
        check_identity(&v);
    }
    if let Some(Ok(v)) = resign(&auth.token).map(|t| verifier().verify_token(&t)) {
        check_identity(&v);
    }
    if let Some(Ok((pid, offset))) = auth.resume() {
        if let Ok((p, o)) = parse_resume(pid, offset, NOW_MS) {
            assert_eq!(p.as_str(), pid);
            // What was accepted prints back to a form that parses the same (leading zeros
            // aside, which the log never writes).
            if let Some(o) = o {
                let again = parse_resume(pid, Some(&o.to_string()), NOW_MS).expect("reparses");
                assert_eq!(again.1, Some(o));
                assert!(o.ms <= NOW_MS + 60_000, "an offset from the future was accepted");
            }
        }
    }
});
