//! The cluster fixture every multi-node test starts from ([`Cluster`]: a Redis of some
//! topology, a shared store, nodes on them; [`on_every_topology!`] to run a test on each
//! topology), and what the cluster tests share: waiting for presence transitions and messages
//! on a socket, the staff REST reads they compare across nodes, readiness.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use switchboard::Config;
use switchboard::domain::Role;
use tempfile::TempDir;

use super::quiet::no_more;
use super::{
    ProcessNode, Redis, RedisServer, Sio, TestNode, Topology, eventually, heartbeats_pass,
};

/// Long enough for any cross-node event.
pub const LONG: Duration = Duration::from_secs(10);

pub fn shared_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

/// Waits for the next `user:status` about `user` (others are discarded).
pub async fn status_of(socket: &Sio, user: &str, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = socket.try_event("user:status", left).await?;
        if event["userId"] == user {
            return event["status"].as_str().map(str::to_owned);
        }
    }
}

/// The `user:status` events about `user` already queued on `socket`.
pub fn queued_statuses(socket: &Sio, user: &str) -> Vec<String> {
    socket
        .drain("user:status")
        .into_iter()
        .filter(|e| e["userId"] == user)
        .filter_map(|e| e["status"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until `socket` has had `message:new` for every id in `ids`.
pub async fn receives_all(
    socket: &Sio,
    ids: &BTreeSet<String>,
    within: Duration,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + within;
    while !ids.is_subset(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.try_event("message:new", left).await {
            Some(e) => {
                seen.insert(e["message"]["id"].as_str().unwrap_or_default().to_owned());
            }
            None => break,
        }
    }
    seen
}

/// A staff GET that must succeed; returns its body.
async fn staff_get(node: &TestNode, path: &str) -> Value {
    let token = node.token("audit", Role::Admin);
    let (status, body) = node.call(Method::GET, path, Some(&token), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

pub async fn active_users(node: &TestNode, query: &str) -> Value {
    staff_get(node, &format!("/api/socket/active-users{query}")).await
}

pub async fn user_status(node: &TestNode, user: &str) -> Value {
    staff_get(node, &format!("/api/users/{user}/status")).await
}

pub async fn readyz(port: u16) -> u16 {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits (up to `LONG`) until both nodes answer `/readyz` with 200.
pub async fn both_ready(a: &TestNode, b: &TestNode) -> bool {
    eventually(LONG, || async {
        readyz(a.port).await == 200 && readyz(b.port).await == 200
    })
    .await
}

/// Where a cluster's nodes keep their chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// One embedded store in the data directory every node of the cluster shares.
    Embedded,
    /// A fresh database on the shared MongoDB-wire test server.
    Mongo,
}

/// Settings every node of a cluster gets (its store, and what the test asked of every node).
type Adjust = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// A Redis deployment, one data directory (or MongoDB database) and nodes on them: what every
/// cluster test starts with. [`Cluster::start`] for `n` plain nodes; [`Cluster::build`] to name
/// them, adjust their settings or keep the chats in MongoDB; [`Cluster::join`] and
/// [`Cluster::process`] for a node the test starts later, or must be able to SIGKILL.
///
/// The cluster owns its nodes: borrow them with [`Cluster::nodes`] (or `cluster[i]`), or take
/// them with [`Cluster::take`] when the test stops one. Redis and the data outlive the nodes a
/// test holds, as locals are dropped in reverse order.
pub struct Cluster {
    /// The nodes started with the cluster, in order.
    pub nodes: Vec<TestNode>,
    /// The Redis they share (a test may kill, pause or restart it).
    pub redis: Redis,
    /// The data directory they share (the embedded store stands in for MongoDB).
    pub data: Arc<TempDir>,
    /// Applied to every node's settings, the later ones too.
    each: Adjust,
    /// The address nodes reach Redis by, when not Redis's own (a proxy in front of it).
    via: Option<String>,
}

/// What [`Cluster::build`] starts.
pub struct ClusterBuilder {
    redis: Option<Redis>,
    topology: Topology,
    names: Vec<String>,
    store: Store,
    each: Adjust,
    via: Option<String>,
}

/// `node-a`, `node-b`, ...: the default names of a cluster's nodes.
fn default_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("node-{}", char::from(b'a' + i as u8)))
        .collect()
}

impl Cluster {
    /// `n` nodes (`node-a`, `node-b`, ...) with default settings on a Redis of `topology`.
    pub async fn start(n: usize, topology: Topology) -> Cluster {
        Cluster::build(topology).nodes(n).start().await
    }

    /// A cluster to configure before it starts (two nodes unless told).
    pub fn build(topology: Topology) -> ClusterBuilder {
        ClusterBuilder {
            redis: None,
            topology,
            names: default_names(2),
            store: Store::Embedded,
            each: Arc::new(|_| {}),
            via: None,
        }
    }

    /// The `REDIS_URL` of the cluster.
    pub fn url(&self) -> String {
        self.redis.url()
    }

    /// The single `redis-server` of a [`Topology::Single`] cluster.
    pub fn server(&mut self) -> &mut RedisServer {
        match &mut self.redis {
            Redis::Single(server) => server,
            _ => panic!("the cluster's Redis is not a single server"),
        }
    }

    /// The port of the single `redis-server` of a [`Topology::Single`] cluster.
    pub fn port(&self) -> u16 {
        match &self.redis {
            Redis::Single(server) => server.port,
            _ => panic!("the cluster's Redis is not a single server"),
        }
    }

    /// Its nodes, as many as the test names: `let [a, b] = cluster.nodes();`.
    pub fn nodes<const N: usize>(&self) -> [&TestNode; N] {
        assert_eq!(
            N,
            self.nodes.len(),
            "the cluster has {} nodes",
            self.nodes.len()
        );
        std::array::from_fn(|i| &self.nodes[i])
    }

    /// Takes its nodes out (the test stops or drops them); Redis and the data stay.
    pub fn take<const N: usize>(&mut self) -> [TestNode; N] {
        let n = self.nodes.len();
        std::mem::take(&mut self.nodes)
            .try_into()
            .unwrap_or_else(|_| panic!("the cluster has {n} nodes, not {N}"))
    }

    /// Drains and stops its nodes, one after another.
    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }

    /// Another node named `name`, started now (the cluster does not hold it).
    pub async fn join(&self, name: &str) -> TestNode {
        self.join_with(name, |_| {}).await
    }

    /// [`Cluster::join`], with this node's settings adjusted after the cluster's.
    pub async fn join_with(&self, name: &str, adjust: impl FnOnce(&mut Config)) -> TestNode {
        let url = self.via.clone().unwrap_or_else(|| self.url());
        self.join_via(&url, name, adjust).await
    }

    /// [`Cluster::join_with`] through another address of the same Redis (a proxy that delays
    /// or stalls it).
    pub async fn join_via(
        &self,
        redis_url: &str,
        name: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestNode {
        let each = self.each.clone();
        TestNode::cluster_with(self.data.clone(), redis_url, name, move |c| {
            each(c);
            adjust(c);
        })
        .await
    }

    /// A node named `name` as its own `switchboard` process (which a test can SIGKILL), on the
    /// cluster's Redis and data directory, with the tests' presence timings. The process gets
    /// none of the cluster's adjustments (it has the embedded store).
    pub async fn process(&self, name: &str) -> ProcessNode {
        ProcessNode::start(self.data.path(), &self.url(), name).await
    }

    /// [`Cluster::process`] with more settings (`REDIS_URL` and the data directory are the
    /// cluster's; `env` names the node and its timings).
    pub async fn process_with_env(&self, env: &[(&str, &str)]) -> ProcessNode {
        let url = self.url();
        let mut all = vec![("REDIS_URL", url.as_str())];
        all.extend_from_slice(env);
        ProcessNode::start_with_env(self.data.path(), &all).await
    }
}

impl std::ops::Index<usize> for Cluster {
    type Output = TestNode;

    fn index(&self, i: usize) -> &TestNode {
        &self.nodes[i]
    }
}

impl ClusterBuilder {
    /// `n` nodes named `node-a`, `node-b`, ...
    pub fn nodes(mut self, n: usize) -> Self {
        self.names = default_names(n);
        self
    }

    /// One node per name, in order.
    pub fn named(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Settings every node gets (also those that join later).
    pub fn each(mut self, adjust: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.each = Arc::new(adjust);
        self
    }

    /// Where the nodes keep their chats.
    pub fn store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// On this Redis, started by the test (with a password, say), not one of the topology.
    pub fn on(mut self, redis: Redis) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Nodes reach Redis through `url` (a proxy in front of it that the test switches).
    pub fn via(mut self, url: &str) -> Self {
        self.via = Some(url.to_owned());
        self
    }

    /// Starts Redis, then the nodes one after another.
    pub async fn start(self) -> Cluster {
        let redis = match self.redis {
            Some(redis) => redis,
            None => Redis::start(self.topology).await,
        };
        let each: Adjust = match self.store {
            Store::Embedded => self.each,
            Store::Mongo => {
                let (uri, database) =
                    (super::mongo::shared().uri(), super::mongo::fresh_database());
                let test = self.each;
                Arc::new(move |c: &mut Config| {
                    c.mongodb_uri = Some(uri.clone().into());
                    c.mongodb_database = database.clone();
                    test(c);
                })
            }
        };
        let mut cluster = Cluster {
            nodes: Vec::new(),
            redis,
            data: shared_dir(),
            each,
            via: self.via,
        };
        for name in &self.names {
            let node = cluster.join(name).await;
            cluster.nodes.push(node);
        }
        cluster
    }
}

/// Runs the acceptance test `name(topology)` on a single server, a Sentinel group and a Redis
/// Cluster, as tests `name::single`, `name::sentinel` and `name::cluster`.
macro_rules! on_every_topology {
    ($name:ident) => {
        mod $name {
            use crate::helpers::Topology;

            #[tokio::test]
            async fn single() {
                super::$name(Topology::Single).await
            }

            #[tokio::test]
            async fn sentinel() {
                super::$name(Topology::Sentinel).await
            }

            #[tokio::test]
            async fn cluster() {
                super::$name(Topology::Cluster).await
            }
        }
    };
}
pub(crate) use on_every_topology;

/// Asserts that `admin` (a socket of `user`) has no `user:status` queued and none on its way,
/// once every one of `nodes` has made `beats` more presence heartbeats: a transition announced
/// twice would come from a heartbeat (its reaping or resync) or from a disconnect already made,
/// and [`no_more`]'s witness follows whatever those emitted. No fixed wait.
pub async fn no_more_statuses(
    admin: &Sio,
    user: &str,
    nodes: &[&TestNode],
    beats: u64,
    what: &str,
) {
    for node in nodes {
        assert!(
            heartbeats_pass(node, beats).await,
            "{what}: node {} made no {beats} heartbeats",
            node.port
        );
    }
    no_more(admin, user, "user:status", nodes, what).await;
}
