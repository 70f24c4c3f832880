//! `lemal run`: one query end to end against a running network.
//!
//! This process plays every party with the keys of the localnet under `--home`: the querier
//! plans the query, the first computing node registers it, each data provider submits its
//! encrypted local aggregate with a range proof, the computing nodes aggregate along the tree
//! (a node sends once all its inputs are on the ledger, so children go before parents), shuffle
//! the noise list in order, and key-switch the result. Each step is a signed transaction
//! broadcast to `--node`, sent as soon as the transactions it builds on are committed. Then it
//! waits for the query's skipblock, decrypts the result with the querier's key, and verifies the
//! block.
//!
//! Deadlines: the proof deadline defaults to 200 blocks and the commit window to 20 blocks —
//! a minute and six seconds at the localnet's default 300 ms block time: ample for the few
//! blocks an honest run takes, short enough that a stalled party does not hold a query for long.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Args;
use lemal_contracts::elgamal::DecryptionTable;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Role, Verdict};
use lemal_contracts::state::{BlockPayload, QueryPayload, QueryStatus, Roster, SkipBlock};
use lemal_contracts::tx::{QuerySpec, Tx};

use super::query_options::QueryOptions;
use super::run_report::{
    names, BitmapCounts, Parties, ProofsByKind, RunReport, SkipblockSummary, Timings,
    VerificationReport, WrongProof,
};
use super::Global;
use crate::data::{self, DataBounds, Dataset};
use crate::keyring::Keyring;
use crate::light::{self, BlockRef, LightClient};
use crate::localnet::{self, Layout, Manifest};
use crate::parallel::{parallel_map, parallel_map_with};
use crate::party::follow::Follower;
use crate::party::querier::{self, QuerierRecord};
use crate::pipeline::{self, Cheat, QueryPlan, Session};
use crate::rpc::{Node, TxOutcome};
use crate::sql::{self, Query};

/// Options of `lemal run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The query.
    #[arg(long, env = "LEMAL_QUERY", default_value = "SELECT avg(x) FROM y WHERE z < 321")]
    pub query: String,
    /// Data providers taking part (the first N of the roster).
    #[arg(long, default_value_t = 12)]
    pub dps: u32,
    /// Computing nodes taking part (the first N of the roster).
    #[arg(long, default_value_t = 6)]
    pub cns: u32,
    /// Bounds, noise, threshold and deadlines.
    #[command(flatten)]
    pub options: QueryOptions,
    /// Make one party cheat: `dp-N`, or `cn-N:aggregation|shuffle|keyswitch`.
    #[arg(long)]
    pub cheat: Option<Cheat>,
    /// Folder of CSV files `dp-N.csv` to use instead of synthetic data (aggregated values must
    /// lie in 0..=1000, the public bound of the range proofs).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Seed of the synthetic data (data provider i uses seed·1000003 + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seconds to wait for any one step (a transaction, the skipblock).
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

fn progress(msg: &str) {
    eprintln!("run: {msg}");
}

/// The parties' data and the plaintext answer computed from it.
struct Inputs {
    /// Each participating data provider's local values, in participant order.
    values: Vec<Vec<i64>>,
    /// Component-wise totals over all data providers.
    totals: Vec<i64>,
}

fn load_inputs(args: &RunArgs, query: &Query, bounds: &DataBounds) -> Result<Inputs> {
    let value_column = if query.column == "*" { "x" } else { query.column.as_str() };
    let filter_column = query.filter.as_ref().map_or("z", |f| f.column.as_str());
    let mut values = Vec::with_capacity(args.dps as usize);
    for i in 0..args.dps {
        let dataset = match &args.csv {
            // The message already names the file and the cause.
            Some(dir) => {
                Dataset::from_csv(&dir.join(format!("dp-{i}.csv"))).map_err(|e| anyhow!("{e}"))?
            }
            None => Dataset::synthetic(
                args.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i)),
                value_column,
                filter_column,
                args.options.rows,
                bounds,
            ),
        };
        values
            .push(dataset.local_values(query, bounds).with_context(|| format!("data of dp-{i}"))?);
    }
    let width = query.operation.width();
    let mut totals = vec![0i64; width];
    for v in &values {
        for (t, x) in totals.iter_mut().zip(v) {
            *t = t.checked_add(*x).ok_or_else(|| anyhow!("the totals overflow 64 bits"))?;
        }
    }
    Ok(Inputs { values, totals })
}

/// Check that the keys under `--home` are the roster's keys for every participant.
fn check_keys(keys: &Keyring, roster: &Roster, dps: u32, cns: u32, node: &str) -> Result<()> {
    ensure!(
        dps as usize <= roster.dps.len() && cns as usize <= roster.cns.len(),
        "the network at {node} has {} data providers and {} computing nodes; asked for {dps} and {cns}",
        roster.dps.len(),
        roster.cns.len()
    );
    let mismatch = (0..dps as usize)
        .any(|i| keys.dps.get(i).is_none_or(|k| k.verifying_key() != roster.dps[i].key))
        || (0..cns as usize).any(|i| {
            keys.cns.get(i).is_none_or(|k| {
                k.signing.verifying_key() != roster.cns[i].key
                    || k.share.public() != roster.cns[i].share
            })
        });
    ensure!(
        !mismatch,
        "the keys under --home are not the roster's keys of the network at {node}: is --home the \
         home of the localnet behind --node?"
    );
    Ok(())
}

/// When the first transaction of a phase was sent and the last one committed.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    first_sent: Option<Instant>,
    last_committed: Option<Instant>,
}

impl Span {
    fn ms(&self) -> Option<u128> {
        Some(self.last_committed?.checked_duration_since(self.first_sent?)?.as_millis())
    }
}

/// A transaction on its way to a block.
struct InFlight {
    key: ProofKey,
    hash: [u8; 32],
}

/// Broadcast `tx` and turn a CheckTx refusal into an error naming `what`.
fn send(node: &Node, tx: &Tx, what: &str) -> Result<[u8; 32]> {
    node.broadcast(tx).with_context(|| format!("broadcasting {what} to {}", node.url()))
}

/// A transaction in a block: its hash, the app's code and log.
type Outcome = ([u8; 32], u32, String);

/// The outcome (hash, the app's code and log) of each awaited transaction in the block at
/// `height`, or `None` while the node's transaction index has not caught up with that block.
///
/// The block itself says which transactions it holds; the index, filled asynchronously after
/// each block, gives their codes, in one search per block however many transactions are
/// awaited.
fn block_outcomes(node: &Node, height: u64, awaited: &[InFlight]) -> Result<Option<Vec<Outcome>>> {
    let in_block =
        node.block_tx_hashes(height).with_context(|| format!("fetching block {height}"))?;
    if !awaited.iter().any(|f| in_block.contains(&f.hash)) {
        return Ok(Some(Vec::new()));
    }
    let out = node
        .block_tx_outcomes(height)
        .with_context(|| format!("listing the transactions of block {height}"))?;
    Ok((out.len() >= in_block.len()).then_some(out))
}

/// Every data provider's submission, built on up to `threads` threads (they need nothing from
/// the ledger, so they are prepared while the registration is on its way to a block).
fn range_submissions(
    session: &Session<'_>,
    inputs: &Inputs,
    cheat: Option<Cheat>,
    threads: usize,
) -> Result<BTreeMap<ProofKey, Tx>> {
    let reg = session.registration;
    let jobs: Vec<(u32, &Vec<i64>)> = reg.spec.dps.iter().copied().zip(&inputs.values).collect();
    parallel_map(&jobs, threads, |&(d, values)| {
        let dp = EntityId::dp(d);
        let key = ProofKey { query: reg.query_id, kind: ProofKind::Range, creator: dp, index: 0 };
        let cheats = cheat.is_some_and(|c| c.covers(&key));
        let tx = session
            .range(dp, values, cheats, &mut rand_core::OsRng)
            .with_context(|| format!("{dp} preparing its range proof"))?;
        Ok((key, tx))
    })
    .into_iter()
    .map(|r| r.map_err(|p| anyhow!("preparing a range proof: {p}"))?)
    .collect()
}

/// Build the computing nodes' submissions for `keys` (their inputs are on the ledger) on one
/// thread per client in `readers`, each reading the ledger through its own client.
fn build_in_parallel(
    readers: &[Node],
    session: &Session<'_>,
    keys: &[ProofKey],
    cheat: Option<Cheat>,
) -> Result<Vec<(ProofKey, Tx)>> {
    parallel_map_with(keys, readers, |node, &key| {
        let who = key.creator;
        let cheats = cheat.is_some_and(|c| c.covers(&key));
        let mut rng = rand_core::OsRng;
        let tx = match key.kind {
            ProofKind::Aggregation => session.aggregation(who, node, cheats, &mut rng),
            ProofKind::Shuffle => session.shuffle(who, node, cheats, &mut rng),
            ProofKind::KeySwitch => session.keyswitch(who, node, cheats, &mut rng),
            ProofKind::Range => return Err(anyhow!("{who}'s submission was not prepared")),
        }
        .with_context(|| format!("{who} preparing its {} proof", key.kind))?;
        Ok((key, tx))
    })
    .into_iter()
    .map(|r| r.map_err(|p| anyhow!("preparing a proof: {p}"))?)
    .collect()
}

/// Broadcast every transaction at once (`broadcast_tx_sync`, concurrently); their hashes, in
/// order, once CheckTx accepted each. A refusal names the proof.
fn broadcast_all(node: &Node, batch: &[(ProofKey, Tx)]) -> Result<Vec<[u8; 32]>> {
    let encoded: Vec<Vec<u8>> = batch.iter().map(|(_, tx)| tx.encode()).collect();
    batch
        .iter()
        .zip(node.broadcast_all(&encoded))
        .map(|((key, _), outcome)| {
            let what = format!("the {} proof of {}", key.kind, key.creator);
            outcome.with_context(|| format!("broadcasting {what} to {}", node.url()))
        })
        .collect()
}

/// Send every proof of the query as soon as its inputs are committed (the data providers'
/// submissions are `prebuilt`); return the height of the last one once all are committed.
fn submit_proofs(
    node: &Node,
    session: &Session<'_>,
    mut prebuilt: BTreeMap<ProofKey, Tx>,
    cheat: Option<Cheat>,
    threads: usize,
    timeout: Duration,
    spans: &mut [Span; 4],
) -> Result<u64> {
    let reg = &session.registration;
    let spec = &reg.spec;
    let q = reg.query_id;
    let expected = spec.expected_proofs(q);
    let readers: Vec<Node> =
        (0..threads.max(1)).map(|_| Node::connect(node.url())).collect::<Result<_, _>>()?;
    // What each proof waits for: the proofs whose outputs it takes as inputs.
    let inputs: BTreeMap<ProofKey, Vec<ProofKey>> =
        expected.iter().map(|k| (*k, spec.inputs_of(k))).collect();
    let mut waiting = expected.clone();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut done: BTreeSet<ProofKey> = BTreeSet::new();
    // Every transaction is sent after this block, so the blocks after it are read once each.
    let mut scanned = node.status().context("node status")?.height;
    let mut last_height = scanned;
    let mut last_change = Instant::now();
    loop {
        let ready: Vec<ProofKey> = waiting
            .iter()
            .filter(|k| inputs[*k].iter().all(|d| done.contains(d)))
            .copied()
            .collect();
        if !ready.is_empty() {
            let mut batch = Vec::with_capacity(ready.len());
            let mut to_build = Vec::new();
            for key in ready {
                match prebuilt.remove(&key) {
                    Some(tx) => batch.push((key, tx)),
                    None => to_build.push(key),
                }
            }
            batch.extend(build_in_parallel(&readers, session, &to_build, cheat)?);
            let hashes = broadcast_all(node, &batch)?;
            for ((key, _), hash) in batch.into_iter().zip(hashes) {
                spans[key.kind as usize].first_sent.get_or_insert_with(Instant::now);
                if cheat.is_some_and(|c| c.covers(&key)) {
                    progress(&format!(
                        "{} submitted an invalid {} proof (--cheat)",
                        key.creator, key.kind
                    ));
                }
                waiting.retain(|k| *k != key);
                in_flight.push(InFlight { key, hash });
            }
        }
        if waiting.is_empty() && in_flight.is_empty() {
            return Ok(last_height);
        }
        std::thread::sleep(Duration::from_millis(10));
        let latest = node.status().context("node status")?.height;
        while scanned < latest {
            let Some(outcomes) = block_outcomes(node, scanned + 1, &in_flight)? else { break };
            scanned += 1;
            let mut refused = None;
            let mut landed: Vec<ProofKind> = Vec::new();
            in_flight.retain(|f| match outcomes.iter().find(|(h, _, _)| *h == f.hash) {
                None => true,
                Some((_, 0, _)) => {
                    done.insert(f.key);
                    spans[f.key.kind as usize].last_committed = Some(Instant::now());
                    landed.push(f.key.kind);
                    false
                }
                Some((_, code, log)) => {
                    refused.get_or_insert_with(|| {
                        anyhow!(
                            "the {} proof of {} was refused in block {scanned} with code \
                             {code}: {log}",
                            f.key.kind,
                            f.key.creator
                        )
                    });
                    false
                }
            });
            if let Some(e) = refused {
                return Err(e);
            }
            if !landed.is_empty() {
                last_height = scanned;
                last_change = Instant::now();
            }
            landed.sort_unstable();
            landed.dedup();
            for kind in landed {
                let of_kind: Vec<&ProofKey> = expected.iter().filter(|e| e.kind == kind).collect();
                if of_kind.iter().all(|e| done.contains(e)) {
                    progress(&format!(
                        "{} {kind} proofs on the ledger (height {scanned}); {}/{} proofs in",
                        of_kind.len(),
                        done.len(),
                        expected.len()
                    ));
                }
            }
        }
        if last_change.elapsed() > timeout {
            bail!(
                "no proof was committed for {timeout:?}; waiting for {}",
                in_flight.iter().map(|f| f.key.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
    }
}

/// Wait until the query is finalized and return its skipblock.
fn wait_skipblock(node: &Node, q: &QueryId, timeout: Duration) -> Result<SkipBlock> {
    let start = Instant::now();
    let mut commits = None;
    loop {
        let p = node
            .progress(q)
            .context("query progress")?
            .ok_or_else(|| anyhow!("query {q} is not registered on {}", node.url()))?;
        if let QueryStatus::Finalized { .. } = p.status {
            return node
                .block_by_query(q)
                .context("fetching the skipblock")?
                .ok_or_else(|| anyhow!("query {q} is finalized but has no skipblock"));
        }
        if matches!(p.status, QueryStatus::Committing { .. }) && commits != Some(p.commits) {
            commits = Some(p.commits);
            progress(&format!("proof phase over; {} bitmap commits so far", p.commits));
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for the skipblock of query {q}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The outcome of verifying the query's skipblock.
pub(super) struct Verification {
    /// Whether every check passed.
    pub(super) verified: bool,
    /// The light client's report, or why there is none.
    pub(super) report: VerificationReport,
    /// Why the verification could not run to its end.
    pub(super) error: Option<anyhow::Error>,
}

/// Light-client verification of the query's skipblock ([`crate::light`]) in the state it was
/// appended to: the header above that state signed by the trusted validators (the trust root of
/// `lemal verify`), the block's ICS23 proof against the header's app hash, its hash and links,
/// and its proofs root. Waits for that header.
pub(super) fn verify_skipblock(
    node: &Node,
    block: &SkipBlock,
    q: &QueryId,
    global: &Global,
    timeout: Duration,
) -> Verification {
    let outcome = (|| -> Result<light::VerifyReport> {
        let trust = super::trust::trust_root(global, node)?;
        let h = block.ledger_height;
        node.wait_for("the header above the skipblock", timeout, Duration::from_millis(20), |n| {
            Ok((n.status()?.height > h).then_some(()))
        })?;
        let client = LightClient::at_height(node, &trust, h)?;
        let (report, verified, _) = client.verify(BlockRef::Query(*q))?;
        ensure!(
            verified.hash() == block.hash(),
            "the light client verified another block than the one the run received"
        );
        Ok(report)
    })();
    match outcome {
        Ok(report) => Verification {
            verified: report.verified,
            report: VerificationReport::Ran(Box::new(report)),
            error: None,
        },
        Err(e) => Verification {
            verified: false,
            report: VerificationReport::Failed { error: format!("{e:#}") },
            error: Some(e),
        },
    }
}

/// Whether the cheater's proof is marked wrong by every verifying node that selected it, and
/// by at least one. `None` when no verifying node selected it.
fn cheat_detected(block: &SkipBlock, key: &ProofKey) -> Option<bool> {
    let BlockPayload::Query(p) = &block.payload else { return Some(false) };
    let row: Vec<Verdict> =
        p.bitmap.verifiers.iter().filter_map(|v| p.bitmap.get(key, *v)).collect();
    let selected: Vec<Verdict> =
        row.into_iter().filter(|v| matches!(v, Verdict::Wrong | Verdict::Correct)).collect();
    if selected.is_empty() {
        return None;
    }
    Some(selected.iter().all(|v| *v == Verdict::Wrong))
}

/// Refuse a registration the chain refused.
fn registered_or_refused(outcome: &TxOutcome) -> Result<()> {
    ensure!(
        outcome.code == 0,
        "the registration was refused in block {} with code {}: {}",
        outcome.height,
        outcome.code,
        outcome.log
    );
    Ok(())
}

/// Tell the daemon of `cheat.entity` to falsify its `cheat.kind` proof of query `q` only (the
/// localnet starts its daemons with `--test-only-cheat-orders`).
fn order_cheat(manifest: &Manifest, cheat: &Cheat, q: &QueryId) -> Result<()> {
    let party =
        manifest.parties.iter().find(|p| p.entity == cheat.entity).ok_or_else(|| {
            anyhow!("--cheat {}: the localnet runs no daemon for it", cheat.entity)
        })?;
    let dir = party.state.join("cheat");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(q.to_string());
    std::fs::write(&path, cheat.kind.as_str())
        .with_context(|| format!("writing {}", path.display()))?;
    progress(&format!("{} will submit an invalid {} proof (--cheat)", cheat.entity, cheat.kind));
    Ok(())
}

/// Follow the chain from `registered` until every expected proof of query `q` is on the
/// ledger or its proof phase ends; each kind's span runs from the start to its last proof.
/// Returns the height where that happened.
fn follow_proofs(
    node: &Node,
    spec: &QuerySpec,
    q: QueryId,
    registered: u64,
    timeout: Duration,
    spans: &mut [Span; 4],
) -> Result<u64> {
    let expected: BTreeSet<ProofKey> = spec.expected_proofs(q).into_iter().collect();
    let mut seen: BTreeSet<ProofKey> = BTreeSet::new();
    let start = Instant::now();
    for s in spans.iter_mut() {
        s.first_sent = Some(start);
    }
    let mut follower = Follower::start(node.url(), registered + 1)?;
    let mut last_change = Instant::now();
    let qs = q.to_string();
    loop {
        let Some(block) = follower.next_block(Duration::from_secs(1))? else {
            ensure!(
                last_change.elapsed() < timeout,
                "no proof of query {q} was committed for {timeout:?}; {} of {} are in",
                seen.len(),
                expected.len()
            );
            continue;
        };
        for e in block.of_kind("lemal.proof") {
            let Some(key) = e.get("key").and_then(|k| k.parse::<ProofKey>().ok()) else { continue };
            if key.query == q && seen.insert(key) {
                last_change = Instant::now();
                spans[key.kind as usize].last_committed = Some(Instant::now());
                let of_kind = expected.iter().filter(|k| k.kind == key.kind);
                if of_kind.clone().all(|k| seen.contains(k)) {
                    progress(&format!(
                        "{} {} proofs on the ledger (height {}); {}/{} proofs in",
                        of_kind.count(),
                        key.kind,
                        block.height,
                        seen.len(),
                        expected.len()
                    ));
                }
            }
        }
        let phase_over =
            block.of_kind("lemal.proof_phase_end").any(|e| e.get("query") == Some(qs.as_str()));
        if seen.is_superset(&expected) || phase_over {
            return Ok(block.height);
        }
    }
}

/// The network a run talks to and the localnet behind it.
struct Network {
    node: Node,
    chain_id: String,
    roster: Roster,
    /// The localnet's keys, to play the parties with.
    keys: Keyring,
    /// A localnet of party daemons on this chain: they answer, this process only asks.
    daemons: Option<Manifest>,
}

/// Connect to `--node` and read the localnet under `--home`.
fn connect(global: &Global) -> Result<Network> {
    let layout = Layout::new(&global.home)?;
    let keys = localnet::keyring(&layout).context("reading the localnet's key files")?;
    let node = Node::connect(&global.node)?;
    let status = node.status().with_context(|| format!("is a node running at {}?", global.node))?;
    let chain_id = status.chain_id;
    let roster = node.roster()?;
    let daemons =
        Manifest::load(&layout).ok().filter(|m| !m.parties.is_empty() && m.chain_id == chain_id);
    Ok(Network { node, chain_id, roster, keys, daemons })
}

/// Refuse participants the network cannot play: too few, keys that are not the roster's, data
/// options its daemons do not serve, a cheater outside the query.
fn check_parties(args: &RunArgs, net: &Network, global: &Global) -> Result<()> {
    ensure!(args.dps >= 1 && args.cns >= 1, "--dps and --cns must be at least 1");
    ensure!(
        args.dps >= args.cns,
        "--dps {} is below --cns {}: every computing node needs a data provider",
        args.dps,
        args.cns
    );
    match &net.daemons {
        None => check_keys(&net.keys, &net.roster, args.dps, args.cns, &global.node)?,
        Some(m) => {
            ensure!(
                args.csv.is_none(),
                "--csv: the localnet's data-provider daemons serve their own data; start the \
                 localnet with --no-parties to have `lemal run` play the parties with CSV files"
            );
            ensure!(
                args.seed == m.data_seed,
                "--seed {}: the localnet's data providers serve seed {} (lemal localnet up \
                 --data-seed)",
                args.seed,
                m.data_seed
            );
        }
    }
    if let Some(c) = args.cheat {
        let n = match c.entity.role {
            Role::Dp => args.dps,
            Role::Cn => args.cns,
            Role::Vn => 0,
        };
        ensure!(c.entity.index < n, "--cheat {}: it takes no part in this query", c.entity);
    }
    Ok(())
}

/// The planned query and the plaintext it should decrypt to.
struct Planned {
    plan: QueryPlan,
    inputs: Inputs,
    /// The plaintext answer.
    expected: Option<f64>,
}

/// The decryption table, built on a thread of its own while the query runs.
type TableBuilder = std::thread::JoinHandle<DecryptionTable>;

/// Load the data and plan the query; check its parameters as the chain will before anything
/// is sent, and start building the decryption table.
fn plan_query(args: &RunArgs, query: Query, chain_id: &str) -> Result<(Planned, TableBuilder)> {
    let opts = args.options.plan_options(args.dps, args.cns);
    let inputs = load_inputs(args, &query, &opts.bounds)?;
    let expected = data::answer(query.operation, &inputs.totals);
    let plan = pipeline::plan(chain_id, query, &opts, &mut rand_core::OsRng);
    let spec = &plan.registration.spec;
    // The chain's own check of the parameters (limits, noise rows), before anything is sent.
    spec.check().context("the query's parameters")?;
    if let Some(c) = args.cheat {
        ensure!(
            c.kind != ProofKind::Shuffle || spec.has_noise(),
            "--cheat {}:shuffle needs noise (--noise above 0 and --noise-rows above 0): no \
             noise, no shuffle",
            c.entity
        );
    }
    let table = {
        let spec = spec.clone();
        std::thread::spawn(move || pipeline::decryption_table(&spec))
    };
    progress(&format!(
        "query {}: {} with {} data providers, {} computing nodes, noise {} ({} rows), threshold {} ppm",
        plan.registration.query_id,
        plan.query,
        args.dps,
        args.cns,
        args.options.noise,
        spec.noise_rows(),
        args.options.threshold
    ));
    Ok((Planned { plan, inputs, expected }, table))
}

/// How the query's proofs reached the ledger.
struct Proved {
    /// The block that registered the query.
    registration: TxOutcome,
    /// From the registration to the last proof (or the end of the proof phase).
    proofs: Duration,
    /// Each proof kind's span, indexed by kind.
    spans: [Span; 4],
}

/// Play every party in this process: register the query, prepare the data providers'
/// submissions meanwhile, then send each proof as soon as its inputs are committed.
fn prove_in_process(
    net: &Network,
    planned: &Planned,
    cheat: Option<Cheat>,
    timeout: Duration,
) -> Result<Proved> {
    let node = &net.node;
    let session = Session {
        chain_id: &net.chain_id,
        keys: &net.keys,
        roster: &net.roster,
        registration: &planned.plan.registration,
    };
    let tx = session.register(&mut rand_core::OsRng).context("signing the registration")?;
    let hash = send(node, &tx, "the registration")?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let (outcome, range_txs) = std::thread::scope(|s| {
        let builder = s.spawn(|| range_submissions(&session, &planned.inputs, cheat, threads));
        let outcome = node.wait_tx(hash, timeout).context("waiting for the registration");
        let built =
            builder.join().unwrap_or_else(|_| Err(anyhow!("preparing the range proofs panicked")));
        (outcome, built)
    });
    let (outcome, range_txs) = (outcome?, range_txs?);
    registered_or_refused(&outcome)?;
    progress(&format!("registered at height {}", outcome.height));
    let proofs_start = Instant::now();
    let mut spans = [Span::default(); 4];
    let last_proof_height =
        submit_proofs(node, &session, range_txs, cheat, threads, timeout, &mut spans)?;
    progress(&format!("every proof is on the ledger (height {last_proof_height})"));
    Ok(Proved { registration: outcome, proofs: proofs_start.elapsed(), spans })
}

/// Leave the parties to the localnet's daemons: order the cheat, have the query's first
/// computing node register it as a querier would, and follow its proofs on the ledger.
fn prove_with_daemons(
    net: &Network,
    manifest: &Manifest,
    plan: &QueryPlan,
    cheat: Option<Cheat>,
    global: &Global,
    timeout: Duration,
) -> Result<Proved> {
    let q = plan.registration.query_id;
    let spec = &plan.registration.spec;
    if let Some(c) = cheat {
        order_cheat(manifest, &c, &q)?;
    }
    let via = super::party::localnet_endpoint(&global.home, spec.cns[0])?;
    let record = QuerierRecord::of(&net.chain_id, plan, &via, "");
    record.save(&super::party::querier_dir(&global.home))?;
    let tx = querier::register_via(&via, &plan.registration)?;
    QuerierRecord { tx: tx.clone(), ..record }.save(&super::party::querier_dir(&global.home))?;
    let hash: [u8; 32] = hex::decode(&tx)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{via} answered a bad transaction hash {tx:?}"))?;
    let outcome = net.node.wait_tx(hash, timeout).context("waiting for the registration")?;
    registered_or_refused(&outcome)?;
    progress(&format!("registered through {via} at height {}", outcome.height));
    let proofs_start = Instant::now();
    let mut spans = [Span::default(); 4];
    let last = follow_proofs(&net.node, spec, q, outcome.height, timeout, &mut spans)?;
    progress(&format!("proof phase over (height {last})"));
    Ok(Proved { registration: outcome, proofs: proofs_start.elapsed(), spans })
}

/// The query payload of the query's skipblock, announced on stderr.
fn query_payload<'b>(block: &'b SkipBlock, q: &QueryId) -> Result<&'b QueryPayload> {
    let BlockPayload::Query(payload) = &block.payload else {
        bail!("the skipblock of query {q} is not a query block");
    };
    progress(&format!(
        "skipblock {} appended at height {} ({} of {} verifying nodes reported)",
        block.index,
        block.ledger_height,
        payload.reported.len(),
        payload.bitmap.verifiers.len()
    ));
    Ok(payload)
}

/// Everything a finished run reports on.
struct Finished<'a> {
    args: &'a RunArgs,
    global: &'a Global,
    net: Network,
    planned: Planned,
    /// The height of the block that registered the query.
    registered_at: u64,
    block: &'a SkipBlock,
    payload: &'a QueryPayload,
    /// The decrypted result components, if the skipblock carries a result.
    components: Option<Vec<i64>>,
    verification: Verification,
    timings_ms: Timings,
}

impl Finished<'_> {
    /// Audit the skipblock (wrong proofs, the cheat caught, what makes the run fail) and
    /// report.
    fn report(self) -> RunReport {
        let Finished {
            args,
            global,
            net,
            planned,
            registered_at,
            block,
            payload,
            components,
            verification,
            timings_ms,
        } = self;
        let Planned { plan, inputs, expected } = planned;
        let q = plan.registration.query_id;
        let spec = &plan.registration.spec;
        let result = components.as_deref().and_then(|c| data::answer(plan.query.operation, c));
        let wrong_proofs = WrongProof::all_in(block);
        let cheat_key =
            args.cheat.map(|c| ProofKey { query: q, kind: c.kind, creator: c.entity, index: 0 });
        let detected = cheat_key.map(|k| cheat_detected(block, &k));
        let problems = problems(
            args.cheat,
            spec,
            &inputs.totals,
            components.as_deref(),
            &wrong_proofs,
            detected,
            verification.verified,
        );
        RunReport {
            query_id: q.to_string(),
            sql: plan.query.to_string(),
            chain_id: net.chain_id,
            node: global.node.clone(),
            dps: args.dps,
            cns: args.cns,
            rows: args.options.rows,
            noise_scale: args.options.noise,
            noise_rows: spec.noise_rows(),
            threshold_ppm: args.options.threshold,
            proof_deadline: args.options.proof_deadline,
            commit_window: args.options.commit_window,
            registered_at,
            cheat: args.cheat.map(|c| format!("{}:{}", c.entity, c.kind)),
            result,
            noise: result.zip(expected).map(|(r, e)| r - e),
            expected,
            noise_components: components
                .as_ref()
                .map(|c| c.iter().zip(&inputs.totals).map(|(r, e)| r - e).collect()),
            result_components: components,
            expected_components: inputs.totals,
            skipblock: SkipblockSummary::of(block, payload),
            covered_dps: names(&payload.covered),
            uncovered_dps: names(&payload.uncovered),
            bitmap: BitmapCounts::from(payload.bitmap.counts()),
            parties: if net.daemons.is_some() { Parties::Daemons } else { Parties::InProcess },
            proofs_by_kind: ProofsByKind::of(&payload.bitmap.proofs),
            wrong_proofs,
            cheat_detected: detected.map(|d| d.unwrap_or(false)),
            verified: verification.verified,
            verification: verification.report,
            problems,
            timings_ms,
        }
    }
}

/// Run a query.
pub fn run(args: RunArgs, global: &Global) -> Result<ExitCode> {
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let query = sql::parse(&args.query)?;
    let net = connect(global)?;
    check_parties(&args, &net, global)?;
    let (planned, table) = plan_query(&args, query, &net.chain_id)?;
    let q = planned.plan.registration.query_id;
    let prepared = started.elapsed();

    let registration_start = Instant::now();
    let proved = match &net.daemons {
        None => prove_in_process(&net, &planned, args.cheat, timeout)?,
        Some(manifest) => {
            prove_with_daemons(&net, manifest, &planned.plan, args.cheat, global, timeout)?
        }
    };
    let registered = registration_start.elapsed();

    let bitmaps_start = Instant::now();
    let block = wait_skipblock(&net.node, &q, timeout)?;
    let skipblock_seen = registration_start.elapsed();
    let bitmaps = bitmaps_start.elapsed();
    let payload = query_payload(&block, &q)?;

    let decrypt_start = Instant::now();
    let components = decrypt_result(&planned.plan, payload, table)?;
    let decrypt = decrypt_start.elapsed();

    let verify_start = Instant::now();
    let verification = verify_skipblock(&net.node, &block, &q, global, timeout);
    let verify = verify_start.elapsed();
    let registration_to_verified = registration_start.elapsed();

    let [range, aggregation, shuffle, keyswitch] = proved.spans.map(|s| s.ms());
    let report = Finished {
        args: &args,
        global,
        net,
        planned,
        registered_at: proved.registration.height,
        block: &block,
        payload,
        components,
        verification,
        timings_ms: Timings {
            prepare: prepared.as_millis(),
            register: registered.as_millis(),
            range,
            aggregation,
            shuffle,
            keyswitch,
            proofs: proved.proofs.as_millis(),
            bitmaps: bitmaps.as_millis(),
            decrypt: decrypt.as_millis(),
            verify: verify.as_millis(),
            registration_to_skipblock: skipblock_seen.as_millis(),
            registration_to_verified: registration_to_verified.as_millis(),
            total: started.elapsed().as_millis(),
        },
    }
    .report();
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The result components the skipblock carries, decrypted with the querier's key once the
/// decryption table is built; none when it carries no result (a key switch is missing).
fn decrypt_result(
    plan: &QueryPlan,
    payload: &QueryPayload,
    table: TableBuilder,
) -> Result<Option<Vec<i64>>> {
    let table = table.join().map_err(|_| anyhow!("building the decryption table failed"))?;
    if payload.result.is_empty() {
        progress("the skipblock carries no result: a key switch is missing");
        return Ok(None);
    }
    Ok(Some(pipeline::decrypt(plan, &payload.result, &table)?))
}

/// What makes a run fail. An honest run must come out clean: no proof judged wrong and, without
/// noise, the decrypted result equal to the plaintext `totals`. A cheating one must still finish
/// and be recorded: no verifying node that selected the cheater's proof may accept it. Either
/// way the skipblock must verify.
fn problems(
    cheat: Option<Cheat>,
    spec: &QuerySpec,
    totals: &[i64],
    components: Option<&[i64]>,
    wrong: &[WrongProof],
    detected: Option<Option<bool>>,
    verified: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    if cheat.is_none() {
        if !wrong.is_empty() {
            problems.push(format!("{} proofs were judged wrong", wrong.len()));
        }
        if !spec.has_noise() && components != Some(totals) {
            problems.push("the decrypted result differs from the plaintext answer".to_owned());
        }
    }
    if detected == Some(Some(false)) {
        problems.push("a verifying node that selected the cheater's proof accepted it".into());
    }
    if !verified {
        problems.push("the skipblock did not verify".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemal_contracts::proofs::range::Bounds;
    use lemal_contracts::tx::{NoiseParams, Operation, QuerySpec};

    fn spec(noise: NoiseParams) -> QuerySpec {
        QuerySpec {
            sql: "SELECT avg(x) FROM y".into(),
            operation: Operation::Avg,
            range_bits: 32,
            bounds: vec![Bounds { lo: 0, hi: 100_000 }, Bounds { lo: 0, hi: 100 }],
            dps: (0..12).collect(),
            cns: (0..6).collect(),
            noise,
        }
    }

    #[test]
    fn aggregations_wait_for_their_children_and_key_switches_for_the_root() {
        let s = spec(NoiseParams::NONE);
        let q = QueryId([7; 16]);
        let key = |kind, cn| ProofKey { query: q, kind, creator: EntityId::cn(cn), index: 0 };
        let root = s.inputs_of(&key(ProofKind::Aggregation, 0));
        assert!(root.contains(&key(ProofKind::Aggregation, 1)));
        assert!(root.contains(&key(ProofKind::Aggregation, 2)));
        let leaf = s.inputs_of(&key(ProofKind::Aggregation, 5));
        assert!(leaf.iter().all(|k| k.kind == ProofKind::Range));
        assert_eq!(
            s.inputs_of(&key(ProofKind::KeySwitch, 3)),
            vec![key(ProofKind::Aggregation, 0)]
        );
        let dp = ProofKey { query: q, kind: ProofKind::Range, creator: EntityId::dp(0), index: 0 };
        assert!(s.inputs_of(&dp).is_empty());
    }

    #[test]
    fn shuffles_run_in_order_and_key_switches_wait_for_the_last() {
        let s = spec(NoiseParams { scale: 1, rows: 4 });
        let q = QueryId([7; 16]);
        let key = |kind, cn| ProofKey { query: q, kind, creator: EntityId::cn(cn), index: 0 };
        assert!(s.inputs_of(&key(ProofKind::Shuffle, 0)).is_empty());
        assert_eq!(s.inputs_of(&key(ProofKind::Shuffle, 4)), vec![key(ProofKind::Shuffle, 3)]);
        assert_eq!(
            s.inputs_of(&key(ProofKind::KeySwitch, 0)),
            vec![key(ProofKind::Aggregation, 0), key(ProofKind::Shuffle, 5)]
        );
    }

    #[test]
    fn every_proof_depends_only_on_expected_proofs_so_the_schedule_terminates() {
        for noise in [NoiseParams::NONE, NoiseParams { scale: 1, rows: 2 }] {
            let s = spec(noise);
            let q = QueryId([1; 16]);
            let expected = s.expected_proofs(q);
            // Repeatedly send what is ready; everything must get sent.
            let mut done: BTreeSet<ProofKey> = BTreeSet::new();
            for _ in 0..expected.len() {
                let ready: Vec<ProofKey> = expected
                    .iter()
                    .filter(|k| !done.contains(k))
                    .filter(|k| s.inputs_of(k).iter().all(|d| done.contains(d)))
                    .copied()
                    .collect();
                done.extend(ready);
            }
            assert_eq!(done.len(), expected.len());
        }
    }

    #[test]
    fn the_decryption_table_grows_with_the_largest_possible_result() {
        // 12 · 100000 < 2^21, plus one bit of margin.
        assert_eq!(pipeline::decryption_bits(&spec(NoiseParams::NONE)), 22);
        let mut big = spec(NoiseParams { scale: 1 << 31, rows: 2 });
        big.bounds[0].hi = 1 << 40;
        assert_eq!(big.noise.max_abs(), 1_488_522_236, "2^31 · ln 2, rounded");
        // 12 · 2^40 + 2^31 · ln 2 < 2^44, plus one bit of margin.
        assert_eq!(pipeline::decryption_bits(&big), 45);
        big.bounds[0].hi = i64::MAX;
        assert_eq!(pipeline::decryption_bits(&big), 62);
    }

    fn block_with(verdicts: Vec<Verdict>, keys: Vec<ProofKey>) -> SkipBlock {
        use lemal_contracts::state::{Bitmap, QueryPayload, Timestamp};
        SkipBlock {
            index: 1,
            height: 1,
            back_links: Vec::new(),
            ledger_height: 9,
            time: Timestamp::default(),
            payload: BlockPayload::Query(QueryPayload {
                query_id: keys[0].query,
                bitmap: Bitmap {
                    proofs: keys,
                    verifiers: vec![EntityId::vn(0), EntityId::vn(1)],
                    verdicts,
                },
                threshold_ppm: 400_000,
                reported: vec![EntityId::vn(0), EntityId::vn(1)],
                absent: Vec::new(),
                proofs_root: [0; 32],
                result: Vec::new(),
                covered: Vec::new(),
                uncovered: Vec::new(),
            }),
        }
    }

    #[test]
    fn a_cheat_counts_as_detected_only_when_every_node_that_checked_it_said_wrong() {
        let q = QueryId([3; 16]);
        let dp =
            |i| ProofKey { query: q, kind: ProofKind::Range, creator: EntityId::dp(i), index: 0 };
        let keys = vec![dp(0), dp(1), dp(2), dp(3)];
        use Verdict::{Correct, NotSelected, Wrong};
        let block = block_with(
            vec![Wrong, NotSelected, Correct, Correct, NotSelected, NotSelected, Wrong, Correct],
            keys.clone(),
        );
        assert_eq!(cheat_detected(&block, &dp(0)), Some(true));
        assert_eq!(cheat_detected(&block, &dp(1)), Some(false));
        assert_eq!(cheat_detected(&block, &dp(2)), None);
        assert_eq!(cheat_detected(&block, &dp(3)), Some(false));
        let wrong = WrongProof::all_in(&block);
        assert_eq!(wrong.len(), 2);
        assert_eq!(wrong[0].proof, dp(0).to_string());
        assert_eq!(wrong[0].verdicts["vn-0"], 0);
        assert_eq!(wrong[0].verdicts["vn-1"], 2);
        assert_eq!(wrong[1].proof, dp(3).to_string());
    }

    #[test]
    fn an_honest_run_fails_on_a_wrong_proof_or_an_inexact_result_a_cheating_one_if_accepted() {
        let exact = spec(NoiseParams::NONE);
        let totals = [321, 2];
        assert!(problems(None, &exact, &totals, Some(&totals), &[], None, true).is_empty());
        assert_eq!(
            problems(None, &exact, &totals, Some(&[320, 2]), &[], None, true),
            vec!["the decrypted result differs from the plaintext answer"]
        );
        let noisy = spec(NoiseParams { scale: 1, rows: 4 });
        assert!(problems(None, &noisy, &totals, Some(&[320, 2]), &[], None, true).is_empty());
        let wrong = WrongProof { proof: "p".into(), verdicts: BTreeMap::new() };
        assert_eq!(
            problems(
                None,
                &exact,
                &totals,
                Some(&totals),
                std::slice::from_ref(&wrong),
                None,
                false
            ),
            vec!["1 proofs were judged wrong", "the skipblock did not verify"]
        );
        let cheat = Some("dp-0".parse::<Cheat>().expect("parses"));
        let caught = problems(cheat, &exact, &totals, None, &[wrong], Some(Some(true)), true);
        assert!(caught.is_empty(), "{caught:?}");
        assert_eq!(
            problems(cheat, &exact, &totals, None, &[], Some(Some(false)), true),
            vec!["a verifying node that selected the cheater's proof accepted it"]
        );
    }

    #[test]
    fn run_defaults_are_the_reports_query_and_the_documented_deadlines() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["lemal", "run", "--cheat", "cn-2:shuffle"])
            .expect("parses");
        let crate::cli::Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.query, "SELECT avg(x) FROM y WHERE z < 321");
        assert_eq!((args.dps, args.cns, args.options.rows, args.options.noise), (12, 6, 100, 0));
        assert_eq!(
            (args.options.proof_deadline, args.options.commit_window, args.options.threshold),
            (200, 20, 400_000)
        );
        let cheat = args.cheat.expect("cheat");
        assert_eq!((cheat.entity, cheat.kind), (EntityId::cn(2), ProofKind::Shuffle));
        assert!(crate::cli::Cli::try_parse_from(["lemal", "run", "--cheat", "vn-1"]).is_err());
        assert!(
            crate::cli::Cli::try_parse_from(["lemal", "run", "--cheat", "dp-1:shuffle"]).is_err()
        );
    }
}
