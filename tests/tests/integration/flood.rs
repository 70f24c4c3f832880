//! Load while hostile (long; `make flood`): on a 4-validator localnet of its own (chain
//! `lemal-flood`, base port 24656 or `LEMAL_FLOOD_BASE_PORT`, 127.0.0.1 only), the report's
//! query runs three times at rest, then three times while two keyless senders flood every node
//! with the most expensive transactions a client without a key can send. Those are 8 MiB of
//! valid point encodings signed for another chain, 4 MiB of garbage, and a well-formed
//! transaction from a signer outside the roster, all refused. The flood lasts at most 60 s and
//! stops by itself.
//!
//! Measured: the median time from registration to skipblock and the median interval between
//! blocks, in each phase; the flood must keep them within 1.5× and 2× of rest.

// Not consensus code: the test measures wall-clock durations on purpose.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lemal_client::rpc::Node;
use lemal_contracts::elgamal::{Ciphertext, SecretKey};
use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
use lemal_contracts::sig::SigningKey;
use lemal_contracts::tx::{SubmitProof, Tx, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;

use super::end_to_end::{app_hashes_agree_on, bin_dir, cometbft, show_logs, Localnet, QUERY};

const VALIDATORS: usize = 4;
const RUNS: usize = 3;
const FLOOD_LIMIT: Duration = Duration::from_secs(60);

fn base_port() -> u16 {
    std::env::var("LEMAL_FLOOD_BASE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(24656)
}

fn rpc(node: usize) -> String {
    format!("http://127.0.0.1:{}", base_port() as usize + 1 + 100 * node)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Registration-to-skipblock time of one honest run, in ms.
fn run_once(net: &Localnet) -> Result<f64> {
    let node = rpc(0);
    let args = ["--node", &node, "--json", "run", "--query", QUERY, "--timeout", "120"];
    let text = net.ok(&args)?;
    let run: Value = serde_json::from_str(&text).with_context(|| format!("lemal run: {text}"))?;
    ensure!(run["result"] == run["expected"] && !run["result"].is_null(), "{run}");
    run["timings_ms"]["registration_to_skipblock"].as_f64().context("no timing")
}

/// Median interval between the block times of heights `from..=to`, in ms.
fn block_interval(from: u64, to: u64) -> Result<f64> {
    let node = Node::connect(&rpc(0))?;
    let mut times = Vec::new();
    for h in from..=to {
        times.push(node.block(h)?.header.time);
    }
    let gaps: Vec<f64> = times
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    ensure!(!gaps.is_empty(), "no blocks between {from} and {to}");
    Ok(median(gaps))
}

/// The keyless flood's transactions, built once.
fn hostile_transactions() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let key = SecretKey::random(&mut rng).public();
    let (c, _) = Ciphertext::encrypt_i64(key.point(), 1, &mut rng);
    let stranger = SigningKey::random(&mut rng);
    let body = |outputs: usize| {
        TxBody::SubmitProof(SubmitProof {
            query_id: QueryId([3; 16]),
            kind: ProofKind::Range,
            index: 0,
            inputs: Vec::new(),
            outputs: vec![c; outputs],
            proof: vec![0; 100],
        })
    };
    let foreign = Tx::sign("another-chain", EntityId::dp(0), body(130_000), &stranger, &mut rng);
    let unknown = Tx::sign("lemal-flood", EntityId::dp(999), body(1000), &stranger, &mut rng);
    vec![foreign.encode(), vec![0x11; 4 << 20], unknown.encode()]
}

#[test]
#[ignore = "long: a localnet of its own and a flood; run with `make flood`"]
fn a_keyless_flood_keeps_queries_and_blocks_within_bounds() -> Result<()> {
    let _one_at_a_time = super::end_to_end::one_localnet_at_a_time();
    let net = Localnet {
        home: tempfile::Builder::new().prefix("lemal-flood-").tempdir()?,
        bin: bin_dir()?,
    };
    let outcome = scenario(&net, &cometbft()?);
    if let Err(e) = &outcome {
        eprintln!("flood: failed: {e:#}");
        show_logs(&net);
    }
    outcome
}

fn scenario(net: &Localnet, cometbft: &std::path::Path) -> Result<()> {
    let up_args = net.up_args(cometbft, base_port(), "lemal-flood", &[]);
    let up: Vec<&str> = up_args.iter().map(String::as_str).collect();
    net.ok(&up)?;
    let height = || -> Result<u64> { Ok(Node::connect(&rpc(0))?.status()?.height) };

    let from = height()?;
    let rest: Vec<f64> = (0..RUNS).map(|_| run_once(net)).collect::<Result<_>>()?;
    let rest_interval = block_interval(from, height()?)?;

    let txs = hostile_transactions();
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let began = Instant::now();
    let (loaded, loaded_interval) = thread::scope(|scope| -> Result<(Vec<f64>, f64)> {
        for sender in 0..2 {
            let (txs, stop, sent, refused) = (&txs, &stop, &sent, &refused);
            scope.spawn(move || {
                let nodes: Vec<Node> =
                    (0..VALIDATORS).filter_map(|i| Node::connect(&rpc(i)).ok()).collect();
                let mut k = sender;
                while !stop.load(Ordering::Relaxed) && began.elapsed() < FLOOD_LIMIT {
                    let node = &nodes[k % nodes.len()];
                    let tx = txs[k % txs.len()].clone();
                    let r = node.check_tx(tx);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if r.map_or(true, |(code, _)| code != 0) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            });
        }
        let from = height()?;
        let loaded: Vec<f64> = (0..RUNS).map(|_| run_once(net)).collect::<Result<_>>()?;
        let interval = block_interval(from, height()?);
        stop.store(true, Ordering::Relaxed);
        Ok((loaded, interval?))
    })?;
    let flood = began.elapsed();
    let (sent, refused) = (sent.into_inner(), refused.into_inner());
    let query_ratio = median(loaded.clone()) / median(rest.clone());
    let block_ratio = loaded_interval / rest_interval;
    eprintln!(
        "flood: at rest: query {rest:?} ms (median {:.0}), block interval median {rest_interval:.0} \
         ms\nflood: under flood ({sent} transactions sent in {flood:?}, {refused} refused): query \
         {loaded:?} ms (median {:.0}), block interval median {loaded_interval:.0} ms\nflood: \
         ratios: query {query_ratio:.2}, block interval {block_ratio:.2}",
        median(rest.clone()),
        median(loaded.clone()),
    );
    ensure!(refused == sent, "{} of {sent} hostile transactions were accepted", sent - refused);
    let rpcs: Vec<String> = (0..VALIDATORS).map(rpc).collect();
    let agreed = app_hashes_agree_on(&rpcs)?;
    eprintln!("flood: app hashes agree at height {agreed}");
    ensure!(query_ratio <= 1.5, "the query took {query_ratio:.2}× its time at rest");
    ensure!(block_ratio <= 2.0, "blocks came {block_ratio:.2}× slower than at rest");
    net.ok(&["localnet", "down"])?;
    Ok(())
}
