//! Unit tests of the metrics: prefixes and labels, store operations, HTTP routes, build info.

use super::*;

/// The value of the series `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn every_series_carries_the_node_label_and_the_prefix() {
    let m = Metrics::new("n1");
    m.messages_saved.inc();
    let text = m.render();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("switchboard_"), "{line}");
        assert!(line.contains("node=\"n1\""), "{line}");
    }
    assert_eq!(
        sample(&text, "switchboard_messages_saved_total", &[("node", "n1")]),
        Some(1.0)
    );
}

#[test]
fn store_operations_outside_the_list_count_as_other() {
    let m = Metrics::new("n1");
    m.store("save_message").errors.inc();
    m.store("something_new").errors.inc();
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            "switchboard_store_errors_total",
            &[("operation", "save_message")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_store_errors_total",
            &[("operation", "other")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_store_errors_total",
            &[("operation", "chat")]
        ),
        Some(0.0)
    );
}

#[test]
fn http_requests_are_counted_by_template_and_status() {
    let m = Metrics::new("n1");
    m.http_route(Some("/api/chats/{chat_id}"))
        .record(200, Duration::from_millis(3));
    m.http_route(Some("/api/chats/{chat_id}"))
        .record(200, Duration::from_millis(3));
    m.http_route(Some("/api/a-route-added-later/{id}"))
        .record(418, Duration::from_millis(1));
    m.http_route(None).record(404, Duration::from_millis(1));
    let text = m.render();
    let count = |route: &str, status: &str| {
        sample(
            &text,
            "switchboard_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(count("/api/chats/{chat_id}", "200"), Some(2.0));
    assert_eq!(
        count("/api/a-route-added-later/{id}", "other"),
        Some(1.0),
        "a template no list names is counted under its own name"
    );
    assert_eq!(count("unmatched", "404"), Some(1.0));
    assert_eq!(
        count("/api/chats", "200"),
        None,
        "a pair never seen exports no series"
    );
    let latency = sample(
        &text,
        "switchboard_http_request_duration_seconds_count",
        &[("route", "/api/chats/{chat_id}")],
    );
    assert_eq!(latency, Some(2.0));
}

#[test]
fn build_info_names_version_and_commit() {
    let text = Metrics::new("n1").render();
    let line = text
        .lines()
        .find(|l| l.starts_with("switchboard_build_info{"))
        .expect("build_info");
    assert!(
        line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("commit=\""), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
}
