//! The options a query is planned with, shared by `lemal run` and `lemal query submit`: the
//! public data bounds, the noise, the sampling threshold and the deadlines. The query text and
//! the participants stay each command's own: `lemal run` plays the parties and has defaults of
//! its own (`--query`, 12 data providers, 6 computing nodes), `lemal query submit` asks the
//! whole roster (`--sql`).

use clap::Args;

use crate::data::DataBounds;
use crate::pipeline::PlanOptions;

/// Smallest value of the aggregated column (the public bound the range proofs prove).
pub(super) const DATA_MIN: i64 = 0;

/// Largest value of the aggregated column (the public bound the range proofs prove).
pub(super) const DATA_MAX: i64 = 1000;

/// How a query is planned, besides its text and participants.
#[derive(Debug, Args)]
pub struct QueryOptions {
    /// Rows per data provider: the public bound on each provider's row count, and how many
    /// rows synthetic data holds.
    #[arg(long, default_value_t = 100)]
    pub rows: u32,
    /// Noise scale for differential privacy (0: no noise, the result is exact).
    #[arg(long, default_value_t = 0)]
    pub noise: u32,
    /// Rows of the public noise list the computing nodes shuffle (with --noise above 0).
    #[arg(long, default_value_t = 32)]
    pub noise_rows: usize,
    /// Share of proofs each verifying node checks, in parts per million.
    #[arg(long, default_value_t = 400_000)]
    pub threshold: u32,
    /// Blocks after registration within which data providers submit; an aggregation may leave
    /// out a missing data provider only after it. Must be below --proof-deadline.
    #[arg(long, default_value_t = 150)]
    pub dp_deadline: u32,
    /// Blocks after registration within which proofs are accepted.
    #[arg(long, default_value_t = 200)]
    pub proof_deadline: u32,
    /// Blocks after the proof phase within which verifying nodes commit their bitmaps.
    #[arg(long, default_value_t = 20)]
    pub commit_window: u32,
}

impl QueryOptions {
    /// The plan of a query asking the first `dps` data providers and the first `cns` computing
    /// nodes of the roster, with values in `DATA_MIN..=DATA_MAX`.
    pub fn plan_options(&self, dps: u32, cns: u32) -> PlanOptions {
        PlanOptions {
            dps: (0..dps).collect(),
            cns: (0..cns).collect(),
            bounds: DataBounds { min: DATA_MIN, max: DATA_MAX, rows: self.rows },
            noise: self.noise,
            noise_rows: self.noise_rows,
            threshold_ppm: self.threshold,
            dp_deadline: self.dp_deadline,
            proof_deadline: self.proof_deadline,
            commit_window: self.commit_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        options: QueryOptions,
    }

    #[test]
    fn flags_become_the_plan_options() {
        let cli = Cli::parse_from([
            "lemal",
            "--rows",
            "7",
            "--noise",
            "3",
            "--noise-rows",
            "16",
            "--threshold",
            "500000",
            "--dp-deadline",
            "9",
            "--proof-deadline",
            "10",
            "--commit-window",
            "4",
        ]);
        let opts = cli.options.plan_options(3, 2);
        assert_eq!((opts.dps, opts.cns), (vec![0, 1, 2], vec![0, 1]));
        assert_eq!(opts.bounds, DataBounds { min: DATA_MIN, max: DATA_MAX, rows: 7 });
        assert_eq!((opts.noise, opts.noise_rows, opts.threshold_ppm), (3, 16, 500_000));
        assert_eq!((opts.dp_deadline, opts.proof_deadline, opts.commit_window), (9, 10, 4));
    }
}
