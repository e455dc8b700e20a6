//! Socket.IO packets as the common parser reads them from a socket: a text packet, then the
//! binary attachments it announces (the input's bytes say how they are framed). Never a panic,
//! whatever the order of text and binary frames.
#![no_main]

use bytes::Bytes;
use engineioxide_core::Str;
use libfuzzer_sys::fuzz_target;
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_parser_common::CommonParser;

fuzz_target!(|data: &[u8]| {
    let config = ParseConfig {
        max_incoming_binaries: 16,
        max_incoming_binary_buf_size: 64 * 1024,
        ..ParseConfig::default()
    };
    let state = ParserState::default();
    // Frames separated by 0xff; a frame starting with 0x00 is binary, anything else text.
    for frame in data.split(|b| *b == 0xff) {
        match frame.split_first() {
            Some((0, bin)) => {
                let _ = CommonParser.decode_bin(&config, &state, Bytes::copy_from_slice(bin));
            }
            _ => {
                if let Ok(text) = std::str::from_utf8(frame) {
                    let _ = CommonParser.decode_str(&config, &state, Str::copy_from_slice(text));
                }
            }
        }
    }
});
