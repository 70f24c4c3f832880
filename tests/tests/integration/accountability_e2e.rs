//! Consequences on the real localnet: an aggregation that leaves out a data provider is refused,
//! a cheating computing node is challenged, found at fault and refused in the next query, and a
//! verifying node that lies in its bitmaps is challenged and leaves CometBFT's validator set,
//! while the network goes on finalizing queries that verify from genesis across the change.

// Not consensus code: its waits are bounded by the wall clock.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lemal_client::data::{DataBounds, Dataset};
use lemal_client::localnet::{self, Layout};
use lemal_client::pipeline::{self, PlanOptions, QueryPlan, Session};
use lemal_client::rpc::Node;
use lemal_client::sql;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind};
use lemal_contracts::state::{Standing, StandingRecord};
use lemal_contracts::tx::{SubmitProof, Tx, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;

use super::end_to_end::{app_hashes_agree_on, rpc, Localnet, QUERY, VALIDATORS};

const WAIT: Duration = Duration::from_secs(30);

fn sign_and_wait(node: &Node, tx: &Tx) -> Result<(u32, String)> {
    let hash = match node.broadcast(tx) {
        Ok(hash) => hash,
        Err(lemal_client::rpc::RpcError::Rejected { code, log }) => return Ok((code, log)),
        Err(e) => return Err(e.into()),
    };
    let outcome = node.wait_tx(hash, WAIT)?;
    Ok((outcome.code, outcome.log))
}

/// A computing node that aggregates two of its three data providers while the third's range
/// proof is on the ledger is refused with code 27, on a real network.
pub(crate) fn an_aggregation_that_leaves_out_a_dp_is_refused(net: &Localnet) -> Result<()> {
    let layout = Layout::new(net.home.path())?;
    let keys = localnet::keyring(&layout)?;
    let node = Node::connect(&rpc(0))?;
    let chain = node.status()?.chain_id;
    let roster = node.roster()?;
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let bounds = DataBounds { min: 0, max: 1000, rows: 20 };
    let opts = PlanOptions {
        dps: vec![0, 1, 2],
        cns: vec![0],
        bounds,
        noise: 0,
        noise_rows: 4,
        threshold_ppm: 400_000,
        dp_deadline: 100,
        proof_deadline: 200,
        commit_window: 20,
    };
    let query = sql::parse(QUERY)?;
    let plan = pipeline::plan(&chain, query.clone(), &opts, &mut rng);
    let session = Session {
        chain_id: &chain,
        keys: &keys,
        roster: &roster,
        registration: &plan.registration,
    };
    let (code, log) = sign_and_wait(&node, &session.register(&mut rng)?)?;
    ensure!(code == 0, "registration refused: {code} {log}");
    for d in 0..3u32 {
        let data = Dataset::synthetic(900 + u64::from(d), "x", "z", bounds.rows, &bounds);
        let values = data.local_values(&plan.query, &bounds)?;
        let tx = session.range(EntityId::dp(d), &values, false, &mut rng)?;
        let (code, log) = sign_and_wait(&node, &tx)?;
        ensure!(code == 0, "range proof of dp-{d} refused: {code} {log}");
    }
    let q = plan.registration.query_id;
    hostile_transactions_on_an_open_query_are_refused(&node, &session, &plan, &keys, &mut rng)?;
    let inputs: Vec<ProofKey> = (0..2)
        .map(|d| ProofKey { query: q, kind: ProofKind::Range, creator: EntityId::dp(d), index: 0 })
        .collect();
    let mut values = Vec::new();
    for k in &inputs {
        values.push(node.proof(k)?.context("input on the ledger")?.outputs);
    }
    let sum = lemal_contracts::proofs::aggregation::aggregate(&values)?;
    let body = TxBody::SubmitProof(SubmitProof {
        query_id: q,
        kind: ProofKind::Aggregation,
        index: 0,
        inputs,
        outputs: sum,
        proof: vec![1],
    });
    let cn = EntityId::cn(0);
    let key = keys.signing_key(cn).context("cn-0's key")?;
    let tx = Tx::sign(&chain, cn, body, key, &mut rng);
    let (code, log) = sign_and_wait(&node, &tx)?;
    eprintln!("e2e: an aggregation leaving out dp-2: code {code}: {log}");
    ensure!(code == 27 && log.contains("dp-2"), "expected code 27 naming dp-2, got {code}: {log}");
    Ok(())
}

/// Transactions about a query in its proof phase that a party may not send, through RPC: each
/// refused with its code, before or in a block.
fn hostile_transactions_on_an_open_query_are_refused(
    node: &Node,
    session: &Session<'_>,
    plan: &QueryPlan,
    keys: &lemal_client::keyring::Keyring,
    rng: &mut ChaCha20Rng,
) -> Result<()> {
    let chain = session.chain_id;
    let spec = &plan.registration.spec;
    let q = plan.registration.query_id;
    let bounds = &plan.bounds;
    let values =
        Dataset::synthetic(77, "x", "z", bounds.rows, bounds).local_values(&plan.query, bounds)?;
    let sign = |signer: EntityId, body: TxBody, rng: &mut ChaCha20Rng| -> Result<Tx> {
        let key = keys.signing_key(signer).with_context(|| format!("{signer}'s key"))?;
        Ok(Tx::sign(chain, signer, body, key, rng))
    };
    let mut classes: Vec<(&str, Tx, u32)> = Vec::new();
    classes.push((
        "range proof from a DP outside the query",
        session.range(EntityId::dp(5), &values, false, rng)?,
        21,
    ));
    classes.push((
        "second range proof from one DP",
        session.range(EntityId::dp(0), &values, false, rng)?,
        22,
    ));
    let mut indexed = session.range(EntityId::dp(1), &values, false, rng)?;
    if let TxBody::SubmitProof(p) = &mut indexed.body {
        p.index = 1;
    }
    classes.push(("range proof with index 1", sign(EntityId::dp(1), indexed.body, rng)?, 21));
    let dp0 = ProofKey { query: q, kind: ProofKind::Range, creator: EntityId::dp(0), index: 0 };
    let dp0_outputs = node.proof(&dp0)?.context("dp-0's range proof")?.outputs;
    let stray = TxBody::SubmitProof(SubmitProof {
        query_id: q,
        kind: ProofKind::Aggregation,
        index: 0,
        inputs: vec![dp0],
        outputs: dp0_outputs.clone(),
        proof: vec![1],
    });
    classes.push((
        "aggregation from a CN outside the query",
        sign(EntityId::cn(1), stray, rng)?,
        21,
    ));
    let early = TxBody::SubmitProof(SubmitProof {
        query_id: q,
        kind: ProofKind::KeySwitch,
        index: 0,
        inputs: Vec::new(),
        outputs: dp0_outputs,
        proof: vec![0; spec.proof_len(ProofKind::KeySwitch)],
    });
    classes.push((
        "key switch before the root aggregation",
        sign(EntityId::cn(0), early, rng)?,
        24,
    ));
    let vn = EntityId::vn(0);
    let vn_key = keys.signing_key(vn).context("vn-0's key")?;
    let (_, vrf) = lemal_contracts::sampling::evaluate(vn_key, chain, &q, vn, &mut *rng);
    let bitmap = TxBody::CommitBitmap(lemal_contracts::tx::CommitBitmap {
        query_id: q,
        vrf,
        proofs_digest: [0; 32],
        verdicts: vec![lemal_contracts::ids::Verdict::NotSelected; spec.expected_proofs(q).len()],
    });
    classes.push(("bitmap during the proof phase", sign(vn, bitmap, rng)?, 30));
    for (name, tx, want) in classes {
        let (code, log) = sign_and_wait(node, &tx)?;
        eprintln!("e2e: hostile, open query: {name}: code {code}: {log}");
        ensure!(code == want, "{name}: code {code} ({log}), expected {want}");
    }
    Ok(())
}

fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} printed {text:?}"))
}

/// An entity's standing, asked of node 0 on a new connection (an idle one may have been closed
/// by the node).
fn standing(e: EntityId) -> Result<Option<StandingRecord>> {
    Ok(Node::connect(&rpc(0))?.get(&format!("/standing/{e}"))?)
}

/// CometBFT's validator set at the latest height, polled until it has `n` members.
fn wait_for_validators(n: usize) -> Result<usize> {
    let start = Instant::now();
    loop {
        let node = Node::connect(&rpc(0))?;
        let height = node.status()?.height;
        let count = node.validators(height)?.len();
        if count == n || start.elapsed() > WAIT {
            return Ok(count);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(crate) fn cheaters_face_consequences(net: &Localnet) -> Result<()> {
    // A cheating computing node (the last of the roster's six), every proof checked.
    let cheat =
        net.run(&["--query", QUERY, "--cheat", "cn-5:keyswitch", "--threshold", "1000000"])?;
    ensure!(cheat["cheat_detected"] == Value::Bool(true), "{cheat}");
    let id = cheat["query_id"].as_str().context("query id")?.to_owned();
    let out = net.ok(&[
        "--node",
        &rpc(1),
        "--json",
        "challenge",
        &id,
        "keyswitch/cn-5/0",
        "--as",
        "dp-0",
    ])?;
    let verdict = json(&out, "lemal challenge")?;
    eprintln!("e2e: challenge of cn-5's key switch: {verdict}");
    ensure!(verdict["valid"] == Value::Bool(false), "{verdict}");
    ensure!(verdict["at_fault"] == serde_json::json!(["cn-5"]), "{verdict}");
    let record = standing(EntityId::cn(5))?.context("cn-5 has no standing record")?;
    ensure!(record.standing == Standing::Faulty, "{record:?}");
    operator_commands_show_the_verdict(net, verdict["tx"].as_str().context("the tx hash")?)?;
    // A second challenge of the settled proof is refused.
    let again =
        net.lemal(&["--node", &rpc(1), "challenge", &id, "keyswitch/cn-5/0", "--as", "dp-1"])?;
    ensure!(!again.status.success(), "a settled proof was challenged again");
    ensure!(String::from_utf8_lossy(&again.stderr).contains("52"), "expected code 52");

    // A query with cn-5 is refused; one without it finalizes.
    let refused = net.lemal(&["--node", &rpc(0), "--json", "run", "--query", QUERY])?;
    ensure!(!refused.status.success(), "a query with the faulty cn-5 ran");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        stderr.contains("18") && stderr.contains("cn-5"),
        "expected code 18 for cn-5: {stderr}"
    );
    let without = net.run(&["--query", QUERY, "--cns", "5"])?;
    ensure!(without["result"] == without["expected"], "{without}");

    // vn-3 restarts as a liar: it inverts every verdict it computes.
    let stopped = net.ok(&["localnet", "stop", "3"])?;
    eprintln!("e2e: {stopped}");
    let started = net.lemal_with_env(
        &["localnet", "start", "3"],
        &[("LEMAL_VN_TEST_ONLY_INVERT_VERDICTS", "true")],
    )?;
    ensure!(started.status.success(), "restarting node 3 as a liar failed");
    // An honest query: the liar's 0s on right proofs make `lemal run` report a problem.
    let out = net.lemal(&["--node", &rpc(0), "--json", "run", "--query", QUERY, "--cns", "5"])?;
    let lied = json(&String::from_utf8_lossy(&out.stdout), "lemal run")?;
    ensure!(!out.status.success(), "the liar's zeros went unnoticed: {lied}");
    ensure!(lied["result"] == lied["expected"], "{lied}");
    ensure!(lied["skipblock"]["reported"].as_array().map(Vec::len) == Some(VALIDATORS), "{lied}");
    let id = lied["query_id"].as_str().context("query id")?.to_owned();
    // The audit finds vn-3's lies and challenges each disputed proof.
    let audit = net.lemal(&["--node", &rpc(0), "--json", "audit", &id, "--challenge"])?;
    eprintln!("e2e: audit --challenge: {}", String::from_utf8_lossy(&audit.stdout));
    let vn3 = standing(EntityId::vn(3))?.context("vn-3 has no standing record")?;
    ensure!(vn3.standing == Standing::Faulty, "{vn3:?}");
    let validators = wait_for_validators(VALIDATORS - 1)?;
    ensure!(validators == VALIDATORS - 1, "CometBFT has {validators} validators, expected 3");
    eprintln!("e2e: /validators shows {validators} after vn-3's exclusion");

    // The network goes on: a query finalizes with the three remaining verifiers, and its block
    // verifies from the genesis validators across the change.
    let after = net.run(&["--query", QUERY, "--cns", "5"])?;
    ensure!(after["result"] == after["expected"], "{after}");
    ensure!(
        after["skipblock"]["reported"] == serde_json::json!(["vn-0", "vn-1", "vn-2"]),
        "{after}"
    );
    let id = after["query_id"].as_str().context("query id")?.to_owned();
    let out = net.lemal(&["--node", &rpc(2), "--json", "verify", &id])?;
    let report = json(&String::from_utf8_lossy(&out.stdout), "lemal verify")?;
    ensure!(out.status.success() && report["verified"] == Value::Bool(true), "{report}");
    eprintln!("e2e: verify across the validator change: {}", report["header"]);
    let rpcs: Vec<String> = (0..VALIDATORS).map(rpc).collect();
    let height = app_hashes_agree_on(&rpcs)?;
    eprintln!("e2e: after the exclusion, app hashes agree at height {height}");
    a_new_data_provider_is_admitted_and_takes_part(net)?;
    Ok(())
}

/// `lemal tx show` of the challenge and `lemal state --prove` of the cheater's standing, on real
/// data; a path that does not exist fails.
fn operator_commands_show_the_verdict(net: &Localnet, tx: &str) -> Result<()> {
    let out = net.ok(&["--node", &rpc(2), "--json", "tx", "show", tx])?;
    let shown = json(&out, "lemal tx show")?;
    eprintln!("e2e: tx show: {shown}");
    ensure!(shown["kind"] == "challenge" && shown["code"] == 0, "{shown}");
    ensure!(shown["signer"] == "dp-0", "{shown}");
    let events = shown["events"].as_array().context("events")?;
    ensure!(events.iter().any(|e| e == "lemal.challenge.at_fault=cn-5"), "{shown}");
    // The verdict's block must be under a signed header first: its state is proven by the
    // app hash of the next block.
    let mut state = Value::Null;
    for _ in 0..20 {
        let out = net.ok(&["--node", &rpc(1), "--json", "state", "/standing/cn-5", "--prove"])?;
        state = json(&out, "lemal state")?;
        if !state["value"].is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("e2e: state --prove: {state}");
    ensure!(state["proven"] == Value::Bool(true), "{state}");
    ensure!(state["value"].as_str().is_some_and(|v| v.contains("Faulty")), "{state}");
    let out = net.ok(&["--node", &rpc(1), "--json", "state", "/standing/cn-0", "--prove"])?;
    let absent = json(&out, "lemal state")?;
    ensure!(absent["proven"] == Value::Bool(true) && absent["value"].is_null(), "{absent}");
    let bad = net.lemal(&["--node", &rpc(1), "state", "/standing/xx-1"])?;
    ensure!(!bad.status.success(), "a malformed path was answered");
    Ok(())
}

/// `lemal keys new dp` makes dp-12's keys; the three remaining validators admit it through a
/// roster change; a query over 13 data providers then covers it.
fn a_new_data_provider_is_admitted_and_takes_part(net: &Localnet) -> Result<()> {
    let out = net.ok(&["--json", "keys", "new", "dp"])?;
    let keys = json(&out, "lemal keys new")?;
    ensure!(keys["entity"] == "dp-12", "{keys}");
    let key = keys["key"].as_str().context("the new key")?;
    let node = rpc(0);
    net.ok(&["--node", &node, "roster", "propose", "add-dp", "--key", key, "--as", "vn-0"])?;
    let proposals: Vec<lemal_contracts::state::ProposalRecord> =
        Node::connect(&node)?.list("/proposals")?;
    let id = proposals.last().context("no proposal")?.id.to_string();
    net.ok(&["--node", &node, "roster", "approve", &id, "--as", "vn-1"])?;
    let applied = net.ok(&["--node", &node, "roster", "approve", &id, "--as", "vn-2"])?;
    eprintln!("e2e: roster approve: {applied}");
    ensure!(applied.contains("applied"), "{applied}");
    let run = net.run(&["--query", QUERY, "--dps", "13", "--cns", "5"])?;
    ensure!(run["result"] == run["expected"], "{run}");
    ensure!(run["covered_dps"].as_array().is_some_and(|d| d.iter().any(|x| x == "dp-12")), "{run}");
    eprintln!("e2e: dp-12, admitted by roster change, is covered by query {}", run["query_id"]);
    Ok(())
}
