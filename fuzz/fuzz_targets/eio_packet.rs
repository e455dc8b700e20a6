//! One Engine.IO packet, as a WebSocket text frame or one packet of a polling body carries it:
//! parsing never panics, and what parses serializes back to a packet that parses the same.
#![no_main]

use engineioxide_core::{Packet, ProtocolVersion, Str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for protocol in [ProtocolVersion::V4, ProtocolVersion::V3] {
        let Ok(packet) = Packet::parse(protocol, Str::copy_from_slice(text)) else {
            continue;
        };
        // `Open` is only ever sent by the server; everything else round-trips.
        if matches!(packet, Packet::Open(_)) {
            continue;
        }
        let again = String::from(packet.clone());
        let reparsed = Packet::parse(protocol, again.clone())
            .unwrap_or_else(|e| panic!("{again:?} does not parse back: {e:?}"));
        assert_eq!(String::from(reparsed), again);
    }
});
