//! `loadgen`: Switchboard's load generator and benchmark driver.
//!
//! Every mode is bounded in count and time and stops by itself, writes
//! `<out>/<mode>-<label>.json` and `.md`, and reads the server's RSS and CPU from `/proc` when
//! given its PIDs. `compare` turns the saved runs of Switchboard and the Node baseline into one
//! table with ratios and SVG charts.
//!
//! # Layout
//! - `sio`: a lean Socket.IO v5 client (one task per connection, 4 KiB read buffer)
//! - `token`, `http`: HS256 tokens, opening chats over REST
//! - `procfs`, `stats`: server RSS/CPU, latency histograms
//! - `hold`, `fanout`, `chat`, `reconnect`: the modes (`recover`: `reconnect --recover`)
//! - `sink`: `webhook-sink`, a local webhook receiver counting events per second
//! - `avalanche`: `reconnect --recover --workers`, the clients in worker processes
//! - `redisinfo`: Redis `INFO commandstats` snapshots
//! - `report`, `chart`: JSON/Markdown output, SVG charts, `compare`

mod avalanche;
mod chart;
mod chat;
mod fanout;
mod hold;
mod http;
mod procfs;
mod reconnect;
mod recover;
mod redisinfo;
mod report;
mod sink;
mod sio;
mod stats;
mod token;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator and benchmarks for Switchboard and the Node baseline"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N idle connections held, spread over worker processes and source addresses; RSS per connection.
    Hold(hold::HoldArgs),
    /// (internal) one hold worker process.
    #[command(hide = true)]
    HoldWorker(hold::WorkerArgs),
    /// One sender, many receivers of one room; a rate sweep finding the knee.
    Fanout(fanout::FanoutArgs),
    /// Acknowledged, persisted sends in 1:1 chats at fixed rates: saves/s and ack latency.
    Chat(chat::ChatArgs),
    /// A node drains or dies: time until every client is back, and nothing missing.
    Reconnect(reconnect::ReconnectArgs),
    /// (internal) one `reconnect --recover --workers` worker process.
    #[command(hide = true)]
    ReconnectWorker(avalanche::WorkerArgs),
    /// Tables with ratios and charts from the saved runs.
    Compare(report::CompareArgs),
    /// A local webhook receiver (answers 200, checks signatures): events per second received.
    WebhookSink(sink::SinkArgs),
}

/// Settings every load mode shares.
#[derive(Args, Clone)]
pub struct Common {
    /// Nodes to connect to, comma-separated; clients are spread over them round-robin.
    #[arg(
        long,
        env = "LOADGEN_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:5001"
    )]
    pub urls: Vec<String>,
    /// The HS256 secret the nodes verify tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// PIDs of the server processes whose RSS and CPU are measured (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// The system under test, as named in results: `switchboard`, `baseline`, ...
    #[arg(long, default_value = "switchboard")]
    pub label: String,
    /// Where results are written.
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Exit non-zero unless every message was delivered and nothing failed (smoke tests).
    #[arg(long)]
    pub strict: bool,
}

impl Common {
    pub fn targets(&self) -> Vec<sio::Target> {
        self.urls
            .iter()
            .map(|u| sio::Target::parse(u).unwrap_or_else(|e| fail(&e)))
            .collect()
    }
}

pub fn fail(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

fn main() {
    let cli = Cli::parse();
    // One thread: the generator is pinned to one core, and a single-threaded runtime spends
    // nothing on work stealing or contended locks.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = rt.block_on(async move {
        match cli.mode {
            Mode::Hold(a) => hold::run(a).await,
            Mode::HoldWorker(a) => hold::worker(a).await,
            Mode::Fanout(a) => fanout::run(a).await,
            Mode::Chat(a) => chat::run(a).await,
            Mode::Reconnect(a) => reconnect::run(a).await,
            Mode::ReconnectWorker(a) => avalanche::worker(a).await,
            Mode::Compare(a) => report::compare(a),
            Mode::WebhookSink(a) => sink::run(a).await,
        }
    });
    std::process::exit(if ok { 0 } else { 1 });
}
