//! `lemal run`: one query end to end against a running network.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::Global;

/// Options of `lemal run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The query.
    #[arg(long, default_value = "SELECT avg(x) FROM y WHERE z < 321")]
    pub query: String,
    /// Data providers taking part (the first N of the roster).
    #[arg(long, default_value_t = 12)]
    pub dps: u32,
    /// Computing nodes taking part (the first N of the roster).
    #[arg(long, default_value_t = 6)]
    pub cns: u32,
    /// Rows per data provider (synthetic data).
    #[arg(long, default_value_t = 100)]
    pub rows: u32,
    /// Noise scale for differential privacy (0: no noise, the result is exact).
    #[arg(long, default_value_t = 0)]
    pub noise: u32,
    /// Share of proofs each verifying node checks, in parts per million.
    #[arg(long, default_value_t = 400_000)]
    pub threshold: u32,
    /// Make one party cheat: `dp-N`, or `cn-N:aggregation|shuffle|keyswitch`.
    #[arg(long)]
    pub cheat: Option<String>,
    /// Folder of CSV files `dp-N.csv` to use instead of synthetic data.
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
}

/// Run a query.
pub fn run(_args: RunArgs, _global: &Global) -> Result<ExitCode> {
    bail!("lemal run is not available yet")
}
