//! `lemal localnet up | down | status | logs`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::Global;

/// Localnet actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Start a localnet.
    Up {
        /// Validators (verifying nodes).
        #[arg(long, default_value_t = 4)]
        validators: u32,
        /// Data providers in the roster.
        #[arg(long, default_value_t = 12)]
        dps: u32,
        /// Computing nodes in the roster.
        #[arg(long, default_value_t = 6)]
        cns: u32,
        /// Target block time in milliseconds.
        #[arg(long, default_value_t = 300)]
        block_time: u64,
    },
    /// Stop the processes the localnet started.
    Down,
    /// Height, app hash and peers per node.
    Status,
    /// Tail the logs.
    Logs,
}

/// Run a localnet action.
pub fn run(_action: Action, _global: &Global) -> Result<ExitCode> {
    bail!("lemal localnet is not available yet")
}
