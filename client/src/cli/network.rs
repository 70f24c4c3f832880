//! `lemal network generate`: the folders of a network whose validators and parties run on
//! machines of their own, written by [`crate::network`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::{emit, Global};
use crate::localnet::{self, Layout};
use crate::network::{self, Host, NetworkOptions};

/// Network actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Write one folder per validator (CometBFT home with external address and persistent
    /// peers, genesis, its key, a start script) and one per computing node and data provider
    /// (its key, a start script), to copy to the machines that run them.
    #[command(after_help = "Examples:\n  \
        lemal network generate --hosts 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4 --out net\n  \
        scp -r net/node0 10.0.0.1:lemal && ssh 10.0.0.1 lemal/start.sh     # on each host\n  \
        lemal --node http://10.0.0.1:26657 --genesis net/genesis.json query submit --via URL")]
    Generate {
        /// One host per validator, comma-separated: IPv4 addresses or DNS names as the other
        /// nodes reach them (a host named twice runs two nodes, 100 ports apart).
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<Host>,
        /// The output folder (must not exist or be empty) [default: HOME/network].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The address every node listens on instead of its host's own (0.0.0.0 behind a NAT).
        #[arg(long, value_name = "ADDR")]
        bind: Option<Host>,
        /// Data providers in the roster.
        #[arg(long, default_value_t = 12)]
        dps: u32,
        /// Computing nodes in the roster.
        #[arg(long, default_value_t = 6)]
        cns: u32,
        /// The chain id.
        #[arg(long, default_value = "lemal")]
        chain_id: String,
        /// Target block time in milliseconds (CometBFT's timeout_commit).
        #[arg(long, default_value_t = 1000)]
        block_time: u64,
        /// The p2p port of the first node on each host; RPC is this + 1, CometBFT's metrics
        /// + 4, lemal-vn's metrics + 5.
        #[arg(long, default_value_t = localnet::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Seed of the synthetic data of data providers whose folder holds no data.csv.
        #[arg(long, default_value_t = 0)]
        data_seed: u64,
        /// A CometBFT v0.38.25 binary to make the validators' keys with (default:
        /// HOME/bin/cometbft, else `cometbft` on the PATH, else installed with `go install`).
        #[arg(long, env = "LEMAL_COMETBFT")]
        cometbft: Option<PathBuf>,
    },
}

/// Run a network action.
pub fn run(action: Action, global: &Global) -> Result<ExitCode> {
    let Action::Generate {
        hosts,
        out,
        bind,
        dps,
        cns,
        chain_id,
        block_time,
        base_port,
        data_seed,
        cometbft,
    } = action;
    let layout = Layout::new(&global.home)?;
    let out = out.unwrap_or_else(|| layout.home().join("network"));
    network::check_out(&out)?;
    let progress = |m: &str| eprintln!("{m}");
    let cometbft = localnet::ensure_cometbft(&layout, cometbft.as_deref(), &progress)?;
    let opts = NetworkOptions {
        hosts,
        bind,
        dps,
        cns,
        chain_id,
        block_time_ms: block_time,
        base_port,
        data_seed,
    };
    let net = network::generate(&out, &opts, &cometbft)?;
    emit(global, &net, || {
        let mut text = format!(
            "network {} in {}: {} validators, {} computing nodes, {} data providers\n",
            net.chain_id,
            out.display(),
            net.nodes.len(),
            cns,
            dps
        );
        for node in &net.nodes {
            text += &format!(
                "  {}/  {} on {}  (p2p {}, rpc {})\n",
                node.name, node.vn, node.host, node.ports.p2p, node.rpc
            );
        }
        text += &format!(
            "  parties/  {}\n\
             Copy each folder to its machine and run its start.sh (CometBFT v{} and lemal-vn, or \
             lemal, on the PATH).\nQueriers pin the chain with --genesis {}.\n",
            net.parties.iter().map(|p| p.entity.to_string()).collect::<Vec<_>>().join(" "),
            net.cometbft_version,
            out.join("genesis.json").display()
        );
        text
    })?;
    Ok(ExitCode::SUCCESS)
}
