//! The consensus-side cost of proof submissions: FinalizeBlock + Commit of a block of 1000 valid
//! range-proof submissions, and CheckTx of one submission, through the real ABCI handlers on a
//! real store (proof verification is not part of consensus and is not measured here).
//!
//! Alongside, as a baseline measured in the same run: decoding a submission and verifying its
//! signature alone, the floor under CheckTx.
//!
//! `cargo run --release -p lemal-app --example block-costs -- [--json] [--reps N]`

// A measurement tool: it reads the wall clock.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, RwLock};
use std::time::Instant;

use lemal_app::abci::LemalApp;
use lemal_app::store::Store;
use lemal_contracts::elgamal::{PossessionProof, SecretKey};
use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
use lemal_contracts::proofs::range::{self, Bounds};
use lemal_contracts::sig::{SigningKey, VerifyingKey};
use lemal_contracts::state::{
    cn_pop_context, CnEntry, DpEntry, GenesisState, Params, Roster, VnEntry,
};
use lemal_contracts::transcript::ProofContext;
use lemal_contracts::tx::{
    NoiseParams, Operation, QuerySpec, RegisterQuery, SubmitProof, Tx, TxBody,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{RequestCheckTx, RequestFinalizeBlock, RequestInitChain};

const CHAIN: &str = "lemal-bench";
const TXS: usize = 1000;

/// Microseconds since `start`.
fn micros(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}

/// `us` rounded to a tenth of a microsecond, the precision of the report.
fn tenths(us: f64) -> f64 {
    (us * 10.0).round() / 10.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct Fixture {
    genesis: Vec<u8>,
    register: Vec<u8>,
    submissions: Vec<Vec<u8>>,
    keys: Vec<VerifyingKey>,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let cn_sign = SigningKey::random(&mut rng);
    let share = SecretKey::random(&mut rng);
    let dps: Vec<SigningKey> = (0..TXS).map(|_| SigningKey::random(&mut rng)).collect();
    let roster = Roster {
        vns: (0..4u8)
            .map(|i| VnEntry {
                validator_address: [i; 20],
                key: SigningKey::random(&mut rng).verifying_key(),
            })
            .collect(),
        cns: vec![CnEntry {
            key: cn_sign.verifying_key(),
            share: share.public(),
            share_pop: share.prove_possession(&cn_pop_context(EntityId::cn(0)), &mut rng),
        }],
        dps: dps.iter().map(|k| DpEntry { key: k.verifying_key() }).collect(),
    };
    let genesis =
        serde_json::to_vec(&GenesisState::from_typed(&Params::default(), &roster)).expect("json");
    let query_id = QueryId([1; 16]);
    let querier = SecretKey::random(&mut rng);
    let bounds = vec![Bounds { lo: 0, hi: 100_000 }];
    let spec = QuerySpec {
        sql: "SELECT sum(x) FROM y".into(),
        operation: Operation::Sum,
        range_bits: 32,
        bounds: bounds.clone(),
        dps: (0..TXS as u32).collect(),
        cns: vec![0],
        noise: NoiseParams::NONE,
    };
    let registration = RegisterQuery {
        query_id,
        querier_key: querier.public(),
        querier_sig: PossessionProof::default(),
        spec,
        threshold_ppm: 400_000,
        dp_deadline: 500,
        proof_deadline: 1000,
        commit_window: 10,
    }
    .sign_as_querier(CHAIN, &querier, &mut rng);
    let register = Tx::sign(
        CHAIN,
        EntityId::cn(0),
        TxBody::RegisterQuery(Box::new(registration)),
        &cn_sign,
        &mut rng,
    )
    .encode();
    eprintln!("proving {TXS} range proofs ...");
    let key = *share.public().point();
    let submissions = dps
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let dp = EntityId::dp(i as u32);
            let context = ProofContext { chain_id: CHAIN.into(), query_id, prover: dp, index: 0 };
            let (st, proof) =
                range::encrypt_and_prove(context, &key, 32, &bounds, &[(i as i64) * 7], &mut rng)
                    .expect("prove");
            let body = TxBody::SubmitProof(SubmitProof {
                query_id,
                kind: ProofKind::Range,
                index: 0,
                inputs: Vec::new(),
                outputs: st.ciphertexts,
                proof: proof.to_bytes(),
            });
            Tx::sign(CHAIN, dp, body, k, &mut rng).encode()
        })
        .collect();
    let keys = dps.iter().map(SigningKey::verifying_key).collect();
    Fixture { genesis, register, submissions, keys }
}

fn finalize(app: &LemalApp, height: i64, txs: &[Vec<u8>]) {
    let r = app.finalize_block(RequestFinalizeBlock {
        txs: txs.iter().map(|t| t.clone().into()).collect(),
        height,
        ..Default::default()
    });
    assert!(r.tx_results.iter().all(|t| t.code == 0), "every submission is valid");
    app.commit();
}

/// A store at height 2: genesis, then the registration.
fn ready(f: &Fixture, dir: &std::path::Path) -> LemalApp {
    let store = Store::open(&dir.join("state.redb")).expect("store");
    let app = LemalApp::new(Arc::new(RwLock::new(store)));
    app.init_chain(RequestInitChain {
        chain_id: CHAIN.into(),
        app_state_bytes: f.genesis.clone().into(),
        initial_height: 1,
        ..Default::default()
    });
    finalize(&app, 1, &[]);
    finalize(&app, 2, std::slice::from_ref(&f.register));
    app
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let f = fixture();
    let mut per_tx = Vec::new();
    let mut check = Vec::new();
    let mut baseline = Vec::new();
    let mut decode_only = Vec::new();
    for rep in 0..reps {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = ready(&f, dir.path());
        // CheckTx of each submission against the state after registration, and right after it
        // the baselines on the same bytes: decoding alone, then decoding and verifying the
        // signature, the floor under CheckTx.
        let sample = f.submissions.iter().zip(&f.keys).skip(rep).step_by(reps.max(1) * 4);
        for (tx, key) in sample {
            let t = Instant::now();
            let r = app.check_tx(RequestCheckTx { tx: tx.clone().into(), r#type: 0 });
            check.push(micros(t));
            assert_eq!(r.code, 0, "{}", r.log);
            let t = Instant::now();
            let decoded = Tx::decode(tx).expect("decodes");
            decode_only.push(micros(t));
            decoded.verify_signature(tx, key).expect("signature");
            baseline.push(micros(t));
        }
        let t = Instant::now();
        finalize(&app, 3, &f.submissions);
        let us = micros(t) / TXS as f64;
        eprintln!("rep {rep}: {us:.1} µs per tx");
        per_tx.push(us);
    }
    let finalize_us = median(per_tx);
    let check_us = median(check);
    let baseline_us = median(baseline);
    let decode_us = median(decode_only);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "txs_per_block": TXS,
                "finalize_commit_us_per_tx": tenths(finalize_us),
                "check_tx_us": tenths(check_us),
                "baseline_decode_verify_sig_us": tenths(baseline_us),
                "baseline_decode_us": tenths(decode_us),
            })
        );
    } else {
        println!("block of {TXS} range-proof submissions");
        println!("  FinalizeBlock + Commit: {finalize_us:.1} µs per tx (target ≤ 200)");
        println!("  CheckTx:                {check_us:.1} µs (target ≤ 120)");
        println!("  decode + one signature: {baseline_us:.1} µs (baseline, same run)");
        println!("  decode alone:           {decode_us:.1} µs (baseline, same run)");
    }
}
