//! `lemal localnet up | down | start | stop | reset | status | logs`: a local network of verifying nodes on 127.0.0.1,
//! managed by [`crate::localnet`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use super::Global;
use crate::localnet::{self, Layout, UpOptions};

/// Localnet actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Build and start a fresh localnet (replaces a stopped one in the same home).
    Up {
        /// Validators (verifying nodes).
        #[arg(long, env = "LEMAL_VALIDATORS", default_value_t = 4)]
        validators: u32,
        /// Data providers in the roster.
        #[arg(long, env = "LEMAL_DPS", default_value_t = 12)]
        dps: u32,
        /// Computing nodes in the roster.
        #[arg(long, env = "LEMAL_CNS", default_value_t = 6)]
        cns: u32,
        /// Target block time in milliseconds (CometBFT's timeout_commit).
        #[arg(long, env = "LEMAL_BLOCK_TIME", default_value_t = 300)]
        block_time: u64,
        /// Node 0's p2p port; node i uses BASE+100·i (p2p), +1 (rpc), +2 (abci).
        #[arg(long, env = "LEMAL_BASE_PORT", default_value_t = localnet::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// The chain id.
        #[arg(long, env = "LEMAL_CHAIN_ID", default_value = localnet::DEFAULT_CHAIN_ID)]
        chain_id: String,
        /// A CometBFT v0.38.25 binary to use (default: HOME/bin/cometbft, else `cometbft` on
        /// the PATH, else installed into HOME/bin with `go install`).
        #[arg(long, env = "LEMAL_COMETBFT")]
        cometbft: Option<PathBuf>,
        /// The lemal-vn binary (default: beside `lemal`, else target/release/lemal-vn).
        #[arg(long, env = "LEMAL_VN_BIN")]
        lemal_vn: Option<PathBuf>,
        /// Seconds to wait for every node to commit blocks.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Where each node runs, for tests across network namespaces: one `IP[@NETNS]` per node,
        /// comma-separated (default: every node on 127.0.0.1 in this namespace).
        #[arg(long, value_delimiter = ',', hide = true)]
        hosts: Vec<localnet::NodeHost>,
        /// Start no party daemons: `lemal run` then plays every data provider and computing
        /// node itself.
        #[arg(long)]
        no_parties: bool,
        /// Seed of the data providers' synthetic data (provider i draws from seed·1000003 + i).
        #[arg(long, default_value_t = 0)]
        data_seed: u64,
    },
    /// Stop the processes the localnet started (its state stays: `start` resumes it).
    Down,
    /// Start what is not running of the existing localnet — every node and party daemon, only
    /// node I, or only the daemon of party P (`dp-3`, `cn-0`) — keeping its state; returns once
    /// the started nodes have caught up.
    Start {
        /// Only node I (0, 1, ...) or party P.
        #[arg(value_name = "I|P")]
        only: Option<Target>,
        /// Seconds to wait for the started nodes to catch up.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Stop node I (its CometBFT and its lemal-vn), or the daemon of party P, while the rest
    /// keeps running; its state stays for `start I` / `start P`.
    Stop {
        /// The node (0, 1, ...) or party (`dp-3`, `cn-0`).
        #[arg(value_name = "I|P")]
        target: Target,
    },
    /// Reset stopped node I's application state for replay: delete its `lemal-vn` store, so
    /// that at the next `start I` CometBFT replays the whole chain to it (the recovery from a
    /// damaged store).
    Reset {
        /// The node (0, 1, ...).
        #[arg(value_name = "I")]
        index: usize,
    },
    /// Height, peers, worker lag and app hash per node, and the metrics URLs (exit code 1 unless
    /// every node is healthy).
    Status,
    /// Show the end of every node's logs.
    Logs {
        /// Lines per log file.
        #[arg(long, short = 'n', default_value_t = 20)]
        lines: usize,
        /// Keep printing what is appended (until interrupted).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the logs of node I (0, 1, ...).
        #[arg(value_name = "I")]
        only: Option<usize>,
    },
}

/// A node by index or a party daemon by entity name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Node I.
    Node(usize),
    /// The daemon of this party.
    Party(lemal_contracts::ids::EntityId),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(i) = s.parse::<usize>() {
            return Ok(Target::Node(i));
        }
        s.parse()
            .map(Target::Party)
            .map_err(|_| format!("{s:?} is neither a node index nor a party (dp-N, cn-N)"))
    }
}

/// `lemal localnet status`: every node (height, peers, worker lag, app hash, processes), every
/// metrics URL and every party daemon; exit 1 unless all are healthy.
fn status(layout: &Layout, global: &Global) -> Result<ExitCode> {
    let (manifest, nodes) = localnet::status(layout)?;
    let parties = localnet::party_status(layout)?;
    let healthy =
        nodes.iter().all(localnet::NodeStatus::healthy) && parties.iter().all(|p| p.running);
    if global.json {
        let doc = serde_json::json!({
            "chain_id": manifest.chain_id,
            "home": layout.home(),
            "healthy": healthy,
            "nodes": nodes,
            "parties": parties,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("localnet {} in {}", manifest.chain_id, layout.home().display());
        println!(
            "{:<6} {:<5} {:<24} {:>8} {:>5} {:>4}  {:<64}  processes",
            "node", "vn", "rpc", "height", "peers", "lag", "app hash"
        );
        for n in &nodes {
            let procs = match (n.cometbft_running, n.app_running) {
                (true, true) => "running".to_owned(),
                (false, false) => "stopped".to_owned(),
                (c, a) => format!(
                    "cometbft {}, lemal-vn {}",
                    if c { "up" } else { "down" },
                    if a { "up" } else { "down" }
                ),
            };
            let height = n.height.map_or("-".into(), |h| h.to_string());
            let peers = n.peers.map_or("-".into(), |p| p.to_string());
            let lag = n.worker_lag.map_or("-".into(), |l| l.to_string());
            let hash = n.app_hash.clone().unwrap_or_else(|| "-".into());
            println!(
                "{:<6} {:<5} {:<24} {:>8} {:>5} {:>4}  {:<64}  {procs}",
                n.name,
                n.vn.to_string(),
                n.rpc,
                height,
                peers,
                lag,
                hash
            );
            if let Some(e) = &n.error {
                println!("       {e}");
            }
        }
        println!("lag: blocks each lemal-vn's verifier worker is behind its node");
        println!("metrics (Prometheus):");
        for n in &nodes {
            println!("  {:<6} lemal-vn {}", n.name, n.vn_metrics);
            println!("  {:<6} cometbft {}", "", n.cometbft_metrics);
        }
        if !parties.is_empty() {
            println!("{:<6} {:<8} {:<24} metrics", "party", "daemon", "endpoint");
            for p in &parties {
                println!(
                    "{:<6} {:<8} {:<24} {}",
                    p.entity.to_string(),
                    if p.running { "running" } else { "stopped" },
                    p.endpoint.as_deref().unwrap_or("-"),
                    p.metrics
                );
            }
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn progress(msg: &str) {
    eprintln!("localnet: {msg}");
}

/// What `down`, `start` or `stop` did: `{"<what>": [names]}` with `--json`, else `<what> a, b`
/// or `none` when the list is empty.
fn print_names(global: &Global, what: &str, names: &[String], none: &str) {
    if global.json {
        println!("{}", serde_json::json!({ what: names }));
    } else if names.is_empty() {
        println!("{none}");
    } else {
        println!("{what} {}", names.join(", "));
    }
}

/// Run a localnet action.
pub fn run(action: Action, global: &Global) -> Result<ExitCode> {
    let layout = Layout::new(&global.home)?;
    match action {
        Action::Up {
            validators,
            dps,
            cns,
            block_time,
            base_port,
            chain_id,
            cometbft,
            lemal_vn,
            timeout,
            hosts,
            no_parties,
            data_seed,
        } => {
            let opts = UpOptions {
                validators,
                dps,
                cns,
                block_time_ms: block_time,
                base_port,
                chain_id,
                cometbft,
                lemal_vn,
                timeout: Duration::from_secs(timeout),
                hosts,
                parties: !no_parties,
                data_seed,
            };
            let manifest = localnet::up(&layout, &opts, &progress)?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                println!(
                    "localnet {} is up: {} validators, {} computing nodes, {} data providers",
                    manifest.chain_id,
                    manifest.nodes.len(),
                    manifest.cns,
                    manifest.dps
                );
                for n in &manifest.nodes {
                    println!("  {} ({})  rpc {}", n.name, n.vn, n.rpc);
                }
                println!("home {}; stop it with `lemal localnet down`", layout.home().display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Down => {
            let stopped = localnet::down(&layout, Duration::from_secs(10))?;
            let none = format!("no localnet process was running from {}", layout.home().display());
            print_names(global, "stopped", &stopped, &none);
            Ok(ExitCode::SUCCESS)
        }
        Action::Start { only, timeout } => {
            let started = match only {
                Some(Target::Party(e)) => localnet::start_parties(&layout, Some(e), &progress)?,
                Some(Target::Node(i)) => {
                    localnet::start(&layout, Some(i), Duration::from_secs(timeout), &progress)?
                }
                None => localnet::start(&layout, None, Duration::from_secs(timeout), &progress)?,
            };
            print_names(global, "started", &started, "already running: nothing to start");
            Ok(ExitCode::SUCCESS)
        }
        Action::Stop { target: Target::Party(e) } => {
            let stopped = localnet::stop_party(&layout, e, Duration::from_secs(10))?;
            print_names(global, "stopped", &stopped, &format!("{e} was not running"));
            Ok(ExitCode::SUCCESS)
        }
        Action::Stop { target: Target::Node(index) } => {
            let stopped = localnet::stop(&layout, index, Duration::from_secs(10))?;
            print_names(global, "stopped", &stopped, &format!("node {index} was not running"));
            Ok(ExitCode::SUCCESS)
        }
        Action::Reset { index } => {
            let removed = localnet::reset(&layout, index)?;
            if global.json {
                println!("{}", serde_json::json!({ "node": index, "removed": removed }));
            } else {
                match removed {
                    Some(path) => println!(
                        "removed {}: `lemal localnet start {index}` replays the chain to it",
                        path.display()
                    ),
                    None => println!("node {index} has no application state to remove"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Status => status(&layout, global),
        Action::Logs { lines, follow, only } => {
            let files = localnet::log_files(&layout, only)?;
            match show_logs(&files, lines, follow) {
                // The reader went away (e.g. `| head`): nothing left to show.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                other => other.map(|()| ExitCode::SUCCESS).map_err(Into::into),
            }
        }
    }
}

/// Print the last `lines` of each file; with `follow`, then whatever is appended, for ever.
fn show_logs(files: &[PathBuf], lines: usize, follow: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut offsets = Vec::with_capacity(files.len());
    for f in files {
        match localnet::tail(f, lines) {
            Ok((text, len)) => {
                writeln!(out, "==> {} <==", f.display())?;
                if !text.is_empty() {
                    writeln!(out, "{text}")?;
                }
                offsets.push(len);
            }
            Err(e) => {
                eprintln!("lemal: {e}");
                offsets.push(0);
            }
        }
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut last_shown = None;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for (i, f) in files.iter().enumerate() {
            let Ok((text, len)) = localnet::read_from(f, offsets[i]) else { continue };
            offsets[i] = len;
            if text.is_empty() {
                continue;
            }
            if last_shown != Some(i) {
                writeln!(out, "==> {} <==", f.display())?;
                last_shown = Some(i);
            }
            write!(out, "{text}")?;
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Action, Target};
    use crate::cli::{Cli, Command};

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn localnet_options_parse_beside_the_global_ones() {
        let cli = Cli::try_parse_from([
            "lemal",
            "--node",
            "http://127.0.0.1:46657",
            "localnet",
            "logs",
            "2",
            "-n",
            "5",
            "-f",
        ])
        .expect("parses");
        assert_eq!(cli.global.node, "http://127.0.0.1:46657");
        let Command::Localnet { action: Action::Logs { lines, follow, only } } = cli.command else {
            panic!("not logs")
        };
        assert_eq!((lines, follow, only), (5, true, Some(2)));
        let cli = Cli::try_parse_from(["lemal", "localnet", "up", "--base-port", "46656"])
            .expect("parses");
        let Command::Localnet { action: Action::Up { base_port, validators, block_time, .. } } =
            cli.command
        else {
            panic!("not up")
        };
        assert_eq!((base_port, validators, block_time), (46656, 4, 300));
    }

    #[test]
    fn start_and_stop_take_a_node_index_beside_the_global_node_option() {
        let stop = ["lemal", "--node", "http://127.0.0.1:46657", "localnet", "stop", "3"];
        let cli = Cli::try_parse_from(stop).expect("parses");
        assert_eq!(cli.global.node, "http://127.0.0.1:46657");
        let Command::Localnet { action: Action::Stop { target } } = cli.command else {
            panic!("not stop")
        };
        assert_eq!(target, Target::Node(3));
        let cli = Cli::try_parse_from(["lemal", "localnet", "stop", "dp-3"]).expect("parses");
        let Command::Localnet { action: Action::Stop { target } } = cli.command else {
            panic!("not stop")
        };
        assert_eq!(target, Target::Party(lemal_contracts::ids::EntityId::dp(3)));
        assert!(Cli::try_parse_from(["lemal", "localnet", "stop", "vn"]).is_err());
        assert!(Cli::try_parse_from(["lemal", "localnet", "stop"]).is_err(), "stop needs I");
        let cli =
            Cli::try_parse_from(["lemal", "--node", "http://127.0.0.1:1", "localnet", "start"])
                .expect("parses");
        let Command::Localnet { action: Action::Start { only, timeout } } = cli.command else {
            panic!("not start")
        };
        assert_eq!((only, timeout), (None, 60));
        let cli = Cli::try_parse_from(["lemal", "localnet", "start", "2", "--timeout", "5"])
            .expect("parses");
        let Command::Localnet { action: Action::Start { only, timeout } } = cli.command else {
            panic!("not start")
        };
        assert_eq!((only, timeout), (Some(Target::Node(2)), 5));
    }

    #[test]
    fn reset_takes_the_index_of_the_node_to_rebuild() {
        let cli = Cli::try_parse_from(["lemal", "localnet", "reset", "1"]).expect("parses");
        let Command::Localnet { action: Action::Reset { index } } = cli.command else {
            panic!("not reset")
        };
        assert_eq!(index, 1);
        assert!(Cli::try_parse_from(["lemal", "localnet", "reset"]).is_err(), "reset needs I");
    }
}
