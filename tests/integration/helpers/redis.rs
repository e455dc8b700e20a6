//! Real Redis deployments on free loopback ports, started and torn down by the tests:
//!
//! - [`RedisServer`]: one `redis-server`, with no persistence (`--save "" --appendonly no`),
//!   that a test can kill, pause, and start again on the same port (it comes back empty); also
//!   a replica of another ([`RedisServer::start_replica_of`]).
//! - [`SentinelGroup`]: a primary, a replica and three Sentinels (`redis-server --sentinel`
//!   with generated config files), timed to fail over within a few seconds.
//! - [`RedisCluster`]: a Redis Cluster of three masters (and a replica each when asked),
//!   made with `redis-cli --cluster create`.
//! - [`Redis`]: any of them behind one [`Topology`], so a test can run on every topology.
//! - [`TcpProxy`]: one address whose target a test switches (a managed Redis's failover).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A `redis-server` process owned by one test.
pub struct RedisServer {
    pub port: u16,
    /// `requirepass`, when the server wants one.
    password: Option<String>,
    /// More arguments for `redis-server` (replication, cluster mode).
    extra: Vec<String>,
    child: Option<Child>,
    /// Its working directory (nothing is persisted there).
    dir: TempDir,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer::on_port(free_port());
        server.restart().await;
        server
    }

    /// Starts a server that refuses clients without `password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        let mut server = RedisServer::on_port(free_port());
        server.password = Some(password.to_owned());
        server.restart().await;
        server
    }

    /// Starts a server with more `redis-server` arguments.
    pub async fn start_with_args(extra: &[&str]) -> RedisServer {
        let mut server = RedisServer::on_port(free_port());
        server.extra = extra.iter().map(|a| a.to_string()).collect();
        server.restart().await;
        server
    }

    /// Starts a replica of the server on `primary`, and waits until it has synced.
    pub async fn start_replica_of(primary: u16) -> RedisServer {
        let replica = RedisServer::start_with_args(&[
            "--replicaof",
            "127.0.0.1",
            &primary.to_string(),
            // The first sync at once, over the socket (the default waits 5 s for more replicas).
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ])
        .await;
        let port = replica.port;
        assert!(
            until(Duration::from_secs(10), move || {
                info(port, "replication").contains("master_link_status:up")
            })
            .await,
            "replica on {port} did not sync with {primary}"
        );
        replica
    }

    /// A server for `port` that is not running yet (see [`RedisServer::restart`]).
    pub fn on_port(port: u16) -> RedisServer {
        RedisServer {
            port,
            password: None,
            extra: Vec::new(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The URL nodes use, with the password when there is one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server at once (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server without closing its connections (SIGSTOP): commands are accepted by the
    /// kernel and wait unanswered, as with a stalled or overloaded Redis.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT); it answers what waited, in order.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} redis-server");
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_owned(), p.clone()]),
            )
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            until(Duration::from_secs(10), move || answers_ping(port)).await,
            "redis-server on {port} did not answer within 10 s"
        );
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    // A server with a password answers `-NOAUTH`: it is up all the same.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server is continued first (never panicking here: the test may be unwinding).
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}

/// Runs `redis-cli -p port args...` (3 s timeout); its output, or "" when it could not run.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["3", "redis-cli", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `INFO section` of the server on `port`.
pub fn info(port: u16, section: &str) -> String {
    cli(port, &["INFO", section])
}

/// [`eventually`](super::eventually) for a blocking `check` (it runs on the blocking pool).
pub async fn until(within: Duration, check: impl FnMut() -> bool + Send + 'static) -> bool {
    let check = std::sync::Arc::new(std::sync::Mutex::new(check));
    super::eventually(within, || {
        let check = check.clone();
        async move {
            tokio::task::spawn_blocking(move || (check.lock().unwrap_or_else(|p| p.into_inner()))())
                .await
                .expect("check runs")
        }
    })
    .await
}

/// The Sentinels' name for the primary they watch.
pub const SENTINEL_SERVICE: &str = "sbprimary";

/// A Sentinel group: one primary, one replica, three Sentinels (quorum 2) that declare the
/// primary down after 1 s of silence and promote the replica.
pub struct SentinelGroup {
    /// The primary the group started with (killed by a failover test).
    pub primary: RedisServer,
    /// Its replica, promoted by a failover.
    pub replica: RedisServer,
    /// The Sentinels.
    sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    /// Starts the servers and the Sentinels and waits until every Sentinel knows the replica
    /// and the other Sentinels (so a failover can be agreed on).
    pub async fn start() -> SentinelGroup {
        let primary = RedisServer::start().await;
        let replica = RedisServer::start_replica_of(primary.port).await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let mut s = RedisServer::on_port(free_port());
            let conf = s.dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                     sentinel failover-timeout {SENTINEL_SERVICE} 1000\n\
                     sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                    port = s.port,
                    dir = s.dir.path().display(),
                    primary = primary.port,
                ),
            )
            .expect("sentinel.conf written");
            s.start_sentinel(&conf).await;
            sentinels.push(s);
        }
        let ports: Vec<u16> = sentinels.iter().map(|s| s.port).collect();
        assert!(
            until(Duration::from_secs(20), move || {
                ports.iter().all(|p| {
                    let master = cli(*p, &["SENTINEL", "MASTER", SENTINEL_SERVICE]);
                    field(&master, "num-slaves") == Some("1")
                        && field(&master, "num-other-sentinels") == Some("2")
                })
            })
            .await,
            "the Sentinels did not find each other and the replica within 20 s"
        );
        SentinelGroup {
            primary,
            replica,
            sentinels,
        }
    }

    /// The URL nodes use: every Sentinel, and the service name.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinels[0].port
        );
        for s in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", s.port));
        }
        url
    }

    /// The port of the primary the Sentinels name now.
    pub fn current_primary(&self) -> Option<u16> {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// Kills the primary (SIGKILL) and waits until the Sentinels have promoted the replica;
    /// returns how long the promotion took.
    pub async fn fail_over(&mut self) -> Duration {
        let started = std::time::Instant::now();
        self.primary.kill();
        let (sentinel, replica) = (self.sentinels[0].port, self.replica.port);
        assert!(
            until(Duration::from_secs(30), move || {
                let out = cli(
                    sentinel,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
                );
                out.lines().nth(1).map(str::trim) == Some(&replica.to_string())
                    && info(replica, "replication").contains("role:master")
            })
            .await,
            "the Sentinels did not promote the replica within 30 s"
        );
        started.elapsed()
    }
}

/// A field of a `redis-cli` reply made of alternating name / value lines.
fn field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = reply.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == name {
            return lines.next();
        }
    }
    None
}

impl RedisServer {
    /// Starts this server as a Sentinel with `conf` (which it rewrites as it learns).
    async fn start_sentinel(&mut self, conf: &std::path::Path) {
        let child = Command::new("redis-server")
            .arg(conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        self.child = Some(child);
        let port = self.port;
        assert!(
            until(Duration::from_secs(10), move || answers_ping(port)).await,
            "sentinel on {port} did not answer"
        );
    }
}

/// A Redis Cluster on loopback: three masters, and one replica each when asked.
pub struct RedisCluster {
    /// Every server, masters first as created (roles change with failovers).
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters (plus a replica each when `replicas`) and makes them a cluster;
    /// waits until every node says `cluster_state:ok`.
    pub async fn start(replicas: bool) -> RedisCluster {
        let count = if replicas { 6 } else { 3 };
        let mut servers = Vec::new();
        for _ in 0..count {
            servers.push(
                RedisServer::start_with_args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    // A silent master is failed over after about 1 s.
                    "--cluster-node-timeout",
                    "1000",
                    "--repl-diskless-sync",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                ])
                .await,
            );
        }
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let mut create = Command::new("timeout");
        create
            .args(["60", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", if replicas { "1" } else { "0" }])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = tokio::task::spawn_blocking(move || create.status())
            .await
            .expect("redis-cli runs")
            .expect("redis-cli --cluster create runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
        let cluster = RedisCluster { servers };
        assert!(
            until(Duration::from_secs(30), move || {
                ports.iter().all(|p| {
                    let info = cli(*p, &["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok")
                        && info.contains(&format!("cluster_known_nodes:{count}"))
                }) && (!replicas
                    || ports
                        .iter()
                        .filter(|p| info(**p, "replication").contains("role:slave"))
                        .all(|p| info(*p, "replication").contains("master_link_status:up")))
            })
            .await,
            "the Redis Cluster did not become ready within 30 s"
        );
        cluster
    }

    /// The URL nodes use: every server as a seed.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.servers[0].port);
        for (i, s) in self.servers[1..].iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", s.port));
        }
        url
    }

    /// The port of the master serving the slot of `key` (a key or a shard channel) now.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let live: Vec<&RedisServer> = self.servers.iter().filter(|s| s.child.is_some()).collect();
        let slot: u16 = cli(live.first()?.port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .ok()?;
        live.iter()
            .map(|s| s.port)
            .find(|p| info(*p, "replication").contains("role:master") && owns_slot(*p, slot))
    }

    /// Kills (SIGKILL) the master serving `key`'s slot and waits until its replica serves the
    /// slot and the cluster is whole again; returns the old master's port and how long it took.
    pub async fn fail_over_master_of(&mut self, key: &str) -> (u16, Duration) {
        let master = self.master_of(key).expect("a master serves the slot");
        let started = std::time::Instant::now();
        self.servers
            .iter_mut()
            .find(|s| s.port == master)
            .expect("the master is one of ours")
            .kill();
        let live: Vec<u16> = self
            .servers
            .iter()
            .filter(|s| s.child.is_some())
            .map(|s| s.port)
            .collect();
        let key = key.to_owned();
        assert!(
            until(Duration::from_secs(30), move || {
                let slot: Option<u16> = cli(live[0], &["CLUSTER", "KEYSLOT", &key])
                    .trim()
                    .parse()
                    .ok();
                let Some(slot) = slot else { return false };
                live.iter()
                    .all(|p| cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                    && live.iter().any(|p| {
                        *p != master
                            && info(*p, "replication").contains("role:master")
                            && owns_slot(*p, slot)
                    })
            })
            .await,
            "no replica took over from the killed master within 30 s"
        );
        (master, started.elapsed())
    }
}

/// Does the server on `port` say it serves `slot` itself (`CLUSTER SHARDS` is 7.0+; the
/// `CLUSTER NODES` line of `myself` lists its slot ranges)?
fn owns_slot(port: u16, slot: u16) -> bool {
    let nodes = cli(port, &["CLUSTER", "NODES"]);
    let Some(me) = nodes.lines().find(|l| l.contains("myself")) else {
        return false;
    };
    me.split_whitespace().skip(8).any(|range| {
        let mut ends = range.split('-').map(|n| n.parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
            (Some(Ok(a)), None) => a == slot,
            _ => false,
        }
    })
}

/// Where a cluster test's Redis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One `redis-server`.
    Single,
    /// A [`SentinelGroup`].
    Sentinel,
    /// A [`RedisCluster`] of three masters.
    Cluster,
}

/// A running Redis of some [`Topology`].
pub enum Redis {
    Single(RedisServer),
    Sentinel(SentinelGroup),
    Cluster(RedisCluster),
}

impl Redis {
    /// Starts a Redis of `topology` (a cluster without replicas: failover tests make their own).
    pub async fn start(topology: Topology) -> Redis {
        match topology {
            Topology::Single => Redis::Single(RedisServer::start().await),
            Topology::Sentinel => Redis::Sentinel(SentinelGroup::start().await),
            Topology::Cluster => Redis::Cluster(RedisCluster::start(false).await),
        }
    }

    /// The `REDIS_URL` nodes use.
    pub fn url(&self) -> String {
        match self {
            Redis::Single(s) => s.url(),
            Redis::Sentinel(g) => g.url(),
            Redis::Cluster(c) => c.url(),
        }
    }
}

/// A TCP proxy on a free loopback port that forwards every connection to a target port the
/// test can switch: what a managed Redis's failover looks like to a client (one address, a
/// promoted replica behind it, every open connection cut).
pub struct TcpProxy {
    pub port: u16,
    /// The port new connections go to.
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
    /// Bumped by a switch: connections of an older generation end.
    generation: tokio::sync::watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: u16) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let port = listener.local_addr().expect("proxy address").port();
        let target = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(target));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let accept = tokio::spawn({
            let (target, generation) = (target.clone(), generation.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let to = target.load(std::sync::atomic::Ordering::SeqCst);
                    let mut switched = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = switched.changed() => {}
                        }
                    });
                }
            }
        });
        TcpProxy {
            port,
            target,
            generation,
            accept,
        }
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Points the address at `target` and cuts every open connection.
    pub fn switch_to(&self, target: u16) {
        self.target
            .store(target, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}
