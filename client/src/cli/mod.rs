//! The `lemal` command line: argument parsing and dispatch. Each command lives in its own
//! module; every command takes `--node` and `--json`, prints progress on stderr and one
//! document on stdout with `--json`, and exits 0 only on success.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub mod inspect;
pub mod localnet;
pub mod run;

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
    },
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Localnet { action } => localnet::run(action, &cli.global),
        Command::Run(args) => run::run(args, &cli.global),
        Command::Block { which } => inspect::block(which, &cli.global),
        Command::Proofs { id } => inspect::proofs(&id, &cli.global),
        Command::Bitmap { id } => inspect::bitmap(&id, &cli.global),
        Command::Verify { id } => inspect::verify(&id, &cli.global),
        Command::Audit { id } => inspect::audit(&id, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lemal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
