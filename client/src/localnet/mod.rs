//! A local network of verifying nodes on 127.0.0.1: N CometBFT validators, each with its
//! `lemal-vn` application process, sharing one genesis whose `app_state` holds a fresh roster of
//! verifying nodes, computing nodes and data providers.
//!
//! Everything lives in one home folder (`.lemal/` by default, git-ignored):
//!
//! ```text
//! HOME/bin/cometbft                 the pinned CometBFT, installed with `go install` when missing
//! HOME/net/localnet.json            the manifest: chain id, ports, binaries (see [`Manifest`])
//! HOME/net/keys/{vn,cn,dp}-N.json   every entity's key file, read back by `lemal run`
//! HOME/net/nodeN/                   CometBFT home of validator N (config/, data/)
//! HOME/net/nodeN/app/               lemal-vn database of validator N
//! HOME/net/logs/{cometbft,lemal-vn}-N.log
//! HOME/net/run/{cometbft,lemal-vn}-N.json   pid records of the processes started
//! ```
//!
//! Node `i` listens on p2p `BASE + 100·i`, RPC `BASE + 1 + 100·i` and ABCI `BASE + 2 + 100·i`,
//! and serves Prometheus metrics: its CometBFT's on `BASE + 4 + 100·i`, its `lemal-vn`'s on
//! `BASE + 5 + 100·i` (both at `/metrics`), all on 127.0.0.1 (or on the address of its
//! [`NodeHost`], in the network namespace the partition test made for it); pprof is off.
//! [`up`] builds a fresh network each time it starts one (the previous `HOME/net` is replaced)
//! and refuses to touch a network that is still running. Processes are started detached, each in its own process group, and [`down`] stops
//! exactly the processes whose pid records still name them (same pid and same start time);
//! [`stop`] does so for one node. [`start`] brings stopped nodes of the generated network back
//! from their state; [`reset`] drops a stopped node's application state, which its CometBFT
//! then replays.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lemal_contracts::ids::EntityId;
use lemal_contracts::sig::KeyFile;
use lemal_contracts::state::Params;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item, Value};

use crate::keyring::{write_key_file, Keyring};
use crate::rpc::{Node, RpcError};

mod parties;
use parties::{party_infos, party_process};
pub use parties::{party_log, party_status, start_parties, stop_party, PartyInfo, PartyStatus};

/// The CometBFT release the localnet runs.
pub const COMETBFT_VERSION: &str = "0.38.25";

/// The Go package `go install` builds CometBFT from.
pub const COMETBFT_PACKAGE: &str = "github.com/cometbft/cometbft/cmd/cometbft";

/// The first port of node 0 (its p2p port) unless told otherwise.
pub const DEFAULT_BASE_PORT: u16 = 26656;

/// Ports between consecutive nodes.
pub const PORT_STRIDE: u16 = 100;

/// The chain id of a localnet unless told otherwise.
pub const DEFAULT_CHAIN_ID: &str = "lemal-localnet";

/// Largest block in bytes (genesis `consensus_params.block.max_bytes`): room for a shuffle proof
/// of 4096 rows (about 1.3 MB) several times over.
pub const BLOCK_MAX_BYTES: u64 = 22_020_096;

/// Largest transaction the mempool accepts: the application's own limit
/// ([`Params::max_tx_bytes`]).
pub const MEMPOOL_MAX_TX_BYTES: u64 = 8 << 20;

/// Largest total size of the mempool.
pub const MEMPOOL_MAX_TXS_BYTES: u64 = 256 << 20;

/// Largest RPC request body: a base64-encoded transaction of [`MEMPOOL_MAX_TX_BYTES`] in JSON.
pub const RPC_MAX_BODY_BYTES: u64 = 32 << 20;

/// What went wrong managing a localnet.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    /// A network started from this home is still running.
    #[error(
        "a localnet is already running from {home} ({running} processes); \
         stop it first with `lemal --home {home} localnet down`"
    )]
    AlreadyRunning {
        /// The home folder.
        home: String,
        /// How many of its processes are alive.
        running: usize,
    },
    /// There is no localnet in this home.
    #[error("no localnet in {0}: start one with `lemal localnet up`")]
    NoLocalnet(String),
    /// A node index beyond the localnet's nodes.
    #[error("the localnet has nodes 0 to {}, not {node}", .nodes.saturating_sub(1))]
    NoSuchNode {
        /// The index asked for.
        node: usize,
        /// How many nodes the localnet has.
        nodes: usize,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A program this needs is missing or of the wrong version.
    #[error("{0}")]
    Missing(String),
    /// A helper program failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// The options or a generated file are unusable.
    #[error("{0}")]
    Config(String),
    /// A port is taken.
    #[error("port {0} on 127.0.0.1 is in use (another localnet? choose another --base-port)")]
    PortInUse(u16),
    /// A process died while the network was starting.
    #[error("{name} exited while the localnet was starting; the end of {log}:\n{tail}")]
    Died {
        /// The process.
        name: String,
        /// Its log file.
        log: String,
        /// The last lines of its log.
        tail: String,
    },
    /// The network did not come up in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalnetError {
    let what = what.into();
    move |source| LocalnetError::Io { what, source }
}

/// The files of a localnet under its home folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    home: PathBuf,
}

impl Layout {
    /// The layout under `home` (made absolute against the current directory).
    pub fn new(home: &Path) -> Result<Self, LocalnetError> {
        let home = std::path::absolute(home)
            .map_err(io(format!("resolving the home folder {}", home.display())))?;
        Ok(Self { home })
    }

    /// The home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where `go install` puts CometBFT.
    fn bin_dir(&self) -> PathBuf {
        self.home.join("bin")
    }

    /// The generated network; replaced by every fresh `up`.
    fn net_dir(&self) -> PathBuf {
        self.home.join("net")
    }

    /// The manifest.
    fn manifest(&self) -> PathBuf {
        self.net_dir().join("localnet.json")
    }

    /// The key files.
    pub fn keys_dir(&self) -> PathBuf {
        self.net_dir().join("keys")
    }

    /// The key file of one entity.
    pub fn key_file(&self, entity: EntityId) -> PathBuf {
        self.keys_dir().join(format!("{entity}.json"))
    }

    /// CometBFT home of node `i`.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.net_dir().join(format!("node{i}"))
    }

    /// `lemal-vn` home of node `i`.
    fn app_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("app")
    }

    /// The unix socket node `i`'s `lemal-vn` serves ABCI on, as `unix://` address.
    pub fn abci_socket(&self, i: usize) -> String {
        format!("unix://{}", self.node_dir(i).join("abci.sock").display())
    }

    /// The log folder.
    fn logs_dir(&self) -> PathBuf {
        self.net_dir().join("logs")
    }

    /// The log of a process (`cometbft-0`, `lemal-vn-2`).
    fn log(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }

    /// The folder of pid records.
    fn run_dir(&self) -> PathBuf {
        self.net_dir().join("run")
    }

    /// The pid record of a process.
    fn pid_file(&self, name: &str) -> PathBuf {
        self.run_dir().join(format!("{name}.json"))
    }
}

/// The ports of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// Peer-to-peer.
    pub p2p: u16,
    /// CometBFT RPC.
    pub rpc: u16,
    /// The application's ABCI server.
    pub abci: u16,
    /// CometBFT's Prometheus metrics (0 in a manifest written before metrics: see
    /// [`Manifest::load`]).
    #[serde(default)]
    pub cometbft_metrics: u16,
    /// `lemal-vn`'s Prometheus metrics (0 likewise).
    #[serde(default)]
    pub vn_metrics: u16,
}

impl Ports {
    /// Node `i`'s ports for base port `base`, or `None` when they do not fit in 16 bits.
    pub fn of(base: u16, i: u32) -> Option<Ports> {
        let p2p = u32::from(base) + u32::from(PORT_STRIDE).checked_mul(i)?;
        let p = |off: u32| u16::try_from(p2p + off).ok();
        Some(Ports {
            p2p: p(0)?,
            rpc: p(1)?,
            abci: p(2)?,
            cometbft_metrics: p(4)?,
            vn_metrics: p(5)?,
        })
    }

    /// Every port, for clash checks.
    pub fn all(&self) -> [u16; 5] {
        [self.p2p, self.rpc, self.abci, self.cometbft_metrics, self.vn_metrics]
    }
}

/// Where a node runs: the address it listens on and peers dial, and the network namespace its
/// processes run in (`ip netns exec NS ...`). The default is 127.0.0.1 in this process's
/// namespace; the partition test gives each node an address of its own in a namespace it
/// created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHost {
    /// The IPv4 address.
    pub ip: std::net::Ipv4Addr,
    /// The network namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl Default for NodeHost {
    fn default() -> Self {
        NodeHost { ip: std::net::Ipv4Addr::LOCALHOST, netns: None }
    }
}

impl std::str::FromStr for NodeHost {
    type Err = String;
    /// `IP` or `IP@NETNS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, netns) = match s.split_once('@') {
            Some((ip, ns))
                if !ns.is_empty()
                    && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                (ip, Some(ns.to_owned()))
            }
            Some(_) => return Err(format!("{s:?}: a namespace name is letters, digits, - and _")),
            None => (s, None),
        };
        let ip = ip.parse().map_err(|_| format!("{s:?}: not an IPv4 address"))?;
        Ok(NodeHost { ip, netns })
    }
}

/// One node of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `node0`, `node1`, ...
    pub name: String,
    /// The verifying node it runs (`vn-0`, ...).
    pub vn: EntityId,
    /// Its ports (on 127.0.0.1 unless `host` says otherwise).
    pub ports: Ports,
    /// Where it runs.
    #[serde(default)]
    pub host: NodeHost,
    /// Its RPC URL.
    pub rpc: String,
    /// Its CometBFT node id.
    pub node_id: String,
    /// Its validator address, hex.
    pub validator_address: String,
}

impl NodeInfo {
    /// Where its `lemal-vn` serves Prometheus metrics.
    pub fn vn_metrics_url(&self) -> String {
        format!("http://{}:{}/metrics", self.host.ip, self.ports.vn_metrics)
    }

    /// Where its CometBFT serves Prometheus metrics.
    pub fn cometbft_metrics_url(&self) -> String {
        format!("http://{}:{}/metrics", self.host.ip, self.ports.cometbft_metrics)
    }
}

/// What `up` built: enough for the other commands to find every part of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The chain id.
    pub chain_id: String,
    /// Target block time (CometBFT `timeout_commit`) in milliseconds.
    pub block_time_ms: u64,
    /// The base port.
    pub base_port: u16,
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// Computing nodes in the roster.
    pub cns: u32,
    /// Data providers in the roster.
    pub dps: u32,
    /// The CometBFT binary.
    pub cometbft: PathBuf,
    /// The `lemal-vn` binary.
    pub lemal_vn: PathBuf,
    /// The party daemons (none: `lemal run` plays every party itself).
    #[serde(default)]
    pub parties: Vec<PartyInfo>,
    /// The `lemal` binary the party daemons run.
    #[serde(default)]
    pub lemal: Option<PathBuf>,
    /// The seed of the data providers' synthetic data.
    #[serde(default)]
    pub data_seed: u64,
}

impl Manifest {
    /// Read the manifest of the localnet under `layout`. A manifest written before the
    /// metrics ports were recorded gets them from the node's p2p port.
    pub fn load(layout: &Layout) -> Result<Self, LocalnetError> {
        let path = layout.manifest();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LocalnetError::NoLocalnet(layout.home.display().to_string()))
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let mut manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
        for node in &mut manifest.nodes {
            if node.ports.vn_metrics == 0 {
                let p = |off: u16| node.ports.p2p.saturating_add(off);
                node.ports.cometbft_metrics = p(4);
                node.ports.vn_metrics = p(5);
            }
        }
        Ok(manifest)
    }

    fn save(&self, layout: &Layout) -> Result<(), LocalnetError> {
        write_json(&layout.manifest(), self)
    }
}

/// Options of [`up`].
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Validators (verifying nodes).
    pub validators: u32,
    /// Data providers in the roster.
    pub dps: u32,
    /// Computing nodes in the roster.
    pub cns: u32,
    /// Target block time in milliseconds.
    pub block_time_ms: u64,
    /// Node 0's p2p port.
    pub base_port: u16,
    /// The chain id.
    pub chain_id: String,
    /// A CometBFT binary to use instead of looking for or installing one.
    pub cometbft: Option<PathBuf>,
    /// The `lemal-vn` binary to use instead of looking for one.
    pub lemal_vn: Option<PathBuf>,
    /// How long to wait for every node to commit blocks.
    pub timeout: Duration,
    /// Where each node runs (empty: every node on 127.0.0.1).
    pub hosts: Vec<NodeHost>,
    /// Start a daemon for every data provider and computing node.
    pub parties: bool,
    /// The seed of the data providers' synthetic data.
    pub data_seed: u64,
}

impl UpOptions {
    /// Where node `i` runs.
    fn host(&self, i: usize) -> NodeHost {
        self.hosts.get(i).cloned().unwrap_or_default()
    }
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            validators: 4,
            dps: 12,
            cns: 6,
            block_time_ms: 300,
            base_port: DEFAULT_BASE_PORT,
            chain_id: DEFAULT_CHAIN_ID.into(),
            cometbft: None,
            lemal_vn: None,
            timeout: Duration::from_secs(60),
            hosts: Vec::new(),
            parties: true,
            data_seed: 0,
        }
    }
}

impl UpOptions {
    fn check(&self) -> Result<Vec<Ports>, LocalnetError> {
        let bad = |m: String| Err(LocalnetError::Config(m));
        if !(1..=64).contains(&self.validators) {
            return bad(format!("--validators {} is not in 1..=64", self.validators));
        }
        check_network_shape(self.dps, self.cns, self.block_time_ms)?;
        if !self.hosts.is_empty() && self.hosts.len() != self.validators as usize {
            return bad(format!(
                "{} hosts for {} validators: give one per node, or none",
                self.hosts.len(),
                self.validators
            ));
        }
        check_chain_id(&self.chain_id)?;
        (0..self.validators)
            .map(|i| {
                Ports::of(self.base_port, i).ok_or_else(|| {
                    LocalnetError::Config(format!(
                        "base port {} leaves no room for {} nodes {} ports apart",
                        self.base_port, self.validators, PORT_STRIDE
                    ))
                })
            })
            .collect()
    }
}

/// Refuse a roster without a data provider or a computing node, with fewer data providers than
/// computing nodes (each computing node aggregates at least one), or a block time below 10 ms.
pub(crate) fn check_network_shape(
    dps: u32,
    cns: u32,
    block_time_ms: u64,
) -> Result<(), LocalnetError> {
    let bad = |m: String| Err(LocalnetError::Config(m));
    if dps == 0 || cns == 0 {
        return bad("the roster needs at least one data provider and one computing node".into());
    }
    if dps < cns {
        return bad(format!(
            "{dps} data providers for {cns} computing nodes: every computing node needs one"
        ));
    }
    if block_time_ms < 10 {
        return bad(format!("--block-time {block_time_ms} ms is below 10 ms"));
    }
    Ok(())
}

/// Refuse a chain id that is empty, longer than the chain accepts, or holds anything but
/// letters, digits, `-`, `_` and `.` (it is written into configs and start scripts).
pub(crate) fn check_chain_id(chain_id: &str) -> Result<(), LocalnetError> {
    let limit = lemal_contracts::tx::limits::MAX_CHAIN_ID;
    if chain_id.is_empty()
        || chain_id.len() > limit
        || !chain_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(LocalnetError::Config(format!(
            "chain id {chain_id:?} must be 1 to {limit} characters of letters, digits, '-', '_', '.'"
        )));
    }
    Ok(())
}

/// A process the localnet started, as recorded in its pid file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// `cometbft-0`, `lemal-vn-0`, ...
    pub name: String,
    /// Its pid (and process group id: each process leads its own group).
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22), which tells it from
    /// a later process that reuses the pid.
    pub start_time: u64,
    /// The program.
    pub program: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

/// What `/proc` says about a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcStat {
    state: char,
    start_time: u64,
}

/// Parse `/proc/PID/stat`: the state (field 3) and the start time (field 22). The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

impl ProcessRecord {
    /// Whether the recorded process is still running: the pid exists, is not a zombie, and
    /// started at the recorded time (so it is the process this localnet started).
    pub fn is_running(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.start_time == self.start_time && s.state != 'Z')
    }

    /// Whether the recorded process has wholly exited: gone, or a zombie leader whose other
    /// threads are gone too. Only then are its files closed and its locks released — the leader
    /// of a multi-threaded process turns zombie while its other threads still hold the file
    /// table (a store reopened at that moment is still locked).
    pub fn has_exited(&self) -> bool {
        match proc_stat(self.pid) {
            Some(s) if s.start_time == self.start_time => {
                s.state == 'Z'
                    && fs::read_dir(format!("/proc/{}/task", self.pid))
                        .map_or(true, |threads| threads.count() <= 1)
            }
            _ => true,
        }
    }
}

fn signal_group(pid: u32, signal: Signal) -> Result<(), LocalnetError> {
    let group = i32::try_from(pid)
        .map_err(|_| LocalnetError::Config(format!("pid {pid} is not a process id")))?;
    // Each process leads its own group; signalling the group also reaches anything it started.
    match killpg(Pid::from_raw(group), signal) {
        // A group that is already gone is fine: the process exited meanwhile.
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io(format!("sending {signal} to process group {pid}"))(e.into())),
    }
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), LocalnetError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
    fs::write(path, text + "\n").map_err(io(format!("writing {}", path.display())))
}

/// Every pid record of the localnet under `layout`, sorted by name.
fn processes(layout: &Layout) -> Result<Vec<ProcessRecord>, LocalnetError> {
    let dir = layout.run_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(format!("listing {}", dir.display())))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let record: ProcessRecord = serde_json::from_slice(&bytes)
            .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
        out.push(record);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether any process of the localnet under `layout` is still running.
pub fn running(layout: &Layout) -> Result<usize, LocalnetError> {
    Ok(processes(layout)?.iter().filter(|p| p.is_running()).count())
}

/// Stop every process the localnet under `layout` started and is still running: SIGTERM to its
/// process group, then SIGKILL after `grace`. Pid records of processes that exited, or whose pid
/// now belongs to another process, are removed without signalling anything. Returns the names
/// of the processes stopped. The network's state stays: [`start`] resumes it.
pub fn down(layout: &Layout, grace: Duration) -> Result<Vec<String>, LocalnetError> {
    stop_records(layout, processes(layout)?, grace)
}

/// The names of node `i`'s two processes.
fn node_processes(i: usize) -> [String; 2] {
    [format!("lemal-vn-{i}"), format!("cometbft-{i}")]
}

/// The nodes a command acts on: node `only` (which must exist), else every node.
fn selected(manifest: &Manifest, only: Option<usize>) -> Result<Vec<usize>, LocalnetError> {
    let nodes = manifest.nodes.len();
    match only {
        Some(i) if i < nodes => Ok(vec![i]),
        Some(i) => Err(LocalnetError::NoSuchNode { node: i, nodes }),
        None => Ok((0..nodes).collect()),
    }
}

/// Stop node `i`'s processes (its CometBFT and its `lemal-vn`) as [`down`] stops all of them;
/// the rest of the network keeps running and the node's state stays for [`start`].
pub fn stop(layout: &Layout, i: usize, grace: Duration) -> Result<Vec<String>, LocalnetError> {
    selected(&Manifest::load(layout)?, Some(i))?;
    let names = node_processes(i);
    let records = processes(layout)?.into_iter().filter(|p| names.contains(&p.name)).collect();
    stop_records(layout, records, grace)
}

/// Reset node `i`'s application state for replay: remove its `lemal-vn` store, which leaves
/// the application at height 0 with CometBFT's block store and state untouched. At the next
/// [`start`], CometBFT's handshake sees the application behind, sends it InitChain and replays
/// every block from the first to the application, which ends at the app hash of the rest of the
/// network. The recovery from a damaged store. Refuses while a process of the node runs.
/// Returns the removed file, or `None` when there was none.
pub fn reset(layout: &Layout, i: usize) -> Result<Option<PathBuf>, LocalnetError> {
    selected(&Manifest::load(layout)?, Some(i))?;
    let names = node_processes(i);
    if let Some(p) =
        processes(layout)?.into_iter().find(|p| names.contains(&p.name) && p.is_running())
    {
        return Err(LocalnetError::Config(format!(
            "{} (pid {}) is running: stop node {i} first (`lemal localnet stop {i}`)",
            p.name, p.pid
        )));
    }
    let store = layout.app_dir(i).join("state.redb");
    match fs::remove_file(&store) {
        Ok(()) => Ok(Some(store)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("removing {}", store.display()))(e)),
    }
}

fn stop_records(
    layout: &Layout,
    records: Vec<ProcessRecord>,
    grace: Duration,
) -> Result<Vec<String>, LocalnetError> {
    let live: Vec<&ProcessRecord> = records.iter().filter(|p| p.is_running()).collect();
    for p in &live {
        signal_group(p.pid, Signal::SIGTERM)?;
    }
    let start = Instant::now();
    while live.iter().any(|p| !p.has_exited()) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in live.iter().filter(|p| !p.has_exited()) {
        signal_group(p.pid, Signal::SIGKILL)?;
    }
    let start = Instant::now();
    while live.iter().any(|p| !p.has_exited()) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(p) = live.iter().find(|p| !p.has_exited()) {
        return Err(LocalnetError::Config(format!(
            "{} (pid {}) survived SIGKILL; its pid record is kept",
            p.name, p.pid
        )));
    }
    for p in &records {
        let path = layout.pid_file(&p.name);
        fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
    }
    Ok(live.iter().map(|p| p.name.clone()).collect())
}

/// The first line a program prints for `args`, when it runs and succeeds.
fn output_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_owned())
}

fn is_pinned_cometbft(program: &Path) -> bool {
    output_line(program, &["version"]).is_some_and(|v| v == COMETBFT_VERSION)
}

fn run_checked(command: &mut Command) -> Result<String, LocalnetError> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {shown} (is it installed?)")))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(LocalnetError::Command {
            command: shown,
            status: out.status.to_string(),
            output: last_lines(&text, 20),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The pinned CometBFT: `explicit` when given (it must be v[`COMETBFT_VERSION`]); else
/// `HOME/bin/cometbft`, else `cometbft` on the `PATH`, when either is the pinned version; else
/// installed into `HOME/bin` with `go install`.
pub fn ensure_cometbft(
    layout: &Layout,
    explicit: Option<&Path>,
    progress: &dyn Fn(&str),
) -> Result<PathBuf, LocalnetError> {
    if let Some(path) = explicit {
        let path =
            std::path::absolute(path).map_err(io(format!("resolving {}", path.display())))?;
        if !is_pinned_cometbft(&path) {
            return Err(LocalnetError::Missing(format!(
                "{} is not CometBFT v{COMETBFT_VERSION}",
                path.display()
            )));
        }
        return Ok(path);
    }
    let local = layout.bin_dir().join("cometbft");
    if is_pinned_cometbft(&local) {
        return Ok(local);
    }
    let on_path = PathBuf::from("cometbft");
    if is_pinned_cometbft(&on_path) {
        return Ok(on_path);
    }
    progress(&format!(
        "installing CometBFT v{COMETBFT_VERSION} into {} with go install (a few minutes the first time)",
        layout.bin_dir().display()
    ));
    fs::create_dir_all(layout.bin_dir())
        .map_err(io(format!("creating {}", layout.bin_dir().display())))?;
    if output_line(Path::new("go"), &["version"]).is_none() {
        return Err(LocalnetError::Missing(format!(
            "CometBFT v{COMETBFT_VERSION} is not installed and `go` is not on the PATH: install Go \
             (1.22 or newer), or put cometbft v{COMETBFT_VERSION} at {}",
            local.display()
        )));
    }
    run_checked(
        Command::new("go")
            .args(["install", &format!("{COMETBFT_PACKAGE}@v{COMETBFT_VERSION}")])
            .env("GOBIN", layout.bin_dir()),
    )?;
    if !is_pinned_cometbft(&local) {
        return Err(LocalnetError::Missing(format!(
            "go install finished but {} does not report version {COMETBFT_VERSION}",
            local.display()
        )));
    }
    Ok(local)
}

/// The `lemal-vn` binary: `explicit`, else the one beside the running executable, else
/// `target/release/lemal-vn` under the current directory.
fn find_lemal_vn(explicit: Option<&Path>) -> Result<PathBuf, LocalnetError> {
    if let Some(p) = explicit {
        return std::path::absolute(p).map_err(io(format!("resolving {}", p.display())));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        candidates.push(dir.join("lemal-vn"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join("target/release/lemal-vn"));
    }
    candidates.into_iter().find(|c| c.is_file()).ok_or_else(|| {
        LocalnetError::Missing(
            "lemal-vn not found beside lemal nor in target/release: run `cargo build --release`"
                .into(),
        )
    })
}

/// Set `key = value` in `[section]` (`""` for the top level) of a CometBFT `config.toml`,
/// keeping the comments around it. The key must exist: CometBFT writes every key.
fn set_toml(
    doc: &mut DocumentMut,
    section: &str,
    key: &str,
    value: Value,
) -> Result<(), LocalnetError> {
    let table = match section {
        "" => Some(doc.as_table_mut()),
        _ => doc.get_mut(section).and_then(Item::as_table_mut),
    };
    let Some(old) = table.and_then(|t| t.get_mut(key)).and_then(Item::as_value_mut) else {
        return Err(LocalnetError::Config(format!(
            "config.toml has no key {key} in section [{section}]"
        )));
    };
    let decor = old.decor().clone();
    *old = value;
    *old.decor_mut() = decor;
    Ok(())
}

/// A TOML integer.
fn int(n: u64) -> Value {
    i64::try_from(n).unwrap_or(i64::MAX).into()
}

/// Where a node listens and how peers and clients reach it.
pub(crate) struct NodeAddress<'a> {
    /// The address its p2p, RPC and metrics listeners bind to.
    pub listen: &'a str,
    /// The address peers dial (its `external_address`).
    pub external: &'a str,
    /// Its ports.
    pub ports: &'a Ports,
}

/// The `config.toml` settings every Lemal node needs, on a localnet or on real hosts: its
/// application socket, listeners, peers, block time, the transaction and message sizes Lemal's
/// proofs need, the kv indexer (`tx_search` on Lemal's events) and Prometheus.
pub(crate) fn node_settings(
    at: &NodeAddress<'_>,
    abci: &str,
    moniker: &str,
    peers: &str,
    block_time_ms: u64,
) -> Vec<(&'static str, &'static str, Value)> {
    let tcp = |p: u16| Value::from(format!("tcp://{}:{p}", at.listen));
    let ports = at.ports;
    vec![
        ("", "proxy_app", abci.into()),
        ("", "moniker", moniker.into()),
        ("rpc", "laddr", tcp(ports.rpc)),
        ("rpc", "grpc_laddr", "".into()),
        ("rpc", "pprof_laddr", "".into()),
        ("rpc", "max_body_bytes", int(RPC_MAX_BODY_BYTES)),
        ("p2p", "laddr", tcp(ports.p2p)),
        ("p2p", "external_address", format!("{}:{}", at.external, ports.p2p).into()),
        ("p2p", "persistent_peers", peers.into()),
        ("p2p", "flush_throttle_timeout", "10ms".into()),
        ("p2p", "send_rate", int(50 << 20)),
        ("p2p", "recv_rate", int(50 << 20)),
        ("mempool", "max_tx_bytes", int(MEMPOOL_MAX_TX_BYTES)),
        ("mempool", "max_txs_bytes", int(MEMPOOL_MAX_TXS_BYTES)),
        ("consensus", "timeout_commit", format!("{block_time_ms}ms").into()),
        ("consensus", "create_empty_blocks", true.into()),
        ("consensus", "create_empty_blocks_interval", "0s".into()),
        ("tx_index", "indexer", "kv".into()),
        ("instrumentation", "prometheus", true.into()),
        (
            "instrumentation",
            "prometheus_listen_addr",
            format!("{}:{}", at.listen, ports.cometbft_metrics).into(),
        ),
    ]
}

/// The extra settings of a localnet's node: peers share an address (loopback) or sit in a
/// private range, and the consensus timeouts suit a round trip of microseconds.
fn loopback_settings() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("p2p", "addr_book_strict", false.into()),
        ("p2p", "allow_duplicate_ip", true.into()),
        ("consensus", "timeout_propose", "500ms".into()),
        ("consensus", "timeout_propose_delta", "100ms".into()),
        ("consensus", "timeout_prevote", "200ms".into()),
        ("consensus", "timeout_prevote_delta", "100ms".into()),
        ("consensus", "timeout_precommit", "200ms".into()),
        ("consensus", "timeout_precommit_delta", "100ms".into()),
        ("consensus", "peer_gossip_sleep_duration", "10ms".into()),
    ]
}

/// Apply `settings` to the CometBFT `config.toml` at `path`, keeping its comments.
pub(crate) fn edit_config(
    path: &Path,
    settings: impl IntoIterator<Item = (&'static str, &'static str, Value)>,
) -> Result<(), LocalnetError> {
    let text = fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
    let mut doc: DocumentMut =
        text.parse().map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
    for (section, key, value) in settings {
        set_toml(&mut doc, section, key, value)
            .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
    }
    fs::write(path, doc.to_string()).map_err(io(format!("writing {}", path.display())))
}

/// Fresh CometBFT homes for `n` validators under `dir` (`dir/node0`, ...), written by
/// `cometbft testnet`; each node's id and validator address.
pub(crate) fn new_validators(
    cometbft: &Path,
    dir: &Path,
    n: usize,
) -> Result<Vec<(String, [u8; 20])>, LocalnetError> {
    run_checked(Command::new(cometbft).arg("testnet").args([
        "--v",
        &n.to_string(),
        "--o",
        &dir.to_string_lossy(),
        "--starting-ip-address",
        "127.0.0.1",
        "--node-dir-prefix",
        "node",
    ]))?;
    (0..n)
        .map(|i| {
            let home = dir.join(format!("node{i}"));
            let id = run_checked(Command::new(cometbft).args([
                "show-node-id",
                "--home",
                &home.to_string_lossy(),
            ]))?;
            Ok((id.trim().to_owned(), validator_address(&home)?))
        })
        .collect()
}

/// The genesis shared by every node: CometBFT's generated one with our chain id, block size and
/// `app_state`.
pub(crate) fn tune_genesis(
    generated: &[u8],
    chain_id: &str,
    app_state: serde_json::Value,
) -> Result<Vec<u8>, LocalnetError> {
    let bad = |m: &str| LocalnetError::Config(format!("generated genesis.json: {m}"));
    let mut g: serde_json::Value =
        serde_json::from_slice(generated).map_err(|e| bad(&e.to_string()))?;
    let obj = g.as_object_mut().ok_or_else(|| bad("not an object"))?;
    obj.insert("chain_id".into(), chain_id.into());
    obj.insert("app_state".into(), app_state);
    let block = obj
        .get_mut("consensus_params")
        .and_then(|c| c.get_mut("block"))
        .and_then(|b| b.as_object_mut())
        .ok_or_else(|| bad("no consensus_params.block"))?;
    block.insert("max_bytes".into(), BLOCK_MAX_BYTES.to_string().into());
    let mut out = serde_json::to_vec_pretty(&g).map_err(|e| bad(&e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

fn validator_address(node_dir: &Path) -> Result<[u8; 20], LocalnetError> {
    let path = node_dir.join("config/priv_validator_key.json");
    let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
    let hexed = v
        .get("address")
        .and_then(|a| a.as_str())
        .ok_or_else(|| LocalnetError::Config(format!("{}: no address", path.display())))?;
    let mut out = [0u8; 20];
    hex::decode_to_slice(hexed, &mut out)
        .map_err(|e| LocalnetError::Config(format!("{}: address: {e}", path.display())))?;
    Ok(out)
}

/// Whether the ports of the nodes that run in this process's namespace are free (a node in a
/// namespace of its own has them to itself).
fn check_ports_free(opts: &UpOptions, ports: &[Ports]) -> Result<(), LocalnetError> {
    for (i, node) in ports.iter().enumerate() {
        let host = opts.host(i);
        if host.netns.is_some() {
            continue;
        }
        for p in node.all() {
            TcpListener::bind((host.ip, p)).map_err(|_| LocalnetError::PortInUse(p))?;
        }
    }
    Ok(())
}

/// Generate a fresh network under `layout.net_dir()`: CometBFT homes, keys, genesis, tuned
/// configs and the manifest. Starts nothing.
fn generate(
    layout: &Layout,
    opts: &UpOptions,
    ports: &[Ports],
    cometbft: &Path,
    lemal_vn: &Path,
) -> Result<Manifest, LocalnetError> {
    let net = layout.net_dir();
    if net.exists() {
        fs::remove_dir_all(&net).map_err(io(format!("removing the old {}", net.display())))?;
    }
    for dir in [net.clone(), layout.keys_dir(), layout.logs_dir(), layout.run_dir()] {
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let n = opts.validators as usize;
    let (node_ids, addresses): (Vec<String>, Vec<[u8; 20]>) =
        new_validators(cometbft, &net, n)?.into_iter().unzip();

    let mut rng = rand_core::OsRng;
    let keyring = Keyring::generate(n, opts.cns as usize, opts.dps as usize, &mut rng);
    let app_state = serde_json::to_value(keyring.genesis(Params::default(), &addresses, &mut rng))
        .map_err(|e| LocalnetError::Config(format!("genesis app_state: {e}")))?;
    let keys = layout.keys_dir();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("restricting {}", keys.display())))?;
    for file in keyring.key_files() {
        let path = layout.key_file(file.entity);
        write_key_file(&path, &file).map_err(io(format!("writing {}", path.display())))?;
    }
    let generated_path = layout.node_dir(0).join("config/genesis.json");
    let generated =
        fs::read(&generated_path).map_err(io(format!("reading {}", generated_path.display())))?;
    let genesis = tune_genesis(&generated, &opts.chain_id, app_state)?;

    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let config_dir = layout.node_dir(i).join("config");
        fs::write(config_dir.join("genesis.json"), &genesis)
            .map_err(io(format!("writing {}/genesis.json", config_dir.display())))?;
        let peers: Vec<String> = (0..n)
            .filter(|&j| j != i)
            .map(|j| format!("{}@{}:{}", node_ids[j], opts.host(j).ip, ports[j].p2p))
            .collect();
        let vn = EntityId::vn(i as u32);
        let ip = opts.host(i).ip.to_string();
        let at = NodeAddress { listen: &ip, external: &ip, ports: &ports[i] };
        let settings = node_settings(
            &at,
            &layout.abci_socket(i),
            &vn.to_string(),
            &peers.join(","),
            opts.block_time_ms,
        );
        edit_config(
            &config_dir.join("config.toml"),
            settings.into_iter().chain(loopback_settings()),
        )?;
        nodes.push(NodeInfo {
            name: format!("node{i}"),
            vn,
            ports: ports[i],
            host: opts.host(i),
            rpc: format!("http://{}:{}", opts.host(i).ip, ports[i].rpc),
            node_id: node_ids[i].clone(),
            validator_address: hex::encode_upper(addresses[i]),
        });
    }
    let parties = if opts.parties { party_infos(layout, opts, &nodes)? } else { Vec::new() };
    let manifest = Manifest {
        chain_id: opts.chain_id.clone(),
        block_time_ms: opts.block_time_ms,
        base_port: opts.base_port,
        nodes,
        cns: opts.cns,
        dps: opts.dps,
        cometbft: cometbft.to_owned(),
        lemal_vn: lemal_vn.to_owned(),
        lemal: opts.parties.then(|| std::env::current_exe().ok()).flatten(),
        parties,
        data_seed: opts.data_seed,
    };
    manifest.save(layout)?;
    Ok(manifest)
}

/// Start `program` detached: its own process group, no stdin, output appended to its log, and
/// a pid record in `HOME/net/run`.
fn spawn(
    layout: &Layout,
    name: &str,
    netns: Option<&str>,
    program: &Path,
    args: &[String],
) -> Result<ProcessRecord, LocalnetError> {
    let log_path = layout.log(name);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    let err = log.try_clone().map_err(io(format!("opening {}", log_path.display())))?;
    // In a namespace, `ip netns exec` replaces itself with the program: the pid is the same.
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io(format!("starting {}", program.display())))?;
    let pid = child.id();
    let exited_at_once = |how: String| {
        LocalnetError::Config(format!(
            "{name} (pid {pid}) {how} at once; see {}",
            log_path.display()
        ))
    };
    if let Ok(Some(status)) = child.try_wait() {
        return Err(exited_at_once(format!("exited ({status})")));
    }
    // The child is not waited for: it outlives this process (and is then reaped by init).
    drop(child);
    let stat = proc_stat(pid).ok_or_else(|| exited_at_once("exited".into()))?;
    let record = ProcessRecord {
        name: name.to_owned(),
        pid,
        start_time: stat.start_time,
        program: program.to_owned(),
        log: log_path,
    };
    write_json(&layout.pid_file(name), &record)?;
    Ok(record)
}

fn died(record: &ProcessRecord) -> LocalnetError {
    let tail = tail(&record.log, 15).map(|(text, _)| text).unwrap_or_default();
    LocalnetError::Died { name: record.name.clone(), log: record.log.display().to_string(), tail }
}

/// Wait until something accepts connections on the unix socket `address` (`unix://PATH`),
/// while `record` runs.
fn wait_listening_unix(
    record: &ProcessRecord,
    address: &str,
    timeout: Duration,
) -> Result<(), LocalnetError> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let start = Instant::now();
    loop {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        if !record.is_running() {
            return Err(died(record));
        }
        if start.elapsed() > timeout {
            return Err(LocalnetError::Timeout(
                timeout,
                format!("{} to listen on {path}", record.name),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start node `i`'s `lemal-vn`, wait until it listens, then start its CometBFT.
fn start_node(
    layout: &Layout,
    manifest: &Manifest,
    i: usize,
    progress: &dyn Fn(&str),
) -> Result<[ProcessRecord; 2], LocalnetError> {
    let node = &manifest.nodes[i];
    let [app_name, bft_name] = node_processes(i);
    let netns = node.host.netns.as_deref();
    let app = spawn(
        layout,
        &app_name,
        netns,
        &manifest.lemal_vn,
        &[
            "--home".into(),
            layout.app_dir(i).to_string_lossy().into_owned(),
            "--abci".into(),
            layout.abci_socket(i),
            "--rpc".into(),
            node.rpc.clone(),
            "--key".into(),
            layout.key_file(node.vn).to_string_lossy().into_owned(),
            "--metrics".into(),
            format!("{}:{}", node.host.ip, node.ports.vn_metrics),
        ],
    )?;
    wait_listening_unix(&app, &layout.abci_socket(i), Duration::from_secs(20))?;
    let bft = spawn(
        layout,
        &bft_name,
        netns,
        &manifest.cometbft,
        &[
            "start".into(),
            "--home".into(),
            layout.node_dir(i).to_string_lossy().into_owned(),
            "--proxy_app".into(),
            layout.abci_socket(i),
        ],
    )?;
    progress(&format!("started {} (rpc {}, {})", node.name, node.rpc, node.vn));
    Ok([app, bft])
}

/// Start the processes of the localnet under `layout` that are not running — every node's, or
/// only node `only`'s — keeping the network's state: each `lemal-vn` reopens its store and
/// each CometBFT replays to it what it misses. A node with one of its two processes still up
/// is stopped first. Returns the names of the nodes started (none when all already run) once
/// each has caught up with the rest of the network, the network has committed a new block
/// since, and each sees every other running node.
pub fn start(
    layout: &Layout,
    only: Option<usize>,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<Vec<String>, LocalnetError> {
    let manifest = Manifest::load(layout)?;
    let recorded = processes(layout)?;
    // A process that died (a crash, a SIGKILL) may still be tearing down its threads, holding
    // its files: a new `lemal-vn` would find its store locked. Give it a moment to be gone.
    let begin = Instant::now();
    while recorded.iter().any(|p| !p.is_running() && !p.has_exited())
        && begin.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let live: Vec<ProcessRecord> = recorded.into_iter().filter(ProcessRecord::is_running).collect();
    let mut started = Vec::new();
    let mut nodes = Vec::new();
    for i in selected(&manifest, only)? {
        let names = node_processes(i);
        let up: Vec<ProcessRecord> =
            live.iter().filter(|p| names.contains(&p.name)).cloned().collect();
        if up.len() == names.len() {
            continue;
        }
        if !up.is_empty() {
            stop_records(layout, up, Duration::from_secs(10))?;
        }
        match start_node(layout, &manifest, i, progress) {
            Ok(records) => started.extend(records),
            Err(e) => {
                // Best effort: the start failure is the error to report.
                let _ = stop(layout, i, Duration::from_secs(5));
                return Err(e);
            }
        }
        nodes.push(i);
    }
    if !nodes.is_empty() {
        wait_caught_up(layout, &manifest, &nodes, &started, timeout, progress)?;
    }
    let mut names: Vec<String> = nodes.iter().map(|&i| manifest.nodes[i].name.clone()).collect();
    if only.is_none() {
        names.extend(start_parties(layout, None, progress)?);
    }
    Ok(names)
}

/// Wait until the nodes `started` (whose processes are `records`) are at the height of the
/// highest node, that height has grown since the wait began, and each started node is
/// connected to every other node that answers.
fn wait_caught_up(
    layout: &Layout,
    manifest: &Manifest,
    started: &[usize],
    records: &[ProcessRecord],
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<(), LocalnetError> {
    let clients: Vec<Node> =
        manifest.nodes.iter().map(|n| Node::connect(&n.rpc)).collect::<Result<_, _>>()?;
    let begin = Instant::now();
    let mut first_top: Option<u64> = None;
    loop {
        if let Some(dead) = records.iter().find(|p| !p.is_running()) {
            return Err(died(dead));
        }
        let heights: Vec<Option<u64>> =
            clients.iter().map(|c| c.status().ok().map(|s| s.height)).collect();
        let answering = heights.iter().flatten().count() as u64;
        let top = heights.iter().flatten().copied().max().unwrap_or(0);
        if top > 0 && first_top.is_none() {
            first_top = Some(top);
        }
        let caught_up = first_top.is_some_and(|f| top > f)
            && started.iter().all(|&i| heights[i].is_some_and(|h| h >= top));
        // Peers are asked for only once the heights are there.
        if caught_up
            && started.iter().all(|&i| clients[i].peer_count().is_ok_and(|p| p + 1 >= answering))
        {
            progress(&format!(
                "{} caught up at height {top} and connected",
                started
                    .iter()
                    .map(|&i| manifest.nodes[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return Ok(());
        }
        if begin.elapsed() > timeout {
            return Err(LocalnetError::Timeout(
                timeout,
                format!(
                    "the started nodes to catch up (heights {heights:?}); see the logs in {}",
                    layout.logs_dir().display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Build and start a fresh localnet under `layout`; returns once every node has committed
/// blocks and is connected to every other node (see [`start`]). Refuses when a localnet
/// started from the same home is still running. On failure, whatever was started is stopped
/// again.
pub fn up(
    layout: &Layout,
    opts: &UpOptions,
    progress: &dyn Fn(&str),
) -> Result<Manifest, LocalnetError> {
    let running = running(layout)?;
    if running > 0 {
        return Err(LocalnetError::AlreadyRunning {
            home: layout.home.display().to_string(),
            running,
        });
    }
    let ports = opts.check()?;
    check_ports_free(opts, &ports)?;
    let lemal_vn = find_lemal_vn(opts.lemal_vn.as_deref())?;
    let cometbft = ensure_cometbft(layout, opts.cometbft.as_deref(), progress)?;
    progress(&format!(
        "generating {} validators, {} computing nodes, {} data providers in {}",
        opts.validators,
        opts.cns,
        opts.dps,
        layout.net_dir().display()
    ));
    let manifest = generate(layout, opts, &ports, &cometbft, &lemal_vn)?;
    if let Err(e) = start(layout, None, opts.timeout, progress) {
        // Best effort: the start failure is the error to report.
        let _ = down(layout, Duration::from_secs(5));
        return Err(e);
    }
    Ok(manifest)
}

/// One node's state as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// `node0`, ...
    pub name: String,
    /// Its verifying node.
    pub vn: EntityId,
    /// Its RPC URL.
    pub rpc: String,
    /// Whether its CometBFT process runs.
    pub cometbft_running: bool,
    /// Whether its `lemal-vn` process runs.
    pub app_running: bool,
    /// Latest committed height, when the RPC answered.
    pub height: Option<u64>,
    /// App hash in the latest header (hex), when the RPC answered.
    pub app_hash: Option<String>,
    /// Connected peers, when the RPC answered.
    pub peers: Option<u64>,
    /// Why the RPC did not answer.
    pub error: Option<String>,
    /// Blocks its `lemal-vn`'s verifier worker is behind the committed height
    /// (`lemal_worker_lag_blocks`), when its metrics answered.
    pub worker_lag: Option<u64>,
    /// Where its `lemal-vn` serves Prometheus metrics.
    pub vn_metrics: String,
    /// Where its CometBFT serves Prometheus metrics.
    pub cometbft_metrics: String,
}

impl NodeStatus {
    /// Whether both processes run and the RPC answered.
    pub fn healthy(&self) -> bool {
        self.cometbft_running && self.app_running && self.error.is_none()
    }
}

/// The state of every node of the localnet under `layout`.
pub fn status(layout: &Layout) -> Result<(Manifest, Vec<NodeStatus>), LocalnetError> {
    let manifest = Manifest::load(layout)?;
    let procs = processes(layout)?;
    let alive = |name: &str| procs.iter().any(|p| p.name == name && p.is_running());
    let mut out = Vec::with_capacity(manifest.nodes.len());
    for (i, n) in manifest.nodes.iter().enumerate() {
        let [app, bft] = node_processes(i);
        let mut s = NodeStatus {
            name: n.name.clone(),
            vn: n.vn,
            rpc: n.rpc.clone(),
            cometbft_running: alive(&bft),
            app_running: alive(&app),
            height: None,
            app_hash: None,
            peers: None,
            error: None,
            worker_lag: None,
            vn_metrics: n.vn_metrics_url(),
            cometbft_metrics: n.cometbft_metrics_url(),
        };
        // The lag is shown when it can be read; an unreachable endpoint is not an error here.
        s.worker_lag = crate::metrics::scrape(&s.vn_metrics)
            .ok()
            .and_then(|m| m.get("lemal_worker_lag_blocks", &[]))
            .filter(|lag| *lag >= 0.0)
            .map(|lag| lag as u64);
        let answer = Node::connect(&n.rpc).and_then(|c| Ok((c.status()?, c.peer_count()?)));
        match answer {
            Ok((st, peers)) => {
                s.height = Some(st.height);
                s.app_hash = Some(hex::encode_upper(&st.app_hash));
                s.peers = Some(peers);
            }
            Err(e) => s.error = Some(e.to_string()),
        }
        out.push(s);
    }
    Ok((manifest, out))
}

/// The log files of the localnet under `layout`, node `only` or all, in node order (each node's
/// CometBFT log, then its application's), then, for all, every party daemon's.
pub fn log_files(layout: &Layout, only: Option<usize>) -> Result<Vec<PathBuf>, LocalnetError> {
    let manifest = Manifest::load(layout)?;
    let mut files: Vec<PathBuf> = selected(&manifest, only)?
        .into_iter()
        .flat_map(|i| {
            let [app, bft] = node_processes(i);
            [layout.log(&bft), layout.log(&app)]
        })
        .collect();
    if only.is_none() {
        files.extend(manifest.parties.iter().map(|p| layout.log(&party_process(p.entity))));
    }
    Ok(files)
}

/// The last `n` lines of a file, and its length (where following should resume).
pub fn tail(path: &Path, n: usize) -> Result<(String, u64), LocalnetError> {
    let mut f = fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let len = f.metadata().map_err(io(format!("reading {}", path.display())))?.len();
    // The last 64 KiB hold far more than the lines anyone asks for here.
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from)).map_err(io(format!("reading {}", path.display())))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io(format!("reading {}", path.display())))?;
    Ok((last_lines(&String::from_utf8_lossy(&buf), n), len))
}

/// What was appended to a file since byte `from`, and the new length.
pub fn read_from(path: &Path, from: u64) -> Result<(String, u64), LocalnetError> {
    let mut f = fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let len = f.metadata().map_err(io(format!("reading {}", path.display())))?.len();
    let from = if len < from { 0 } else { from };
    f.seek(SeekFrom::Start(from)).map_err(io(format!("reading {}", path.display())))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io(format!("reading {}", path.display())))?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), len))
}

/// Read every key file of the localnet under `layout` back into a keyring.
pub fn keyring(layout: &Layout) -> Result<Keyring, LocalnetError> {
    let dir = layout.keys_dir();
    let entries = fs::read_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LocalnetError::NoLocalnet(layout.home.display().to_string())
        } else {
            io(format!("listing {}", dir.display()))(e)
        }
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(format!("listing {}", dir.display())))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))?;
        files.push(file);
    }
    Keyring::from_key_files(&files)
        .map_err(|e| LocalnetError::Config(format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# top comment
proxy_app = \"tcp://127.0.0.1:26658\"
moniker = \"x\"

[rpc]
laddr = \"tcp://127.0.0.1:26657\"
max_body_bytes = 1000000

[p2p]
laddr = \"tcp://0.0.0.0:26656\"

[consensus]
timeout_propose = \"3s\"
timeout_propose_delta = \"500ms\"
";

    fn set(section: &str, key: &str, value: Value) -> Result<String, LocalnetError> {
        let mut doc: DocumentMut = CONFIG.parse().expect("valid TOML");
        set_toml(&mut doc, section, key, value)?;
        Ok(doc.to_string())
    }

    #[test]
    fn set_toml_replaces_the_key_of_the_named_section_only() {
        let out = set("p2p", "laddr", "tcp://127.0.0.1:1".into()).expect("set");
        assert!(out.contains("[p2p]\nladdr = \"tcp://127.0.0.1:1\"\n"), "{out}");
        assert!(out.contains("[rpc]\nladdr = \"tcp://127.0.0.1:26657\"\n"));
        let out = set("", "moniker", "vn-0".into()).expect("set");
        assert!(out.contains("moniker = \"vn-0\"\n"));
        assert!(out.starts_with("# top comment\n"), "comments stay: {out}");
        let out = set("rpc", "max_body_bytes", int(RPC_MAX_BODY_BYTES)).expect("set");
        assert!(out.contains(&format!("max_body_bytes = {RPC_MAX_BODY_BYTES}\n")));
    }

    #[test]
    fn set_toml_tells_a_key_from_its_longer_namesakes() {
        let out = set("consensus", "timeout_propose", "500ms".into()).expect("set");
        assert!(out.contains("timeout_propose = \"500ms\"\n"));
        assert!(out.contains("timeout_propose_delta = \"500ms\"\n"));
        assert!(!out.contains("\"3s\""));
    }

    #[test]
    fn set_toml_refuses_a_key_that_is_not_in_its_section() {
        assert!(set("rpc", "timeout_propose", int(1)).is_err());
        assert!(set("mempool", "size", int(1)).is_err());
    }

    #[test]
    fn node_settings_turn_on_cometbft_prometheus_on_the_nodes_port() {
        let ports = Ports::of(21656, 1).expect("ports");
        let at = NodeAddress { listen: "127.0.0.1", external: "127.0.0.1", ports: &ports };
        let settings = node_settings(&at, "unix:///a", "vn-1", "", 300);
        let get = |s: &str, k: &str| {
            settings.iter().find(|(a, b, _)| *a == s && *b == k).map(|(_, _, v)| v.to_string())
        };
        assert_eq!(get("instrumentation", "prometheus").as_deref(), Some("true"));
        assert_eq!(
            get("instrumentation", "prometheus_listen_addr").as_deref(),
            Some("\"127.0.0.1:21760\"")
        );
    }

    #[test]
    fn node_ports_follow_the_documented_layout() {
        let node = |p2p: u16| Ports {
            p2p,
            rpc: p2p + 1,
            abci: p2p + 2,
            cometbft_metrics: p2p + 4,
            vn_metrics: p2p + 5,
        };
        assert_eq!(Ports::of(26656, 0), Some(node(26656)));
        assert_eq!(Ports::of(26656, 3), Some(node(26956)));
        assert_eq!(node(26656).all(), [26656, 26657, 26658, 26660, 26661]);
        assert_eq!(Ports::of(65500, 1), None);
        assert_eq!(Ports::of(65530, 0), Some(node(65530)));
        assert_eq!(Ports::of(65531, 0), None);
    }

    #[test]
    fn options_refuse_what_the_network_cannot_run() {
        let ok = UpOptions::default();
        assert_eq!(ok.check().expect("defaults are valid").len(), 4);
        for bad in [
            UpOptions { validators: 0, ..UpOptions::default() },
            UpOptions { dps: 2, cns: 3, ..UpOptions::default() },
            UpOptions { cns: 0, ..UpOptions::default() },
            UpOptions { block_time_ms: 1, ..UpOptions::default() },
            UpOptions { chain_id: String::new(), ..UpOptions::default() },
            UpOptions { chain_id: "a b".into(), ..UpOptions::default() },
            UpOptions { base_port: 65400, ..UpOptions::default() },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let line = "4242 (cometbft (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 9 0 \
                    987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some(ProcStat { state: 'S', start_time: 987654 }));
        assert_eq!(parse_stat("4242 (x) Z"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_is_running_and_a_changed_start_time_is_not_ours() {
        let me = std::process::id();
        let stat = proc_stat(me).expect("own stat");
        let mine = ProcessRecord {
            name: "me".into(),
            pid: me,
            start_time: stat.start_time,
            program: PathBuf::from("x"),
            log: PathBuf::from("x"),
        };
        assert!(mine.is_running());
        let reused = ProcessRecord { start_time: stat.start_time + 1, ..mine };
        assert!(!reused.is_running());
    }

    #[test]
    fn genesis_gets_the_chain_id_block_size_and_app_state() {
        let generated = br#"{"chain_id":"chain-x","consensus_params":{"block":{"max_bytes":"1","max_gas":"-1"}},"validators":[]}"#;
        let out = tune_genesis(generated, "lemal-test", serde_json::json!({"a": 1})).expect("ok");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["chain_id"], "lemal-test");
        assert_eq!(v["app_state"]["a"], 1);
        assert_eq!(v["consensus_params"]["block"]["max_bytes"], BLOCK_MAX_BYTES.to_string());
        assert!(tune_genesis(b"{}", "x", serde_json::json!({})).is_err());
    }

    #[test]
    fn down_and_status_of_an_empty_home_say_there_is_nothing() {
        let dir = std::env::temp_dir().join(format!("lemal-localnet-unit-{}", std::process::id()));
        let layout = Layout::new(&dir).expect("layout");
        assert_eq!(down(&layout, Duration::from_millis(10)).expect("down").len(), 0);
        assert!(matches!(status(&layout), Err(LocalnetError::NoLocalnet(_))));
        assert!(matches!(keyring(&layout), Err(LocalnetError::NoLocalnet(_))));
        let no_progress = |_: &str| {};
        let started = start(&layout, None, Duration::from_millis(10), &no_progress);
        assert!(matches!(started, Err(LocalnetError::NoLocalnet(_))));
        let stopped = stop(&layout, 0, Duration::from_millis(10));
        assert!(matches!(stopped, Err(LocalnetError::NoLocalnet(_))));
    }

    #[test]
    fn down_stops_a_recorded_process_group_and_removes_its_record() {
        let dir = std::env::temp_dir().join(format!("lemal-localnet-down-{}", std::process::id()));
        let layout = Layout::new(&dir).expect("layout");
        fs::create_dir_all(layout.run_dir()).expect("dirs");
        fs::create_dir_all(layout.logs_dir()).expect("dirs");
        let record = spawn(&layout, "sleeper", None, Path::new("/bin/sleep"), &["30".into()])
            .expect("start");
        assert!(record.is_running());
        assert_eq!(running(&layout).expect("running"), 1);
        let stopped = down(&layout, Duration::from_secs(5)).expect("down");
        assert_eq!(stopped, vec!["sleeper".to_owned()]);
        assert!(!record.is_running());
        assert!(processes(&layout).expect("records").is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
