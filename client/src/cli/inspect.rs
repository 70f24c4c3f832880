//! `lemal block | proofs | bitmap | verify | audit`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::Global;

/// Which skipblock to show.
#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// The latest skipblock.
    Latest,
    /// A skipblock by index, hash or query id.
    Get {
        /// Its index.
        #[arg(long, conflicts_with_all = ["hash", "query"])]
        index: Option<u64>,
        /// Its hash (hex).
        #[arg(long, conflicts_with = "query")]
        hash: Option<String>,
        /// The query it records.
        #[arg(long)]
        query: Option<String>,
    },
}

/// `lemal block`.
pub fn block(_which: BlockCmd, _global: &Global) -> Result<ExitCode> {
    bail!("lemal block is not available yet")
}

/// `lemal proofs ID`.
pub fn proofs(_id: &str, _global: &Global) -> Result<ExitCode> {
    bail!("lemal proofs is not available yet")
}

/// `lemal bitmap ID`.
pub fn bitmap(_id: &str, _global: &Global) -> Result<ExitCode> {
    bail!("lemal bitmap is not available yet")
}

/// `lemal verify ID`.
pub fn verify(_id: &str, _global: &Global) -> Result<ExitCode> {
    bail!("lemal verify is not available yet")
}

/// `lemal audit ID`.
pub fn audit(_id: &str, _global: &Global) -> Result<ExitCode> {
    bail!("lemal audit is not available yet")
}
