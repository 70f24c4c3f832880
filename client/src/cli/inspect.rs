//! `lemal block | proofs | bitmap | verify | audit`: look at the skipchain and at the proofs of
//! a query, verify a query's skipblock as a light client, and audit its proofs.
//!
//! `block`, `proofs` and `bitmap` show what the node serves, unverified. `verify`, `audit` and
//! `block ... --verify` trust only a validator set ([`crate::light`]) from the trust root the
//! user chose ([`super::trust`]).
//!
//! Each command prints a readable report on stdout, or one JSON document with `--json`; progress
//! goes to stderr. Exit codes: 0 when the command succeeded (for `verify`, every check passed;
//! for `audit`, the block verified and nothing is wrong), 1 when the check ran and found a fault,
//! 3 when it could not run (node unreachable, no trust root).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use lemal_contracts::ids::{EntityId, ProofKey, QueryId, Verdict};
use lemal_contracts::state::{
    Bitmap, BitmapCommitRecord, BlockPayload, ProofRecord, QueryProgress, QueryStatus, SkipBlock,
};
use serde::Serialize;

use super::{connect, emit, exit, exit_code_of_light, trust::trust_root, Global};
use crate::light::{
    self, AncestryReport, AuditReport, BlockRef, LightClient, LightError, VerdictSummary,
    VerifyReport, VrfStatus,
};
use crate::rpc::Node;

/// Which skipblock to show.
#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// The latest skipblock.
    Latest {
        /// Verify it as a light client, and reach it from block 0 through forward links.
        #[arg(long)]
        verify: bool,
    },
    /// A skipblock by index, hash or query id.
    Get {
        /// Its index.
        #[arg(long, conflicts_with_all = ["hash", "query"])]
        index: Option<u64>,
        /// Its hash (hex).
        #[arg(long, conflicts_with = "query")]
        hash: Option<String>,
        /// The query it records.
        #[arg(long)]
        query: Option<String>,
        /// Verify it as a light client, and prove it an ancestor of the latest block.
        #[arg(long)]
        verify: bool,
    },
}

pub(super) fn parse_query(id: &str) -> Result<QueryId> {
    id.parse().map_err(|e| anyhow!("{id:?} is not a query id: {e}"))
}

// ---------------------------------------------------------------------------------------------
// lemal block
// ---------------------------------------------------------------------------------------------

/// A skipblock as `lemal block` shows it.
#[derive(Debug, Serialize)]
struct BlockView {
    index: u64,
    hash: String,
    height: u8,
    back_links: Vec<String>,
    forward_links: Vec<String>,
    ledger_height: u64,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    genesis: Option<GenesisView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<QueryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<VerdictView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roster_change: Option<RosterChangeView>,
}

/// A challenge verdict as `lemal block` and `lemal verdicts` show it.
#[derive(Debug, Serialize)]
pub(crate) struct VerdictView {
    pub(crate) proof: String,
    pub(crate) challenger: String,
    pub(crate) valid: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
    pub(crate) at_fault: Vec<String>,
    pub(crate) query_block: u64,
    pub(crate) query_block_hash: String,
    pub(crate) height: u64,
}

impl VerdictView {
    pub(crate) fn of(v: &lemal_contracts::state::ChallengeVerdict) -> Self {
        VerdictView {
            proof: v.proof.to_string(),
            challenger: v.challenger.to_string(),
            valid: v.valid,
            reason: v.reason.clone(),
            at_fault: v.at_fault().map(|e| e.to_string()).collect(),
            query_block: v.query_block,
            query_block_hash: hex::encode(v.query_block_hash),
            height: v.height,
        }
    }

    /// One line: what the chain decided.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} is {}{}; at fault: {}; challenged by {} (query block {})",
            self.proof,
            if self.valid { "right" } else { "wrong" },
            if self.reason.is_empty() { String::new() } else { format!(" ({})", self.reason) },
            list(&self.at_fault),
            self.challenger,
            self.query_block
        )
    }
}

#[derive(Debug, Serialize)]
struct RosterChangeView {
    proposal: u64,
    change: String,
    entity: String,
    approvals: Vec<String>,
    approved_power: u64,
    total_power: u64,
    roster_hash: String,
}

#[derive(Debug, Serialize)]
struct GenesisView {
    chain_id: String,
    roster_hash: String,
    params_hash: String,
}

#[derive(Debug, Serialize)]
struct QueryView {
    query_id: String,
    threshold_ppm: u32,
    proofs: usize,
    verifiers: Vec<String>,
    reported: Vec<String>,
    absent: Vec<String>,
    covered: Vec<String>,
    uncovered: Vec<String>,
    proofs_root: String,
    counts: Counts,
    result: Vec<String>,
}

/// How many bitmap entries hold each value.
#[derive(Debug, Default, Serialize)]
struct Counts {
    wrong: usize,
    correct: usize,
    not_selected: usize,
    not_received: usize,
}

impl Counts {
    fn of<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Counts {
        let mut c = Counts::default();
        for v in verdicts {
            match v {
                Verdict::Wrong => c.wrong += 1,
                Verdict::Correct => c.correct += 1,
                Verdict::NotSelected => c.not_selected += 1,
                Verdict::NotReceived => c.not_received += 1,
            }
        }
        c
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "0 wrong: {}   1 correct: {}   2 not selected: {}   3 not received: {}",
            self.wrong, self.correct, self.not_selected, self.not_received
        )
    }
}

fn names(ids: &[EntityId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn block_view(block: &SkipBlock, forward: &[[u8; 32]]) -> BlockView {
    let (mut verdict, mut roster_change) = (None, None);
    let (genesis, query) = match &block.payload {
        BlockPayload::Verdict(v) => {
            verdict = Some(VerdictView::of(v));
            (None, None)
        }
        BlockPayload::RosterChange(r) => {
            roster_change = Some(RosterChangeView {
                proposal: r.proposal,
                change: r.change.to_string(),
                entity: r.entity.to_string(),
                approvals: names(&r.approvals),
                approved_power: r.approved_power,
                total_power: r.total_power,
                roster_hash: hex::encode(r.roster_hash),
            });
            (None, None)
        }
        BlockPayload::Genesis(g) => (
            Some(GenesisView {
                chain_id: g.chain_id.clone(),
                roster_hash: hex::encode(g.roster_hash),
                params_hash: hex::encode(g.params_hash),
            }),
            None,
        ),
        BlockPayload::Query(q) => (
            None,
            Some(QueryView {
                query_id: q.query_id.to_string(),
                threshold_ppm: q.threshold_ppm,
                proofs: q.bitmap.proofs.len(),
                verifiers: names(&q.bitmap.verifiers),
                reported: names(&q.reported),
                absent: names(&q.absent),
                covered: names(&q.covered),
                uncovered: names(&q.uncovered),
                proofs_root: hex::encode(q.proofs_root),
                counts: Counts::of(&q.bitmap.verdicts),
                result: q.result.iter().map(|c| hex::encode(c.to_bytes())).collect(),
            }),
        ),
    };
    BlockView {
        index: block.index,
        hash: hex::encode(block.hash()),
        height: block.height,
        back_links: block.back_links.iter().map(hex::encode).collect(),
        forward_links: forward.iter().map(hex::encode).collect(),
        ledger_height: block.ledger_height,
        time: format!("{}.{:09}", block.time.seconds, block.time.nanos),
        genesis,
        query,
        verdict,
        roster_change,
    }
}

fn render_block(v: &BlockView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "skipblock {}  {}", v.index, v.hash);
    let _ = writeln!(s, "  skip height    {}", v.height);
    let _ = writeln!(s, "  ledger height  {} (time {})", v.ledger_height, v.time);
    for (level, link) in v.back_links.iter().enumerate() {
        let _ = writeln!(s, "  back link {level:<4} {link}");
    }
    for (level, link) in v.forward_links.iter().enumerate() {
        let _ = writeln!(s, "  forward {level:<6} {link}");
    }
    if let Some(g) = &v.genesis {
        let _ = writeln!(s, "  genesis of     {}", g.chain_id);
        let _ = writeln!(s, "  roster hash    {}", g.roster_hash);
        let _ = writeln!(s, "  params hash    {}", g.params_hash);
    }
    if let Some(q) = &v.query {
        let _ = writeln!(s, "  query          {}", q.query_id);
        let _ = writeln!(s, "  threshold      {} ppm", q.threshold_ppm);
        let _ = writeln!(s, "  proofs         {} expected", q.proofs);
        let _ = writeln!(s, "  proofs root    {}", q.proofs_root);
        let _ = writeln!(s, "  reported       {}", list(&q.reported));
        let _ = writeln!(s, "  absent         {}", list(&q.absent));
        let _ = writeln!(s, "  covers         {}", list(&q.covered));
        let _ = writeln!(s, "  not covered    {}", list(&q.uncovered));
        let _ = writeln!(s, "  bitmap         {}", q.counts);
        let _ = writeln!(s, "  result         {} ciphertexts", q.result.len());
    }
    if let Some(v) = &v.verdict {
        let _ = writeln!(s, "  verdict        {}", v.line());
        let _ = writeln!(s, "  query block    {} {}", v.query_block, v.query_block_hash);
    }
    if let Some(r) = &v.roster_change {
        let _ =
            writeln!(s, "  roster change  proposal {}: {} ({})", r.proposal, r.change, r.entity);
        let _ = writeln!(
            s,
            "  approved by    {} ({} of {} voting power)",
            list(&r.approvals),
            r.approved_power,
            r.total_power
        );
        let _ = writeln!(s, "  roster hash    {}", r.roster_hash);
    }
    s
}

pub(super) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// `lemal block`.
pub fn block(which: BlockCmd, global: &Global) -> Result<ExitCode> {
    let node = connect(global)?;
    let (block_ref, verify) = match which {
        BlockCmd::Latest { verify } => (BlockRef::Latest, verify),
        BlockCmd::Get { index: Some(i), verify, .. } => (BlockRef::Index(i), verify),
        BlockCmd::Get { hash: Some(h), verify, .. } => {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut hash)
                .map_err(|_| anyhow!("{h:?} is not a block hash (64 hex digits)"))?;
            (BlockRef::Hash(hash), verify)
        }
        BlockCmd::Get { query: Some(q), verify, .. } => (BlockRef::Query(parse_query(&q)?), verify),
        BlockCmd::Get { .. } => bail!("say which block: --index N, --hash H or --query ID"),
    };
    if verify {
        return verified_block(&node, block_ref, global);
    }
    let block = match block_ref {
        BlockRef::Latest => Some(node.block_latest()?),
        BlockRef::Index(i) => node.block_by_index(i)?,
        BlockRef::Hash(h) => node.block_by_hash(&h)?,
        BlockRef::Query(q) => node.block_by_query(&q)?,
    }
    .ok_or_else(|| anyhow!("there is no {block_ref} (for a query: unknown or not finalized)"))?;
    let forward = node.forward_links(block.index)?;
    let view = block_view(&block, &forward);
    emit(global, &view, || render_block(&view))?;
    Ok(ExitCode::SUCCESS)
}

/// `lemal block ... --verify`: the block, its light verification, and the forward walk from it
/// (from block 0 for the latest block) to the latest block.
#[derive(Serialize)]
struct VerifiedBlock {
    block: BlockView,
    verification: VerifyReport,
    ancestry: AncestryReport,
    verified: bool,
}

fn verified_block(node: &Node, which: BlockRef, global: &Global) -> Result<ExitCode> {
    let trust = trust_root(global, node)?;
    eprintln!("verifying {which} against {}", node.url());
    let client = match LightClient::new(node, &trust) {
        Ok(c) => c,
        Err(e) => return light_failure(global, e),
    };
    let outcome = client.verify(which).and_then(|(verification, block, _)| {
        let from = if which == BlockRef::Latest { BlockRef::Index(0) } else { which };
        eprintln!("walking forward links from {from} to the latest block");
        let ancestry = light::verify_ancestry_with(&client, from)?;
        let forward = light::SkipchainState::forward_links(&client, block.index)?;
        Ok((block_view(&block, &forward), verification, ancestry))
    });
    let (view, verification, ancestry) = match outcome {
        Ok(parts) => parts,
        Err(e) => return light_failure(global, e),
    };
    let doc =
        VerifiedBlock { block: view, verified: verification.verified, verification, ancestry };
    emit(global, &doc, || {
        let mut s = render_block(&doc.block);
        s.push_str(&render_verify(&doc.verification));
        let a = &doc.ancestry;
        let _ = writeln!(
            s,
            "ancestry: block {} reaches the latest block {} in {} hops{}",
            a.from.index,
            a.latest.index,
            a.hops.len(),
            a.hops.iter().fold(String::new(), |acc, h| acc
                + &format!(" {}→{} (level {})", h.from, h.to, h.level))
        );
        s
    })?;
    Ok(exit(doc.verified))
}

// ---------------------------------------------------------------------------------------------
// lemal proofs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct ProofsView {
    query: String,
    status: String,
    proofs: Vec<ProofView>,
    missing: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ProofView {
    key: String,
    kind: String,
    creator: String,
    index: u32,
    ledger_height: u64,
    inputs: Vec<String>,
    outputs: usize,
    proof_bytes: usize,
    hash: String,
}

fn status_text(progress: Option<&QueryProgress>) -> String {
    match progress.map(|p| p.status) {
        None => "unknown".into(),
        Some(QueryStatus::Collecting) => "collecting proofs".into(),
        Some(QueryStatus::Committing { since }) => format!("collecting verdicts since {since}"),
        Some(QueryStatus::Finalized { block }) => format!("finalized in skipblock {block}"),
    }
}

/// `lemal proofs ID`.
pub fn proofs(id: &str, global: &Global) -> Result<ExitCode> {
    let id = parse_query(id)?;
    let node = connect(global)?;
    let record = node.query_record(&id)?.ok_or_else(|| anyhow!("query {id} is not registered"))?;
    let progress = node.progress(&id)?;
    let records = node.proofs(&id)?;
    let expected = record.registration.spec.expected_proofs(id);
    let view = ProofsView {
        query: id.to_string(),
        status: status_text(progress.as_ref()),
        proofs: records.iter().map(proof_view).collect(),
        missing: expected
            .iter()
            .filter(|k| records.binary_search_by(|r| r.key.cmp(k)).is_err())
            .map(ToString::to_string)
            .collect(),
    };
    emit(global, &view, || {
        let mut s = format!(
            "query {}: {} of {} expected proofs ({})\n",
            view.query,
            view.proofs.len(),
            expected.len(),
            view.status
        );
        let _ = writeln!(
            s,
            "{:<12} {:<8} {:>5} {:>8} {:>7} {:>8} {:>7}  hash",
            "kind", "creator", "index", "height", "inputs", "outputs", "bytes"
        );
        for p in &view.proofs {
            let _ = writeln!(
                s,
                "{:<12} {:<8} {:>5} {:>8} {:>7} {:>8} {:>7}  {}",
                p.kind,
                p.creator,
                p.index,
                p.ledger_height,
                p.inputs.len(),
                p.outputs,
                p.proof_bytes,
                &p.hash[..16]
            );
        }
        for m in &view.missing {
            let _ = writeln!(s, "missing: {m}");
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

fn proof_view(r: &ProofRecord) -> ProofView {
    ProofView {
        key: r.key.to_string(),
        kind: r.key.kind.to_string(),
        creator: r.key.creator.to_string(),
        index: r.key.index,
        ledger_height: r.height,
        inputs: r.inputs.iter().map(ToString::to_string).collect(),
        outputs: r.outputs.len(),
        proof_bytes: r.proof.len(),
        hash: hex::encode(r.hash()),
    }
}

// ---------------------------------------------------------------------------------------------
// lemal bitmap
// ---------------------------------------------------------------------------------------------

/// A bitmap as `lemal bitmap` shows it: rows are proofs, columns verifying nodes; an entry is
/// `None` only while a node has not committed yet.
#[derive(Debug, Serialize)]
struct BitmapView {
    query: String,
    finalized: bool,
    proofs: Vec<String>,
    verifiers: Vec<String>,
    rows: Vec<Vec<Option<u8>>>,
    counts: Counts,
    entries: Vec<Entry>,
}

#[derive(Debug, Serialize)]
struct Entry {
    key: String,
    value: u8,
}

fn bitmap_view(query: &QueryId, bitmap: &Bitmap, finalized: bool) -> BitmapView {
    let cols = bitmap.verifiers.len();
    BitmapView {
        query: query.to_string(),
        finalized,
        proofs: bitmap.proofs.iter().map(ToString::to_string).collect(),
        verifiers: names(&bitmap.verifiers),
        rows: bitmap
            .verdicts
            .chunks(cols.max(1))
            .map(|row| row.iter().map(|v| Some(v.value())).collect())
            .collect(),
        counts: Counts::of(&bitmap.verdicts),
        entries: bitmap.entries().map(|(key, v)| Entry { key, value: v.value() }).collect(),
    }
}

/// The bitmap of a query still collecting verdicts: the commits so far, other columns empty.
fn partial_view(
    query: &QueryId,
    expected: &[ProofKey],
    verifiers: &[EntityId],
    commits: &[BitmapCommitRecord],
) -> BitmapView {
    let column = |vn: &EntityId| commits.iter().find(|c| c.vn == *vn);
    let rows = (0..expected.len())
        .map(|row| {
            verifiers
                .iter()
                .map(|vn| column(vn).and_then(|c| c.verdicts.get(row)).map(|v| v.value()))
                .collect()
        })
        .collect();
    let mut entries = Vec::new();
    for (row, key) in expected.iter().enumerate() {
        for vn in verifiers {
            if let Some(v) = column(vn).and_then(|c| c.verdicts.get(row)) {
                entries.push(Entry { key: key.bitmap_key(*vn), value: v.value() });
            }
        }
    }
    BitmapView {
        query: query.to_string(),
        finalized: false,
        proofs: expected.iter().map(ToString::to_string).collect(),
        verifiers: names(verifiers),
        rows,
        counts: Counts::of(commits.iter().flat_map(|c| &c.verdicts)),
        entries,
    }
}

fn render_bitmap(v: &BitmapView) -> String {
    let mut s = format!(
        "bitmap of query {}{}\n",
        v.query,
        if v.finalized { "" } else { " (not finalized: the commits so far)" }
    );
    let labels: Vec<String> = v
        .proofs
        .iter()
        .map(|k| k.split_once('/').map_or(k.as_str(), |(_, rest)| rest).to_owned())
        .collect();
    let width = labels.iter().map(String::len).max().unwrap_or(5).max(5);
    let _ = write!(s, "{:<width$}", "proof");
    for vn in &v.verifiers {
        let _ = write!(s, " {vn:>5}");
    }
    s.push('\n');
    for (label, row) in labels.iter().zip(&v.rows) {
        let _ = write!(s, "{label:<width$}");
        for cell in row {
            match cell {
                Some(x) => {
                    let _ = write!(s, " {x:>5}");
                }
                None => s.push_str("     -"),
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "{}", v.counts);
    s
}

/// `lemal bitmap ID`.
pub fn bitmap(id: &str, global: &Global) -> Result<ExitCode> {
    let id = parse_query(id)?;
    let node = connect(global)?;
    let view = match node.block_by_query(&id)? {
        Some(SkipBlock { payload: BlockPayload::Query(q), .. }) => {
            bitmap_view(&id, &q.bitmap, true)
        }
        Some(_) => bail!("the node serves a non-query block for query {id}"),
        None => {
            let record =
                node.query_record(&id)?.ok_or_else(|| anyhow!("query {id} is not registered"))?;
            let expected = record.registration.spec.expected_proofs(id);
            let roster = node.roster()?;
            partial_view(&id, &expected, &roster.vn_ids(), &node.bitmaps(&id)?)
        }
    };
    emit(global, &view, || render_bitmap(&view))?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// lemal verify, lemal audit
// ---------------------------------------------------------------------------------------------

/// A verification or audit that could not be carried out, as one JSON document.
#[derive(Serialize)]
struct Failure {
    verified: bool,
    ok: bool,
    error: String,
}

/// Report an error of the light client: in JSON mode as a document on stdout, otherwise as the
/// command's error; the exit code says whether the check ran (1) or could not (3).
pub(super) fn light_failure(global: &Global, e: LightError) -> Result<ExitCode> {
    if global.json {
        eprintln!("lemal: {e}");
        emit(global, &Failure { verified: false, ok: false, error: e.to_string() }, String::new)?;
        return Ok(ExitCode::from(exit_code_of_light(&e)));
    }
    Err(e.into())
}

fn render_verify(r: &VerifyReport) -> String {
    let mut s = String::new();
    let b = &r.block;
    let _ = writeln!(
        s,
        "skipblock {} {}{}",
        b.index,
        b.hash,
        b.query_id.as_ref().map_or(String::new(), |q| format!(" (query {q})"))
    );
    let h = &r.header;
    let _ = writeln!(
        s,
        "state height {} proven by header {} of {}: {}/{} voting power signed",
        h.state_height, h.header_height, h.chain_id, h.signed_power, h.total_power
    );
    let _ = writeln!(
        s,
        "signed by validator set {} ({} validators)\ntrust root: {}",
        h.validators_hash, h.validators, h.trust
    );
    let width = r.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &r.checks {
        let mark = if c.passed { " ok " } else { "FAIL" };
        let _ = writeln!(s, "  [{mark}] {:<width$}  {}", c.name, c.detail);
    }
    let _ = writeln!(s, "{}", if r.verified { "VERIFIED" } else { "NOT VERIFIED" });
    s
}

/// The chain's verdicts on a query's challenged proofs, one line each (nothing when none was
/// challenged).
fn render_verdicts(verdicts: &[VerdictSummary]) -> String {
    let mut s = String::new();
    if !verdicts.is_empty() {
        let _ = writeln!(s, "verdicts:");
    }
    for v in verdicts {
        let _ = writeln!(s, "  {v}");
    }
    s
}

/// `lemal verify ID`.
pub fn verify(id: &str, global: &Global) -> Result<ExitCode> {
    let id = parse_query(id)?;
    let node = connect(global)?;
    let trust = trust_root(global, &node)?;
    eprintln!("verifying the skipblock of query {id} against {}", node.url());
    match light::verify_query(&node, &trust, &id) {
        Ok(report) => {
            emit(global, &report, || render_verify(&report) + &render_verdicts(&report.verdicts))?;
            Ok(exit(report.verified))
        }
        Err(e) => light_failure(global, e),
    }
}

pub(super) fn render_audit(r: &AuditReport) -> String {
    let mut s = render_verify(&r.verification);
    let f = &r.findings;
    let wrong: Vec<_> = f.wrong_proofs().collect();
    let _ = writeln!(
        s,
        "\nproofs re-verified locally: {} received, {} wrong, {} missing",
        f.proofs.len(),
        wrong.len(),
        f.missing.len()
    );
    for p in &wrong {
        let _ = writeln!(
            s,
            "  WRONG   {} by {}: {}",
            p.key,
            p.creator,
            p.error.as_ref().map_or("does not verify".to_owned(), ToString::to_string)
        );
    }
    for m in &f.missing {
        let _ = writeln!(s, "  MISSING {m}");
    }
    let _ = writeln!(s, "verifying nodes:");
    for v in &f.verifiers {
        let state = if !v.reported {
            "absent".to_owned()
        } else if v.vrf == VrfStatus::Valid {
            format!("reported, VRF valid, {} proofs selected", v.selected)
        } else {
            format!("reported, VRF unusable: {}", v.vrf)
        };
        let verdict = if v.faithful() { "ok" } else { "FAULTY" };
        let _ = writeln!(s, "  {:<6} {verdict:<7} {state}", v.vn.to_string());
        for d in &v.disagreements {
            let _ = writeln!(
                s,
                "           {}: said {}, expected {}",
                d.entry(),
                d.verdict.value(),
                d.expected.value()
            );
        }
    }
    let _ = writeln!(
        s,
        "result ciphertexts: {}",
        if f.result_consistent {
            "those the ledger's key switches give"
        } else {
            "NOT those the ledger's key switches give"
        }
    );
    if r.ok {
        let _ = writeln!(s, "AUDIT PASSED");
    } else {
        let creators: Vec<String> = wrong.iter().map(|p| p.creator.to_string()).collect();
        let faulty: Vec<String> = f.faulty_verifiers().map(|v| v.vn.to_string()).collect();
        let _ = writeln!(
            s,
            "AUDIT FAILED: block {}; wrong proofs by [{}]; {} missing; faulty verifiers [{}]",
            if r.verification.verified { "verified" } else { "NOT verified" },
            creators.join(", "),
            f.missing.len(),
            faulty.join(", ")
        );
    }
    s
}

/// `lemal audit ID`.
pub fn audit(id: &str, global: &Global) -> Result<ExitCode> {
    let id = parse_query(id)?;
    let node = connect(global)?;
    let trust = trust_root(global, &node)?;
    eprintln!(
        "auditing query {id} against {}: light verification of its skipblock, then every proof \
         re-verified locally",
        node.url()
    );
    match light::audit(&node, &trust, &id) {
        Ok(report) => {
            emit(global, &report, || render_audit(&report))?;
            Ok(exit(report.ok))
        }
        Err(e) => light_failure(global, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemal_contracts::ids::ProofKind;

    fn key(kind: ProofKind, creator: EntityId) -> ProofKey {
        ProofKey { query: QueryId([0xab; 16]), kind, creator, index: 0 }
    }

    fn sample_bitmap() -> Bitmap {
        Bitmap {
            proofs: vec![
                key(ProofKind::Range, EntityId::dp(0)),
                key(ProofKind::Aggregation, EntityId::cn(0)),
            ],
            verifiers: vec![EntityId::vn(0), EntityId::vn(1)],
            verdicts: vec![
                Verdict::Correct,
                Verdict::NotSelected,
                Verdict::Wrong,
                Verdict::NotReceived,
            ],
        }
    }

    #[test]
    fn bitmap_table_has_a_row_per_proof_a_column_per_verifier_and_the_counts() {
        let view = bitmap_view(&QueryId([0xab; 16]), &sample_bitmap(), true);
        assert_eq!(view.rows, [[Some(1), Some(2)], [Some(0), Some(3)]]);
        let text = render_bitmap(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[1].starts_with("proof") && lines[1].contains("vn-0") && lines[1].contains("vn-1")
        );
        assert!(lines[2].starts_with("range/dp-0/0") && lines[2].ends_with("1     2"), "{text}");
        assert!(lines[3].starts_with("aggregation/cn-0/0") && lines[3].ends_with("0     3"));
        assert!(lines[4].contains("0 wrong: 1") && lines[4].contains("3 not received: 1"));
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["entries"][1]["key"], format!("{}/range/dp-0/0/vn-1", "ab".repeat(16)));
        assert_eq!(json["entries"][1]["value"], 2);
    }

    #[test]
    fn partial_bitmap_leaves_the_columns_of_nodes_that_have_not_committed_empty() {
        let b = sample_bitmap();
        let commit = BitmapCommitRecord {
            vn: EntityId::vn(1),
            vrf: lemal_contracts::sampling::VrfProof { preout: [0; 32], proof: [0; 64] },
            verdicts: vec![Verdict::NotSelected, Verdict::Correct],
            height: 9,
        };
        let view = partial_view(&QueryId([0xab; 16]), &b.proofs, &b.verifiers, &[commit]);
        assert!(!view.finalized);
        assert_eq!(view.rows, [[None, Some(2)], [None, Some(1)]]);
        assert_eq!(view.entries.len(), 2);
        assert!(render_bitmap(&view).contains("    -     2"));
    }

    #[test]
    fn block_view_shows_links_and_the_query_summary() {
        let block = SkipBlock {
            index: 4,
            height: 3,
            back_links: vec![[1; 32], [2; 32], [3; 32]],
            ledger_height: 77,
            time: lemal_contracts::state::Timestamp { seconds: 5, nanos: 6 },
            payload: BlockPayload::Query(lemal_contracts::state::QueryPayload {
                query_id: QueryId([0xab; 16]),
                bitmap: sample_bitmap(),
                threshold_ppm: 400_000,
                reported: vec![EntityId::vn(0)],
                absent: vec![EntityId::vn(1)],
                proofs_root: [4; 32],
                result: Vec::new(),
                covered: Vec::new(),
                uncovered: Vec::new(),
            }),
        };
        let view = block_view(&block, &[[9; 32]]);
        assert_eq!(view.hash, hex::encode(block.hash()));
        let text = render_block(&view);
        assert!(text.contains("back link 2") && text.contains(&hex::encode([3u8; 32])));
        assert!(text.contains("forward 0") && text.contains("absent         vn-1"));
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["query"]["counts"]["wrong"], 1);
        assert!(json.get("genesis").is_none());
    }

    #[test]
    fn verify_lists_each_verdict_on_the_query_after_the_checks() {
        assert_eq!(render_verdicts(&[]), "", "no section without verdicts");
        let verdict = |proof: &str, valid, at_fault: &[&str], block| VerdictSummary {
            proof: format!("{}/{proof}", "ab".repeat(16)),
            valid,
            reason: String::new(),
            at_fault: at_fault.iter().map(|e| (*e).to_owned()).collect(),
            challenger: "vn-0".into(),
            block,
        };
        let text = render_verdicts(&[
            verdict("range/dp-0/0", false, &["dp-0", "vn-1"], 7),
            verdict("keyswitch/cn-1/0", true, &[], 8),
        ]);
        let q = "ab".repeat(16);
        assert_eq!(
            text,
            format!(
                "verdicts:\n  {q}/range/dp-0/0 is wrong (skipblock 7); at fault: dp-0, vn-1; \
                 challenged by vn-0\n  {q}/keyswitch/cn-1/0 is right (skipblock 8); at fault: \
                 nobody; challenged by vn-0\n"
            )
        );
    }

    #[test]
    fn malformed_query_ids_are_refused_before_any_request() {
        assert!(parse_query("xyz").is_err());
        assert!(parse_query(&"ab".repeat(16)).is_ok());
    }
}
