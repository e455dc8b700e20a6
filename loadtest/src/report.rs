//! Results on disk: each run's `<mode>-<label>.json` and `.md`, and `compare`, which puts
//! Switchboard and the baseline side by side with ratios and charts (`summary.md`, `*.svg`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::chart::{Chart, Series};

/// Writes one run's JSON and Markdown, and echoes the table.
pub fn save(out: &Path, mode: &str, label: &str, result: &Value, md: &str) {
    let _ = std::fs::create_dir_all(out);
    let base = out.join(format!("{mode}-{label}"));
    let mut result = result.clone();
    result["machine"] = machine();
    let written = std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&result).unwrap_or_default(),
    )
    .and_then(|_| {
        std::fs::write(
            base.with_extension("md"),
            format!("### {mode}: {label}\n\n{md}"),
        )
    });
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", base.display());
    }
    println!("{md}");
}

/// CPU model, cores and kernel: where a figure came from.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    serde_json::json!({ "cpu": model, "cores": cores, "kernel": kernel, "memory": mem })
}

#[derive(Args)]
pub struct CompareArgs {
    #[arg(long, default_value = "loadtest/results")]
    out: PathBuf,
    /// The system under test.
    #[arg(long, default_value = "switchboard")]
    subject: String,
    /// What it is compared with.
    #[arg(long, default_value = "baseline")]
    baseline: String,
    /// The summary's file name without `.md`; a name other than `summary` also suffixes the
    /// charts (`summary-2nodes` writes `fanout-p99-2nodes.svg`, ...).
    #[arg(long, default_value = "summary")]
    name: String,
}

fn load(out: &Path, mode: &str, label: &str) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(out.join(format!("{mode}-{label}.json"))).ok()?)
        .ok()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

fn num(v: &Value) -> String {
    if v.is_null() {
        "n/a".into()
    } else {
        v.to_string()
    }
}

fn series(label: &str, run: &Value, x: &str, y: &[&str]) -> Series {
    let points = run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let yv = y.iter().try_fold(s, |v, k| v.get(k))?.as_f64()?;
            Some((s[x].as_f64()?, yv))
        })
        .collect();
    Series {
        name: label.to_owned(),
        points,
    }
}

/// Writes `summary.md` and the charts from whatever runs are saved.
pub fn compare(a: CompareArgs) -> bool {
    let (sub, base) = (a.subject.as_str(), a.baseline.as_str());
    let mut md = String::new();
    let mut figures = String::from("| figure | target | ");
    let _ = writeln!(
        figures,
        "{sub} | {base} | ratio |\n|---|---|---:|---:|---:|"
    );
    let both = |mode: &str| (load(&a.out, mode, sub), load(&a.out, mode, base));

    let (s, b) = both("hold");
    if s.is_some() || b.is_some() {
        let f = |r: &Option<Value>| r.as_ref().and_then(|r| r["rssPerConnectionBytes"].as_f64());
        let range = |r: &Option<Value>| {
            r.as_ref()
                .map(|r| format!("{}..{}", num(&r["fitRange"][0]), num(&r["fitRange"][1])))
                .unwrap_or_default()
        };
        let _ = writeln!(
            figures,
            "| RSS per idle connection, bytes (fit over {} / {} connections) | ≤ ½ baseline, < 7 KB | {} | {} | {} |",
            range(&s),
            range(&b),
            f(&s).map_or("n/a".into(), |v| v.to_string()),
            f(&b).map_or("n/a".into(), |v| v.to_string()),
            ratio(f(&s), f(&b))
        );
        let mut ser = Vec::new();
        for (l, r) in runs(&a.out, "hold") {
            let mut x = series(&l, &r, "connections", &["serverRssKiB"]);
            x.points.iter_mut().for_each(|p| p.1 /= 1024.0);
            ser.push(x);
        }
        write_chart(
            &a,
            "hold",
            Chart {
                title: "Server RSS with idle connections".into(),
                x_label: "connections".into(),
                y_label: "RSS MiB".into(),
                series: ser,
                log_x: false,
                hline: None,
            },
        );
        md += &section(&a.out, "hold", &[sub, base]);
    }

    let (s, b) = both("fanout");
    if s.is_some() || b.is_some() {
        let f = |r: &Option<Value>, k: &str| r.as_ref().and_then(|r| r[k].as_f64());
        let _ = writeln!(
            figures,
            "| fan-out knee, deliveries/s (p99 ≤ 100 ms, ≥ 99% delivered) | ≥ 5x baseline | {} | {} | {} |",
            num(s
                .as_ref()
                .map_or(&Value::Null, |r| &r["kneeDeliveriesPerSec"])),
            num(b
                .as_ref()
                .map_or(&Value::Null, |r| &r["kneeDeliveriesPerSec"])),
            ratio(f(&s, "kneeDeliveriesPerSec"), f(&b, "kneeDeliveriesPerSec"))
        );
        let _ = writeln!(
            figures,
            "| server user CPU per delivery at the knee, µs | ≤ ⅓ baseline | {} | {} | {} |",
            num(s
                .as_ref()
                .map_or(&Value::Null, |r| &r["kneeCpuUsPerDelivery"])),
            num(b
                .as_ref()
                .map_or(&Value::Null, |r| &r["kneeCpuUsPerDelivery"])),
            ratio(f(&s, "kneeCpuUsPerDelivery"), f(&b, "kneeCpuUsPerDelivery"))
        );
        // CPU per delivery at the same send rate: the highest rate both passed.
        let passed = |r: &Option<Value>| -> Vec<u64> {
            r.as_ref()
                .and_then(|r| r["steps"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|st| st["passed"] == true)
                .filter_map(|st| st["rate"].as_u64())
                .collect()
        };
        let common = passed(&s)
            .into_iter()
            .filter(|x| passed(&b).contains(x))
            .max();
        if let Some(rate) = common {
            let at = |r: &Option<Value>| {
                r.as_ref().and_then(|r| {
                    r["steps"]
                        .as_array()?
                        .iter()
                        .find(|st| st["rate"] == rate)?["serverUserCpuUsPerDelivery"]
                        .as_f64()
                })
            };
            let _ = writeln!(
                figures,
                "| server user CPU per delivery at the same rate ({rate} msgs/s), µs | ≤ ⅓ baseline | {} | {} | {} |",
                at(&s).map_or("n/a".into(), |v| v.to_string()),
                at(&b).map_or("n/a".into(), |v| v.to_string()),
                ratio(at(&s), at(&b))
            );
        }
        let runs: Vec<(&str, &Value)> = [(sub, &s), (base, &b)]
            .into_iter()
            .filter_map(|(l, r)| r.as_ref().map(|r| (l, r)))
            .collect();
        write_chart(
            &a,
            "fanout-p99",
            Chart {
                title: "Fan-out delivery p99 by send rate".into(),
                x_label: "messages/s (log)".into(),
                y_label: "p99 ms".into(),
                series: runs
                    .iter()
                    .map(|(l, r)| series(l, r, "rate", &["latency", "p99Ms"]))
                    .collect(),
                log_x: true,
                hline: Some((100.0, "knee: 100 ms".into())),
            },
        );
        write_chart(
            &a,
            "fanout-cpu",
            Chart {
                title: "Server user CPU per delivery".into(),
                x_label: "messages/s (log)".into(),
                y_label: "us/delivery".into(),
                series: runs
                    .iter()
                    .map(|(l, r)| series(l, r, "rate", &["serverUserCpuUsPerDelivery"]))
                    .collect(),
                log_x: true,
                hline: None,
            },
        );
        md += &section(&a.out, "fanout", &[sub, base]);
    }

    let (s, b) = both("chat");
    if s.is_some() || b.is_some() {
        let at = |r: &Option<Value>, rate: u64, k: &str| {
            r.as_ref().and_then(|r| {
                r["steps"]
                    .as_array()?
                    .iter()
                    .find(|st| st["rate"] == rate)
                    .and_then(|st| st["ack"][k].as_f64())
            })
        };
        for rate in [100u64, 500, 1000] {
            let _ = writeln!(
                figures,
                "| send-ack p50 / p99 ms at {rate}/s, embedded store | p99 ≤ 20 ms at 1,000/s | {} / {} | {} / {} | {} |",
                at(&s, rate, "p50Ms").map_or("n/a".into(), |v| v.to_string()),
                at(&s, rate, "p99Ms").map_or("n/a".into(), |v| v.to_string()),
                at(&b, rate, "p50Ms").map_or("n/a".into(), |v| v.to_string()),
                at(&b, rate, "p99Ms").map_or("n/a".into(), |v| v.to_string()),
                ratio(at(&s, rate, "p99Ms"), at(&b, rate, "p99Ms"))
            );
        }
        let runs: Vec<(&str, &Value)> = [(sub, &s), (base, &b)]
            .into_iter()
            .filter_map(|(l, r)| r.as_ref().map(|r| (l, r)))
            .collect();
        write_chart(
            &a,
            "chat-ack",
            Chart {
                title: "Send-ack p99 by send rate".into(),
                x_label: "sends/s".into(),
                y_label: "ack p99 ms".into(),
                series: runs
                    .iter()
                    .map(|(l, r)| series(l, r, "rate", &["ack", "p99Ms"]))
                    .collect(),
                log_x: false,
                hline: Some((20.0, "target 20 ms".into())),
            },
        );
        md += &section(&a.out, "chat", &[sub, base]);
    }
    md += &section(&a.out, "reconnect", &[sub, base]);

    let doc = format!(
        "# Benchmark summary\n\nMachine: {}\n\nRatios are {sub} / {base}; the targets are reported, not asserted.\n\n{figures}\n{md}",
        machine()
    );
    let _ = std::fs::write(a.out.join(format!("{}.md", a.name)), &doc);
    println!("{doc}");
    true
}

/// Every saved run of `mode`: the subject and the baseline first, then other labels (variants,
/// repeats) in name order.
fn section(out: &Path, mode: &str, labels: &[&str]) -> String {
    let mut names: Vec<String> = labels.iter().map(|l| format!("{mode}-{l}.md")).collect();
    let mut others: Vec<String> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{mode}-")) && n.ends_with(".md") && !names.contains(n))
        .collect();
    others.sort();
    names.extend(others);
    let mut s = String::new();
    for n in names {
        if let Ok(t) = std::fs::read_to_string(out.join(n)) {
            s += &t;
            s += "\n";
        }
    }
    s
}

/// Every saved run of `mode` as (label, result).
fn runs(out: &Path, mode: &str) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            Some(
                n.strip_prefix(&format!("{mode}-"))?
                    .strip_suffix(".json")?
                    .to_owned(),
            )
        })
        .filter_map(|l| Some((l.clone(), load(out, mode, &l)?)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn write_chart(a: &CompareArgs, name: &str, chart: Chart) {
    let suffix = a.name.strip_prefix("summary").unwrap_or(&a.name);
    if let Err(e) = chart.write(&a.out.join(format!("{name}{suffix}"))) {
        eprintln!("chart {name}: {e}");
    }
}
