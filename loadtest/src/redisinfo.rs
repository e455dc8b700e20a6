//! Redis `INFO commandstats` over a bare RESP connection: how many calls of each command the
//! server has served, so a mode can count what one phase of a run cost (a snapshot before and
//! after). No Redis client crate: one request, one bulk-string reply.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Calls per command (`xadd`, `evalsha`, ...), from `redis://HOST:PORT[/DB]`.
pub async fn command_calls(url: &str) -> Result<BTreeMap<String, u64>, String> {
    tokio::time::timeout(Duration::from_secs(5), fetch(url))
        .await
        .map_err(|_| format!("{url}: INFO timed out"))?
}

async fn fetch(url: &str) -> Result<BTreeMap<String, u64>, String> {
    let host = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url}: want redis://HOST:PORT"))?;
    let host = host.split('/').next().unwrap_or(host);
    let mut stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader
        .read_line(&mut head)
        .await
        .map_err(|e| e.to_string())?;
    let len: usize = head
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("INFO: unexpected reply {head:?}"))?;
    let mut body = vec![0; len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(parse(&String::from_utf8_lossy(&body)))
}

/// `cmdstat_xadd:calls=12,usec=...` lines into `{ "xadd": 12 }`.
fn parse(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// `after - before` per command (commands that did not move are left out).
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                *v as i64 - before.get(k).copied().unwrap_or(0) as i64,
            )
        })
        .filter(|(_, d)| *d != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines_become_call_counts() {
        let text = "# Commandstats\r\ncmdstat_xadd:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\ncmdstat_hgetall:calls=3,usec=9\r\n";
        let m = parse(text);
        assert_eq!(m.get("xadd"), Some(&12));
        assert_eq!(m.get("hgetall"), Some(&3));
        assert_eq!(m.len(), 2);
    }
}
