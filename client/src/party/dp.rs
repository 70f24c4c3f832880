//! The data-provider daemon: it watches registrations, and for each query that names it and
//! that its policy allows, encrypts its local aggregate under the query's key and submits it
//! with its range proof.
//!
//! Its policy is its own: a minimum number of data providers per query (a small query would
//! tell too much about each provider's data), and the columns it shares. A declined query is
//! logged, counted (`lemal_party_declined_total{reason}`) and journaled; the computing nodes
//! aggregate without it once the query's data-provider deadline has passed.

use std::path::PathBuf;
use std::time::Instant;

use lemal_contracts::ids::{ProofKey, ProofKind, QueryId};
use lemal_contracts::state::{QueryRecord, Roster};
use lemal_contracts::tx::QuerySpec;

use super::{label, Daemon, PartyError};
use crate::data::{DataBounds, Dataset};
use crate::pipeline::{PartyKeys, Session};
use crate::rpc::BlockEvents;
use crate::sql::{self, Query};

/// Where a data provider's table comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A CSV file.
    Csv(PathBuf),
    /// Synthetic rows: data provider `i` draws them from seed `seed·1000003 + i`, as many as
    /// the query's public row bound, in the columns the query names (as `lemal run` does).
    Synthetic {
        /// The seed.
        seed: u64,
    },
}

/// What queries a data provider answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Fewest data providers a query must name.
    pub min_dps: usize,
    /// Columns it shares (empty: every column of its table).
    pub columns: Vec<String>,
}

/// Why a data provider declines a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    /// Too few data providers take part.
    #[error(
        "the query names {named} data providers; this provider's policy asks for at least {min}"
    )]
    TooFewProviders {
        /// Data providers the query names.
        named: usize,
        /// The policy's minimum.
        min: usize,
    },
    /// The query reads a column the provider does not share.
    #[error("the query reads column {0:?}, which this provider does not share")]
    Column(String),
    /// The query's public bounds are not this provider's.
    #[error("{0}")]
    Bounds(String),
    /// The query does not parse.
    #[error("the query's SQL does not parse: {0}")]
    Sql(String),
    /// The provider's data cannot answer it.
    #[error("{0}")]
    Data(String),
}

impl Decline {
    /// The metric label of the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Decline::TooFewProviders { .. } => "min_dps",
            Decline::Column(_) => "column",
            Decline::Bounds(_) => "bounds",
            Decline::Sql(_) => "sql",
            Decline::Data(_) => "data",
        }
    }
}

/// A data provider's configuration.
#[derive(Clone, Debug)]
pub struct DpConfig {
    /// Its keys.
    pub keys: PartyKeys,
    /// Its table.
    pub data: DataSource,
    /// Smallest value of its data (the public bound it proves).
    pub min: i64,
    /// Largest value of its data.
    pub max: i64,
    /// Its policy.
    pub policy: Policy,
    /// Submit a false range proof for every query (a demonstration of a cheating provider).
    pub cheat: bool,
    /// Read per-query cheat orders from `STATE/cheat/<query id>` (demonstrations and tests).
    pub cheat_orders: bool,
}

/// The columns a query reads: the aggregated one (none for `count(*)`) and the filter's.
fn columns_read(query: &Query) -> Vec<&str> {
    let mut out = Vec::new();
    if query.column != "*" {
        out.push(query.column.as_str());
    }
    if let Some(f) = &query.filter {
        out.push(f.column.as_str());
    }
    out
}

impl DpConfig {
    /// The data bounds behind `spec`'s public bounds, if they are this provider's value range.
    pub fn bounds_of(&self, spec: &QuerySpec) -> Result<DataBounds, Decline> {
        let comp = spec.bounds.last().ok_or_else(|| Decline::Bounds("no bounds".into()))?;
        let rows = match spec.operation {
            lemal_contracts::tx::Operation::Sum => {
                if self.max <= 0 {
                    return Err(Decline::Bounds("a sum over values at most 0".into()));
                }
                comp.hi / self.max
            }
            // The count is the last component of count, avg and variance.
            _ => comp.hi,
        };
        let rows = u32::try_from(rows)
            .map_err(|_| Decline::Bounds(format!("row bound {rows} is out of range")))?;
        let bounds = DataBounds { min: self.min, max: self.max, rows };
        if bounds.value_bounds(spec.operation) != spec.bounds
            || bounds.range_bits(spec.operation) != spec.range_bits
        {
            return Err(Decline::Bounds(format!(
                "the query's public bounds are not those of values in {}..={} over at most {rows} rows",
                self.min, self.max
            )));
        }
        Ok(bounds)
    }

    /// The values this provider encrypts for `spec`, or why it declines.
    pub fn answer(&self, spec: &QuerySpec) -> Result<Vec<i64>, Decline> {
        if spec.dps.len() < self.policy.min_dps {
            return Err(Decline::TooFewProviders {
                named: spec.dps.len(),
                min: self.policy.min_dps,
            });
        }
        let query = sql::parse(&spec.sql).map_err(|e| Decline::Sql(e.to_string()))?;
        if !self.policy.columns.is_empty() {
            if let Some(c) = columns_read(&query)
                .into_iter()
                .find(|c| !self.policy.columns.iter().any(|s| s == c))
            {
                return Err(Decline::Column(c.to_owned()));
            }
        }
        let bounds = self.bounds_of(spec)?;
        let dataset = match &self.data {
            DataSource::Csv(path) => {
                Dataset::from_csv(path).map_err(|e| Decline::Data(e.to_string()))?
            }
            DataSource::Synthetic { seed } => {
                let value_column = if query.column == "*" { "x" } else { query.column.as_str() };
                let filter_column = query.filter.as_ref().map_or("z", |f| f.column.as_str());
                Dataset::synthetic(
                    seed.wrapping_mul(1_000_003).wrapping_add(u64::from(self.keys.entity.index)),
                    value_column,
                    filter_column,
                    bounds.rows,
                    &bounds,
                )
            }
        };
        dataset.local_values(&query, &bounds).map_err(|e| Decline::Data(e.to_string()))
    }
}

/// The data-provider daemon's state.
#[derive(Debug)]
pub struct DataProvider {
    config: DpConfig,
    roster: Roster,
}

impl DataProvider {
    /// A data provider acting with `config` on a chain whose roster is `roster`.
    pub fn new(config: DpConfig, roster: Roster) -> Self {
        DataProvider { config, roster }
    }

    fn cheats(&self, daemon: &Daemon, q: &QueryId) -> bool {
        self.config.cheat
            || (self.config.cheat_orders
                && std::fs::read_to_string(daemon.dir.join("cheat").join(q.to_string()))
                    .is_ok_and(|s| s.split_whitespace().any(|k| k == "range")))
    }

    /// Handle one committed block: answer each registration that names this provider.
    pub fn on_block(&mut self, daemon: &mut Daemon, block: &BlockEvents) -> Result<(), PartyError> {
        let registered: Vec<QueryId> =
            block.of_kind("lemal.register").filter_map(|e| e.get("query")?.parse().ok()).collect();
        for q in registered {
            let Some(record) = daemon.node.query_record(&q)? else { continue };
            self.answer(daemon, &record, block.height)?;
        }
        Ok(())
    }

    fn answer(
        &mut self,
        daemon: &mut Daemon,
        record: &QueryRecord,
        height: u64,
    ) -> Result<(), PartyError> {
        let me = self.config.keys.entity;
        let reg = &record.registration;
        let q = reg.query_id;
        if !reg.spec.dps.contains(&me.index) {
            return Ok(());
        }
        let key = ProofKey { query: q, kind: ProofKind::Range, creator: me, index: 0 };
        if daemon.signed(&key) || daemon.journal.declined.contains_key(&q.to_string()) {
            return Ok(());
        }
        if daemon.node.proof(&key)?.is_some() {
            return Ok(());
        }
        let values = match self.config.answer(&reg.spec) {
            Ok(v) => v,
            Err(why) => {
                tracing::warn!(query = %q, reason = why.reason(), %why, "declined the query");
                daemon.metrics.declined.get_or_create(&label("reason", why.reason())).inc();
                daemon.journal.declined.insert(q.to_string(), why.to_string());
                return daemon.journal.save(&daemon.dir);
            }
        };
        let cheat = self.cheats(daemon, &q);
        let session = Session {
            chain_id: &daemon.chain_id,
            keys: &self.config.keys,
            roster: &self.roster,
            registration: reg,
        };
        let start = Instant::now();
        let tx = match session.range(me, &values, cheat, &mut rand_core::OsRng) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!(query = %q, error = %e, "could not build the range proof");
                daemon.metrics.declined.get_or_create(&label("reason", "proof")).inc();
                daemon.journal.declined.insert(q.to_string(), e.to_string());
                return daemon.journal.save(&daemon.dir);
            }
        };
        daemon.metrics.proved(ProofKind::Range, start);
        if cheat {
            tracing::warn!(query = %q, "submitting a false range proof (cheat)");
        }
        daemon.submit(&key, &tx, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemal_contracts::ids::EntityId;
    use lemal_contracts::sig::SigningKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn config(policy: Policy) -> DpConfig {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        DpConfig {
            keys: PartyKeys {
                entity: EntityId::dp(1),
                signing: SigningKey::random(&mut rng),
                share: None,
            },
            data: DataSource::Synthetic { seed: 0 },
            min: 0,
            max: 1000,
            policy,
            cheat: false,
            cheat_orders: false,
        }
    }

    fn spec(sql: &str, dps: u32, rows: u32) -> QuerySpec {
        let query = sql::parse(sql).expect("sql");
        let bounds = DataBounds { min: 0, max: 1000, rows };
        QuerySpec {
            sql: query.to_string(),
            operation: query.operation,
            range_bits: bounds.range_bits(query.operation),
            bounds: bounds.value_bounds(query.operation),
            dps: (0..dps).collect(),
            cns: vec![0],
            noise: lemal_contracts::tx::NoiseParams { scale: 0, rows: 0 },
        }
    }

    #[test]
    fn the_answer_is_the_one_the_one_process_run_computes() {
        let c = config(Policy::default());
        for sql in
            ["SELECT avg(x) FROM y WHERE z < 321", "SELECT sum(x) FROM t", "SELECT count(*) FROM t"]
        {
            let s = spec(sql, 4, 50);
            let query = sql::parse(sql).expect("sql");
            let bounds = c.bounds_of(&s).expect("bounds");
            assert_eq!(bounds.rows, 50, "{sql}");
            let value_column = if query.column == "*" { "x" } else { query.column.as_str() };
            let filter_column = query.filter.as_ref().map_or("z", |f| f.column.as_str());
            let expected = Dataset::synthetic(1, value_column, filter_column, 50, &bounds)
                .local_values(&query, &bounds)
                .expect("values");
            assert_eq!(c.answer(&s).expect("answer"), expected, "{sql}");
        }
    }

    #[test]
    fn the_policy_declines_small_queries_and_unshared_columns() {
        let c = config(Policy { min_dps: 5, columns: Vec::new() });
        let err = c.answer(&spec("SELECT sum(x) FROM t", 4, 10)).expect_err("too few");
        assert_eq!(err, Decline::TooFewProviders { named: 4, min: 5 });
        assert_eq!(err.reason(), "min_dps");
        assert!(c.answer(&spec("SELECT sum(x) FROM t", 5, 10)).is_ok());

        let c = config(Policy { min_dps: 0, columns: vec!["x".into()] });
        assert!(c.answer(&spec("SELECT sum(x) FROM t", 2, 10)).is_ok());
        let err = c.answer(&spec("SELECT sum(x) FROM t WHERE salary < 5", 2, 10)).expect_err("col");
        assert_eq!(err, Decline::Column("salary".into()));
    }

    #[test]
    fn bounds_that_are_not_the_providers_are_declined() {
        let c = config(Policy::default());
        let mut s = spec("SELECT sum(x) FROM t", 2, 10);
        s.bounds[0].hi += 1;
        assert_eq!(c.answer(&s).expect_err("bounds").reason(), "bounds");
        let mut s = spec("SELECT avg(x) FROM t", 2, 10);
        s.range_bits = 64;
        assert_eq!(c.answer(&s).expect_err("bits").reason(), "bounds");
    }
}
