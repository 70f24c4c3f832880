//! Data providers' tables: synthetic from a seed, or CSV files; and the local aggregates a data
//! provider encrypts for a query.

use std::path::Path;

use lemal_contracts::proofs::range::Bounds;
use lemal_contracts::tx::Operation;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::sql::Query;

/// A table of integer columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<i64>>,
}

/// Why a dataset is unusable for a query.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CSV is malformed.
    #[error("{0}")]
    Csv(String),
    /// A column the query needs is missing.
    #[error("column {0:?} is not in the table")]
    MissingColumn(String),
    /// A value or the row count is outside the query's public bounds.
    #[error("{0}")]
    OutOfBounds(String),
}

/// The public shape of the data every provider promises: value range and maximum row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataBounds {
    /// Smallest value of the aggregated column.
    pub min: i64,
    /// Largest value of the aggregated column.
    pub max: i64,
    /// Most rows one provider holds.
    pub rows: u32,
}

impl DataBounds {
    /// The public bounds of each value a provider encrypts for `op`.
    pub fn value_bounds(&self, op: Operation) -> Vec<Bounds> {
        let r = i64::from(self.rows);
        let sum = Bounds { lo: r * self.min.min(0), hi: r * self.max.max(0) };
        let count = Bounds { lo: 0, hi: r };
        let sq = self.min.abs().max(self.max.abs());
        let sumsq = Bounds { lo: 0, hi: r * sq * sq };
        match op {
            Operation::Sum => vec![sum],
            Operation::Count => vec![count],
            Operation::Avg => vec![sum, count],
            Operation::Variance => vec![sum, sumsq, count],
        }
    }

    /// The smallest range-proof bit size that covers every bound.
    pub fn range_bits(&self, op: Operation) -> u8 {
        let widest = self
            .value_bounds(op)
            .iter()
            .map(|b| i128::from(b.hi) - i128::from(b.lo))
            .max()
            .unwrap_or(0);
        [8u8, 16, 32, 64].into_iter().find(|&n| widest < 1i128 << n).unwrap_or(64)
    }
}

impl Dataset {
    /// A synthetic table with columns `value_column` (uniform in the bounds) and
    /// `filter_column` (uniform in 0..=1000), `rows` rows, deterministic in `seed`.
    pub fn synthetic(
        seed: u64,
        value_column: &str,
        filter_column: &str,
        rows: u32,
        bounds: &DataBounds,
    ) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let span = u64::try_from(bounds.max - bounds.min).unwrap_or(0) + 1;
        let rows = (0..rows)
            .map(|_| {
                let v = bounds.min + i64::try_from(rng.next_u64() % span).unwrap_or(0);
                let f = i64::try_from(rng.next_u64() % 1001).unwrap_or(0);
                vec![v, f]
            })
            .collect();
        Dataset { columns: vec![value_column.into(), filter_column.into()], rows }
    }

    /// Read a CSV file: a header of column names, then rows of integers.
    pub fn from_csv(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DataError::Io { path: path.display().to_string(), source })?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines
            .next()
            .ok_or_else(|| DataError::Csv(format!("{}: empty file", path.display())))?;
        let columns: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
        let rows = lines
            .enumerate()
            .map(|(i, line)| {
                let row: Vec<i64> = line
                    .split(',')
                    .map(|v| v.trim().parse::<i64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        DataError::Csv(format!("{} line {}: {e}", path.display(), i + 2))
                    })?;
                if row.len() != columns.len() {
                    return Err(DataError::Csv(format!(
                        "{} line {}: {} fields, header has {}",
                        path.display(),
                        i + 2,
                        row.len(),
                        columns.len()
                    )));
                }
                Ok(row)
            })
            .collect::<Result<_, _>>()?;
        Ok(Dataset { columns, rows })
    }

    fn column(&self, name: &str) -> Result<usize, DataError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DataError::MissingColumn(name.into()))
    }

    /// The values this provider encrypts for `query`: its local sum, count, sum of squares as the
    /// operation needs, over the rows that pass the filter. Checks the public bounds.
    pub fn local_values(&self, query: &Query, bounds: &DataBounds) -> Result<Vec<i64>, DataError> {
        if self.rows.len() > bounds.rows as usize {
            return Err(DataError::OutOfBounds(format!(
                "{} rows, the query allows {}",
                self.rows.len(),
                bounds.rows
            )));
        }
        let value = if query.column == "*" { None } else { Some(self.column(&query.column)?) };
        let filter = match &query.filter {
            Some(f) => Some((self.column(&f.column)?, f.cmp, f.value)),
            None => None,
        };
        let (mut sum, mut sumsq, mut count) = (0i64, 0i64, 0i64);
        for row in &self.rows {
            if let Some((c, cmp, v)) = filter {
                if !cmp.holds(row[c], v) {
                    continue;
                }
            }
            if let Some(c) = value {
                let x = row[c];
                if x < bounds.min || x > bounds.max {
                    return Err(DataError::OutOfBounds(format!(
                        "value {x} outside [{}, {}]",
                        bounds.min, bounds.max
                    )));
                }
                sum += x;
                sumsq += x * x;
            }
            count += 1;
        }
        Ok(match query.operation {
            Operation::Sum => vec![sum],
            Operation::Count => vec![count],
            Operation::Avg => vec![sum, count],
            Operation::Variance => vec![sum, sumsq, count],
        })
    }
}

/// The aggregate's answer from its summed components (sum, count, sum of squares as the
/// operation defines them). `None` when it is undefined (no rows).
pub fn answer(op: Operation, totals: &[i64]) -> Option<f64> {
    match (op, totals) {
        (Operation::Sum | Operation::Count, [x]) => Some(*x as f64),
        (Operation::Avg, [s, c]) if *c != 0 => Some(*s as f64 / *c as f64),
        (Operation::Variance, [s, ss, c]) if *c != 0 => {
            let mean = *s as f64 / *c as f64;
            Some(*ss as f64 / *c as f64 - mean * mean)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse;

    #[test]
    fn local_values_follow_the_filter_and_operation() {
        let d = Dataset {
            columns: vec!["x".into(), "z".into()],
            rows: vec![vec![10, 5], vec![20, 500], vec![30, 100]],
        };
        let b = DataBounds { min: 0, max: 100, rows: 10 };
        let q = parse("SELECT avg(x) FROM y WHERE z < 321").expect("query");
        assert_eq!(d.local_values(&q, &b).expect("values"), vec![40, 2]);
        let q = parse("SELECT variance(x) FROM y").expect("query");
        assert_eq!(d.local_values(&q, &b).expect("values"), vec![60, 1400, 3]);
        assert_eq!(answer(Operation::Variance, &[60, 1400, 3]), Some(1400.0 / 3.0 - 400.0));
        let q = parse("SELECT sum(w) FROM y").expect("query");
        assert!(matches!(d.local_values(&q, &b), Err(DataError::MissingColumn(_))));
        let small = DataBounds { rows: 2, ..b };
        assert!(matches!(d.local_values(&q, &small), Err(DataError::OutOfBounds(_))));
    }

    #[test]
    fn bounds_cover_the_worst_case_and_pick_bits() {
        let b = DataBounds { min: 0, max: 1000, rows: 100 };
        assert_eq!(b.value_bounds(Operation::Variance)[1], Bounds { lo: 0, hi: 100_000_000 });
        assert_eq!(b.range_bits(Operation::Avg), 32);
        assert_eq!(DataBounds { min: 0, max: 2, rows: 10 }.range_bits(Operation::Sum), 8);
    }

    #[test]
    fn synthetic_data_is_deterministic_and_in_bounds() {
        let b = DataBounds { min: -5, max: 5, rows: 50 };
        let a = Dataset::synthetic(1, "x", "z", 50, &b);
        assert_eq!(a, Dataset::synthetic(1, "x", "z", 50, &b));
        assert!(a.rows.iter().all(|r| (-5..=5).contains(&r[0]) && (0..=1000).contains(&r[1])));
    }
}
