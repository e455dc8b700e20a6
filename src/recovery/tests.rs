//! Unit tests of the recovery data: offsets, pids, packets, rooms.

use super::*;

#[test]
fn offsets_round_trip_and_refuse_other_shapes() {
    let o = Offset {
        ms: 1733142000123,
        seq: 7,
    };
    assert_eq!(Offset::parse(&o.to_string()), Some(o));
    for bad in [
        "",
        "-",
        "1-",
        "-1",
        "1-2-3",
        "a-1",
        "1-+2",
        " 1-2",
        "123456789012345678901-1",
    ] {
        assert_eq!(Offset::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn pids_are_22_base64url_characters() {
    let pid = Pid::generate();
    assert_eq!(Pid::parse(pid.as_str()), Some(pid.clone()));
    assert_eq!(Pid::parse("short"), None);
    assert_eq!(Pid::parse(&format!("{}\"", &pid.as_str()[..21])), None);
}

#[test]
fn the_offset_is_read_from_the_end_of_a_packet() {
    let text = r#"42["message:new",{"chatId":"c","x":"a\"]"},"17-3"]"#;
    assert_eq!(offset_of_packet(text), Some(Offset { ms: 17, seq: 3 }));
    assert_eq!(
        offset_of_packet(r#"42["user:typing",{"chatId":"c"}]"#),
        None
    );
    assert_eq!(
        offset_of_packet(r#"42["x","17-3"]"#),
        Some(Offset { ms: 17, seq: 3 })
    );
    assert_eq!(offset_of_packet(r#"42["17-3"]"#), None);
}

#[test]
fn an_event_reaches_its_rooms_except_the_excluded_ones() {
    let e = LoggedEvent {
        offset: Offset { ms: 1, seq: 0 },
        rooms: vec!["admins".into(), "user:a".into()],
        except: vec!["user:b".into()],
        event: "user:status".into(),
        payload: "{}".into(),
    };
    assert!(e.reaches(&["user:a".into()]));
    assert!(e.reaches(&["admins".into(), "user:c".into()]));
    assert!(!e.reaches(&["user:c".into(), "users".into()]));
    assert!(!e.reaches(&["admins".into(), "user:b".into()]));
}
