//! Criterion benchmarks of the four proof contracts and of the baselines their costs are
//! judged against: a vartime Ristretto multiscalar multiplication of 1024 points and plain
//! aggregated Bulletproofs.
//!
//! `verify` always starts from the proof bytes (strict decoding, then verification), as a
//! verifying node does. Sample sizes are small so that `cargo bench -p lemal-contracts` ends in a
//! few minutes on two cores; `contracts/examples/proof-costs.rs` gives the medians of the report.

// A measurement tool, not consensus code: criterion reads the wall clock.
#![allow(clippy::disallowed_methods)]

// The report also verifies decoded proofs; the benches only verify from bytes.
#[allow(dead_code)]
mod fixtures;

use std::cell::OnceCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use fixtures::{Aggregation, Case, KeySwitch, Msm, PlainBulletproof, Range, Shuffle};

/// A group with few samples and short measurements. Flat sampling (the same number of
/// iterations in every sample) lets the slowest proofs, a third of a second each, fit ten
/// samples in the measurement time.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group
}

fn baselines(c: &mut Criterion) {
    let mut group = group(c, "baseline");
    let msm = OnceCell::new();
    group.bench_function("msm_vartime_1024", |b| {
        let msm = msm.get_or_init(|| Msm::new(1024));
        b.iter(|| msm.run());
    });
    for parties in [2, 16] {
        let plain = OnceCell::new();
        group.bench_function(format!("bulletproofs_verify_n32_m{parties}"), |b| {
            let plain = plain.get_or_init(|| PlainBulletproof::new(32, parties));
            b.iter(|| plain.verify().expect("the plain Bulletproof verifies"));
        });
    }
    group.finish();
}

/// Benchmark proving and verifying (from bytes) the case `build` makes, labelled `size`. The
/// case is built once, and only if one of the two benchmarks is selected.
fn prove_and_verify<C: Case>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    size: &str,
    build: impl Fn() -> C,
) {
    let case = OnceCell::new();
    group.bench_function(format!("prove_{size}"), |b| {
        let case = case.get_or_init(&build);
        let mut rng = fixtures::rng();
        b.iter(|| case.prove(&mut rng));
    });
    verify(group, size, &case, build);
}

/// Benchmark verifying (from bytes) the case `build` makes, unless `case` holds it already.
fn verify<C: Case>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    size: &str,
    case: &OnceCell<C>,
    build: impl Fn() -> C,
) {
    group.bench_function(format!("verify_{size}"), |b| {
        let case = case.get_or_init(&build);
        b.iter(|| black_box(case.verify_bytes()).expect("the fixture's proof verifies"));
    });
}

fn range(c: &mut Criterion) {
    let mut group = group(c, "range");
    prove_and_verify(&mut group, "32x1", || Range::new(32, 1));
    prove_and_verify(&mut group, "32x8", || Range::new(32, 8));
    group.finish();
}

fn aggregation(c: &mut Criterion) {
    let mut group = group(c, "aggregation");
    prove_and_verify(&mut group, "12", || Aggregation::new(12, 2));
    group.finish();
}

fn shuffle(c: &mut Criterion) {
    let mut group = group(c, "shuffle");
    prove_and_verify(&mut group, "100x1", || Shuffle::new(100, 1));
    verify(&mut group, "1000x1", &OnceCell::new(), || Shuffle::new(1000, 1));
    group.finish();
}

fn keyswitch(c: &mut Criterion) {
    let mut group = group(c, "keyswitch");
    prove_and_verify(&mut group, "2", || KeySwitch::new(2));
    prove_and_verify(&mut group, "100", || KeySwitch::new(100));
    group.finish();
}

/// The function `criterion_group!` defines cannot carry a doc comment, so it lives in a private
/// module.
mod groups {
    use super::{aggregation, baselines, keyswitch, range, shuffle};

    criterion::criterion_group!(benches, baselines, range, aggregation, shuffle, keyswitch);
}

criterion_main!(groups::benches);
