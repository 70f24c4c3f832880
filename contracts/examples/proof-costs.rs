//! The proof-cost report of the protocol crate: single-threaded median prove and verify times
//! and proof sizes of the four contracts, next to the baselines their targets are stated in.
//!
//! ```text
//! cargo run --release -p lemal-contracts --example proof-costs -- [--json] [--quick]
//! ```
//!
//! `verify_us` is what a verifying node pays for a proof it reads from the ledger: strict
//! decoding plus verification. `verify_only_us` leaves the decoding out. Every repetition
//! measures the baselines right next to the proof, so that noise on the machine hits both: each
//! row carries the MSM cost measured alongside it (`msm_us_per_point_1024`), which its target
//! is checked against, and `baselines` gives the median over the whole run. Without `--json`
//! the report is a table that says whether each target is met; `--quick` takes fewer
//! repetitions.

// A measurement tool, not consensus code: it reads the wall clock.
#![allow(clippy::disallowed_methods)]

#[path = "../benches/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use fixtures::{Aggregation, Case, KeySwitch, Msm, PlainBulletproof, Range, Shuffle};
use serde::Serialize;

/// Repetitions of every measurement in a full run and with `--quick`.
const REPETITIONS: usize = 25;
const QUICK_REPETITIONS: usize = 5;
/// Points of the baseline multiscalar multiplication.
const MSM_POINTS: usize = 1024;

/// Microseconds taken by `f`.
fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    black_box(f());
    start.elapsed().as_secs_f64() * 1e6
}

/// The median of `samples` (NaN if there is none).
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}

/// `us` rounded to a tenth of a microsecond, the precision of the report.
fn tenths(us: f64) -> f64 {
    (us * 10.0).round() / 10.0
}

/// `us` rounded to a thousandth of a microsecond, the precision of per-point costs.
fn thousandths(us: f64) -> f64 {
    (us * 1000.0).round() / 1000.0
}

/// The measured costs of one proof size, in the field order of the JSON report.
#[derive(Serialize)]
struct Row {
    kind: &'static str,
    size: String,
    prove_us: f64,
    verify_us: f64,
    verify_only_us: f64,
    bytes: usize,
    /// The baseline MSM cost per point, measured in the same rounds as this row.
    msm_us_per_point_1024: f64,
    /// The plain Bulletproof verification of the same shape (range proofs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_verify_us: Option<f64>,
}

/// The JSON report.
#[derive(Serialize)]
struct Report<'a> {
    baselines: Baselines,
    proofs: &'a [Row],
}

/// The costs the targets are stated in.
#[derive(Serialize)]
struct Baselines {
    msm_us_per_point_1024: f64,
}

/// Measure `case` for `repetitions` rounds. Each round times the baseline multiscalar
/// multiplication (its cost per point also goes to `msm_samples`), the plain Bulletproof if
/// given, verification from bytes, verification alone and proving, one right after the other.
fn measure(
    case: &dyn Case,
    plain: Option<&PlainBulletproof>,
    msm: &Msm,
    msm_samples: &mut Vec<f64>,
    repetitions: usize,
) -> Row {
    let mut rng = fixtures::rng();
    let (mut msm_per_point, mut baseline, mut verify, mut verify_only, mut prove) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // One round first that is not counted, to warm caches and lazily built generators.
    for round in 0..=repetitions {
        let msm_us = time(|| msm.run());
        let plain_us = plain.map(|p| time(|| p.verify().expect("the plain Bulletproof verifies")));
        let verify_us = time(|| case.verify_bytes().expect("the fixture's proof verifies"));
        let verify_only_us = time(|| case.verify_decoded().expect("the fixture's proof verifies"));
        let prove_us = time(|| case.prove(&mut rng));
        if round > 0 {
            msm_per_point.push(msm_us / msm.size() as f64);
            baseline.extend(plain_us);
            verify.push(verify_us);
            verify_only.push(verify_only_us);
            prove.push(prove_us);
        }
    }
    msm_samples.extend(&msm_per_point);
    Row {
        kind: case.kind(),
        size: case.size(),
        prove_us: tenths(median(prove)),
        verify_us: tenths(median(verify)),
        verify_only_us: tenths(median(verify_only)),
        bytes: case.bytes().len(),
        msm_us_per_point_1024: thousandths(median(msm_per_point)),
        baseline_verify_us: plain.map(|_| tenths(median(baseline))),
    }
}

/// A target of the report: the bound on verification time, and whether it holds.
struct Target {
    description: String,
    met: bool,
}

/// The target `row` is held to, if any, checked against the baselines measured with it.
fn target(row: &Row) -> Option<Target> {
    let msm_us_per_point = row.msm_us_per_point_1024;
    match (row.kind, row.size.as_str()) {
        ("range", _) => {
            let baseline = row.baseline_verify_us?;
            let bound = 1.2 * baseline + 300.0;
            Some(Target {
                description: format!("verify ≤ 1.2·{baseline:.0} + 300 = {bound:.0} µs"),
                met: row.verify_us <= bound,
            })
        }
        ("shuffle", "1000x1") => {
            let bound = 25.0 * msm_us_per_point * 1000.0;
            Some(Target {
                description: format!("verify ≤ 25·1000 MSM points = {bound:.0} µs, ≤ 330000 B"),
                met: row.verify_us <= bound && row.bytes <= 330_000,
            })
        }
        ("keyswitch", "100") => {
            let bound = 12.0 * msm_us_per_point * 100.0;
            Some(Target {
                description: format!("verify ≤ 12·100 MSM points = {bound:.0} µs"),
                met: row.verify_us <= bound,
            })
        }
        _ => None,
    }
}

fn print_json(rows: &[Row], msm_us_per_point: f64) -> serde_json::Result<()> {
    let report =
        Report { baselines: Baselines { msm_us_per_point_1024: msm_us_per_point }, proofs: rows };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn print_table(rows: &[Row], msm_us_per_point: f64) {
    println!(
        "vartime Ristretto MSM of {MSM_POINTS} points: {msm_us_per_point:.3} µs per point \
         (median of the run; each row's target uses the MSM timed alongside it)\n"
    );
    println!(
        "{:<12} {:>7} {:>10} {:>10} {:>12} {:>8} {:>10} {:>12}  target",
        "kind", "size", "prove µs", "verify µs", "verify-only", "bytes", "MSM µs/pt", "baseline µs"
    );
    for row in rows {
        let baseline = row.baseline_verify_us.map_or("-".to_owned(), |b| format!("{b:.0}"));
        let target = match target(row) {
            Some(t) => format!("{} {}", if t.met { "met" } else { "MISSED" }, t.description),
            None => "-".to_owned(),
        };
        println!(
            "{:<12} {:>7} {:>10.0} {:>10.0} {:>12.0} {:>8} {:>10.3} {:>12}  {}",
            row.kind,
            row.size,
            row.prove_us,
            row.verify_us,
            row.verify_only_us,
            row.bytes,
            row.msm_us_per_point_1024,
            baseline,
            target
        );
    }
}

fn main() -> ExitCode {
    let (mut json, mut quick) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--quick" => quick = true,
            other => {
                eprintln!("unknown argument {other:?}; usage: proof-costs [--json] [--quick]");
                return ExitCode::FAILURE;
            }
        }
    }
    let repetitions = if quick { QUICK_REPETITIONS } else { REPETITIONS };

    let msm = Msm::new(MSM_POINTS);
    let mut msm_samples = Vec::new();
    let mut rows = Vec::new();
    for (bits, values) in [(32, 1), (32, 8)] {
        let case = Range::new(bits, values);
        let plain = PlainBulletproof::new(case.bits(), case.parties());
        rows.push(measure(&case, Some(&plain), &msm, &mut msm_samples, repetitions));
    }
    let cases: Vec<Box<dyn Case>> = vec![
        Box::new(Aggregation::new(12, 2)),
        Box::new(Shuffle::new(100, 1)),
        Box::new(Shuffle::new(1000, 1)),
        Box::new(KeySwitch::new(2)),
        Box::new(KeySwitch::new(100)),
    ];
    for case in &cases {
        rows.push(measure(case.as_ref(), None, &msm, &mut msm_samples, repetitions));
    }
    let msm_us_per_point = thousandths(median(msm_samples));

    if json {
        if let Err(err) = print_json(&rows, msm_us_per_point) {
            eprintln!("cannot encode the report: {err}");
            return ExitCode::FAILURE;
        }
    } else {
        print_table(&rows, msm_us_per_point);
    }
    ExitCode::SUCCESS
}
