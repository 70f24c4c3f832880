//! The `lemal` command line: argument parsing and dispatch. Each command lives in its own
//! module; every command takes `--node` and `--json`, prints progress on stderr and one
//! document on stdout with `--json`.
//!
//! Exit codes: 0 success; 1 the check ran and found a fault (or the command failed); 2 usage
//! error; 3 the check could not run (node unreachable, no trust root, chain too young).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lemal_contracts::ids::EntityId;
use serde::Serialize;

use crate::light::LightError;
use crate::rpc::{Node, RpcError};

pub mod challenge;
pub mod inspect;
pub mod keys;
pub mod localnet;
pub mod network;
pub mod party;
pub mod query_options;
pub mod roster;
pub mod run;
mod run_report;
pub mod state;
mod submit;
pub mod trust;
pub mod tx;

/// Exit code: the check ran and found a fault, or the command failed.
pub const EXIT_FAULT: u8 = 1;
/// Exit code: the check could not run.
pub const EXIT_UNCHECKED: u8 = 3;

/// Lemal client: run private aggregate queries through the verifying nodes and audit them.
#[derive(Debug, Parser)]
#[command(name = "lemal", version)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// CometBFT RPC address of the node to talk to.
    #[arg(long, global = true, env = "LEMAL_NODE", default_value = "http://127.0.0.1:26657")]
    pub node: String,
    /// Print one machine-readable JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Folder of the localnet's generated state (homes, keys, logs, pids).
    #[arg(long, global = true, env = "LEMAL_HOME", default_value = ".lemal")]
    pub home: PathBuf,
    /// Trust root: the validators of this CometBFT genesis file.
    #[arg(
        long,
        global = true,
        env = "LEMAL_GENESIS",
        value_name = "FILE",
        conflicts_with_all = ["trusted_validators", "trusted_header"]
    )]
    pub genesis: Option<PathBuf>,
    /// Trust root: the validator set with this hash (hex), signing for LEMAL_CHAIN_ID if set.
    #[arg(
        long,
        global = true,
        env = "LEMAL_TRUSTED_VALIDATORS",
        value_name = "HASH",
        conflicts_with = "trusted_header"
    )]
    pub trusted_validators: Option<String>,
    /// Trust root: the header at HEIGHT whose hash is HASH (hex), and the validators it names.
    #[arg(long, global = true, env = "LEMAL_TRUSTED_HEADER", value_name = "HEIGHT:HASH")]
    pub trusted_header: Option<String>,
    /// The file of known chains (chain id → trust root) [default:
    /// $XDG_CONFIG_HOME/lemal/known-chains.toml, else ~/.config/lemal/known-chains.toml].
    #[arg(long, global = true, env = "LEMAL_KNOWN_CHAINS", value_name = "FILE")]
    pub known_chains: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage a local network of verifying nodes on 127.0.0.1.
    Localnet {
        /// What to do.
        #[command(subcommand)]
        action: localnet::Action,
    },
    /// Write the folders of a network whose validators and parties run on machines of their
    /// own.
    Network {
        /// What to do.
        #[command(subcommand)]
        action: network::Action,
    },
    /// Run a query end to end: data, encryption, every proof on the ledger, the verified result.
    Run(run::RunArgs),
    /// Show skipblocks.
    Block {
        /// Which block.
        #[command(subcommand)]
        which: inspect::BlockCmd,
    },
    /// List the proofs of a query.
    Proofs {
        /// The query id.
        id: String,
    },
    /// Show who verified what for a query (proof × verifying node).
    Bitmap {
        /// The query id.
        id: String,
    },
    /// Verify a query's skipblock as a light client: signed header, ICS23 proof, links, proofs root.
    Verify {
        /// The query id.
        id: String,
    },
    /// Re-verify every proof of a query locally; name wrong proofs and disagreeing verifiers.
    Audit {
        /// The query id.
        id: String,
        /// Then challenge, one after the other, every proof found wrong and every proof on which
        /// a verifying node's verdict contradicts the local verification (each once; proofs
        /// already settled are skipped).
        #[arg(long)]
        challenge: bool,
        /// With --challenge: the roster member that signs the challenges, with its key from the
        /// localnet under --home.
        #[arg(long = "as", value_name = "ENTITY", default_value = "vn-0", requires = "challenge")]
        signer: EntityId,
        /// With --challenge: seconds to wait for each challenge's block and verdict.
        #[arg(long, value_name = "SECS", default_value_t = 60, requires = "challenge")]
        timeout: u64,
    },
    /// Challenge one proof of a finalized query: every node re-verifies it and the chain records
    /// a verdict (right or wrong, who is at fault) as a skipblock.
    Challenge(challenge::ChallengeArgs),
    /// Show the roster and its standings; propose and approve roster changes as a verifying node.
    Roster {
        /// What to do.
        #[command(subcommand)]
        action: roster::Action,
    },
    /// Manage the known chains: the trust roots verification checks nodes against.
    Trust {
        /// What to do.
        #[command(subcommand)]
        action: trust::Action,
    },
    /// The parties' key files under --home: list them, show public keys, make a new party's.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: keys::Action,
    },
    /// Committed transactions: decode one by hash, with its result code's name and events.
    Tx {
        /// What to do.
        #[command(subcommand)]
        action: tx::Action,
    },
    /// Any ABCI query path (`/roster`, `/standing/cn-5`, `/query/ID/progress`, ...), its value
    /// decoded; `--prove` checks it against a verified header.
    State(state::StateArgs),
    /// Run a data provider daemon.
    Dp {
        /// What to do.
        #[command(subcommand)]
        action: party::DpAction,
    },
    /// Run a computing node daemon.
    Cn {
        /// What to do.
        #[command(subcommand)]
        action: party::CnAction,
    },
    /// The querier: submit a query through a computing node, read its verified result.
    Query {
        /// What to do.
        #[command(subcommand)]
        action: party::QueryAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Localnet { action } => localnet::run(action, &cli.global),
        Command::Network { action } => network::run(action, &cli.global),
        Command::Run(args) => run::run(args, &cli.global),
        Command::Block { which } => inspect::block(which, &cli.global),
        Command::Proofs { id } => inspect::proofs(&id, &cli.global),
        Command::Bitmap { id } => inspect::bitmap(&id, &cli.global),
        Command::Verify { id } => inspect::verify(&id, &cli.global),
        Command::Audit { id, challenge: false, .. } => inspect::audit(&id, &cli.global),
        Command::Audit { id, challenge: true, signer, timeout } => {
            let challenger = challenge::ChallengerArgs { signer, timeout };
            challenge::audit_and_challenge(&id, &challenger, &cli.global)
        }
        Command::Challenge(args) => challenge::challenge(args, &cli.global),
        Command::Roster { action } => roster::run(action, &cli.global),
        Command::Trust { action } => trust::run(action, &cli.global),
        Command::Keys { action } => keys::run(action, &cli.global),
        Command::State(args) => state::run(args, &cli.global),
        Command::Tx { action } => tx::run(action, &cli.global),
        Command::Dp { action } => party::dp(action, &cli.global),
        Command::Cn { action } => party::cn(action, &cli.global),
        Command::Query { action } => party::query(action, &cli.global),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lemal: {e:#}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// `lemal completions SHELL`: the script on stdout (a reader that stops early, like `head`, is
/// not an error).
fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lemal", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing the completion script"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The exit code of a failed command: [`EXIT_UNCHECKED`] when the check could not run (node
/// unreachable, no trust root, unusable root), else [`EXIT_FAULT`].
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<LightError>() {
            return exit_code_of_light(e);
        }
        if let Some(e) = cause.downcast_ref::<RpcError>() {
            return if e.is_inconclusive() { EXIT_UNCHECKED } else { EXIT_FAULT };
        }
        if cause.downcast_ref::<trust::NoTrustRoot>().is_some() {
            return EXIT_UNCHECKED;
        }
    }
    EXIT_FAULT
}

/// The exit code of a light-client failure.
pub fn exit_code_of_light(e: &LightError) -> u8 {
    if e.is_inconclusive() {
        EXIT_UNCHECKED
    } else {
        EXIT_FAULT
    }
}

fn connect(global: &Global) -> Result<Node> {
    Node::connect(&global.node).with_context(|| format!("cannot use node {}", global.node))
}

/// Print `value` as JSON, or the readable `text`.
fn emit<T: Serialize>(global: &Global, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if global.json {
        println!("{}", serde_json::to_string_pretty(value).context("encoding the report")?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use lemal_contracts::ids::QueryId;

    use super::*;
    use crate::light::{BlockRef, Mismatch, Missing, TrustError, TrustKind, ValidatorSetError};

    fn code(e: LightError) -> u8 {
        exit_code_of(&anyhow::Error::new(e).context("verifying"))
    }

    #[test]
    fn an_unusable_trust_root_exits_as_not_checked() {
        for e in [
            TrustError::HeaderPin { pin: "42".into() },
            TrustError::NotAHash { kind: TrustKind::Header, text: "ab".into() },
            TrustError::ServedValidators { height: 2, error: ValidatorSetError::Empty },
            TrustError::ValidatorsHashMismatch { pinned: [1; 32], served: [2; 32] },
            TrustError::StateNotBefore { trusted: 9, target: 3 },
        ] {
            assert_eq!(code(e.into()), EXIT_UNCHECKED);
        }
        assert_eq!(code(LightError::TooEarly(1)), EXIT_UNCHECKED);
    }

    #[test]
    fn a_proven_absence_exits_as_a_fault() {
        for m in
            [Missing::Roster, Missing::Query(QueryId([1; 16])), Missing::Block(BlockRef::Latest)]
        {
            assert_eq!(code(LightError::NotFound(m)), EXIT_FAULT);
        }
    }

    #[test]
    fn a_contradicting_node_exits_as_a_fault() {
        for m in [
            Mismatch::OtherBlock { asked: BlockRef::Index(3), index: 4, hash: [0; 32] },
            Mismatch::NotLatest { latest: 3, next: 4 },
            Mismatch::LastIndex,
            Mismatch::NotQueryBlock { query: QueryId([1; 16]) },
            Mismatch::ForwardLinkDangling { block: 1, level: 0, to: 2 },
            Mismatch::WalkStopsEarly { block: 1, next: 2 },
        ] {
            assert_eq!(code(m.into()), EXIT_FAULT);
        }
        let other = LightError::DifferentChain { chain_id: "c".into(), detail: "d".into() };
        assert_eq!(code(other), EXIT_FAULT);
    }
}
