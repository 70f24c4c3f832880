//! `lemal tx show HASH`: a committed transaction decoded — who signed what, for which query —
//! with its result code by name, its log and its events.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use lemal_contracts::tx::{RosterChange, Tx, TxBody};
use serde::Serialize;

use super::{connect, emit, Global};

/// `lemal tx` actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Decode a committed transaction and show its result.
    Show {
        /// The transaction hash (64 hex digits, as CometBFT prints it).
        hash: String,
    },
}

/// A committed transaction as `tx show` prints it.
#[derive(Debug, Serialize)]
pub struct TxView {
    /// The hash, hex.
    pub hash: String,
    /// Block height.
    pub height: u64,
    /// Result code (0 = accepted).
    pub code: u32,
    /// The code's name.
    pub code_name: &'static str,
    /// The app's log.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log: String,
    /// Size in bytes.
    pub bytes: usize,
    /// The chain id it names.
    pub chain_id: Option<String>,
    /// Its signer.
    pub signer: Option<String>,
    /// Its kind.
    pub kind: Option<&'static str>,
    /// What it carries, one line.
    pub summary: String,
    /// Its events: `type.key=value`.
    pub events: Vec<String>,
}

/// The kind and a one-line summary of a transaction body.
pub fn describe(body: &TxBody) -> (&'static str, String) {
    match body {
        TxBody::RegisterQuery(r) => (
            "register-query",
            format!(
                "query {}: {:?}, {} DPs, CNs {:?}, threshold {} ppm, noise {}×{} rows",
                r.query_id,
                r.spec.sql,
                r.spec.dps.len(),
                r.spec.cns,
                r.threshold_ppm,
                r.spec.noise.scale,
                r.spec.noise.rows
            ),
        ),
        TxBody::SubmitProof(p) => (
            "submit-proof",
            format!(
                "{} proof of query {} (index {}): {} inputs, {} outputs, {} proof bytes",
                p.kind,
                p.query_id,
                p.index,
                p.inputs.len(),
                p.outputs.len(),
                p.proof.len()
            ),
        ),
        TxBody::CommitBitmap(c) => {
            let counts = c.verdicts.iter().fold([0usize; 4], |mut n, v| {
                n[usize::from(v.value())] += 1;
                n
            });
            (
                "commit-bitmap",
                format!(
                    "bitmap of query {}: {} wrong, {} correct, {} not selected, {} not received",
                    c.query_id, counts[0], counts[1], counts[2], counts[3]
                ),
            )
        }
        TxBody::Challenge(c) => ("challenge", format!("challenge of {}", c.proof)),
        TxBody::ProposeRosterChange(p) => ("propose-roster-change", describe_change(&p.change)),
        TxBody::ApproveRosterChange(a) => {
            ("approve-roster-change", format!("approval of roster proposal {}", a.proposal))
        }
    }
}

fn describe_change(change: &RosterChange) -> String {
    format!("proposal to {change}")
}

fn render(v: &TxView) -> String {
    let mut s = format!("transaction {}\n", v.hash);
    s += &format!("  height   {}\n", v.height);
    s += &format!("  result   {} ({})", v.code, v.code_name);
    if !v.log.is_empty() {
        s += &format!(": {}", v.log);
    }
    s += "\n";
    if let (Some(kind), Some(signer), Some(chain)) = (&v.kind, &v.signer, &v.chain_id) {
        s += &format!("  kind     {kind}, signed by {signer} for chain {chain}\n");
    }
    s += &format!("  carries  {} ({} bytes)\n", v.summary, v.bytes);
    for e in &v.events {
        s += &format!("  event    {e}\n");
    }
    s
}

/// Run a `tx` action.
pub fn run(action: Action, global: &Global) -> Result<ExitCode> {
    let Action::Show { hash } = action;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hash.trim(), &mut h)
        .map_err(|_| anyhow!("{hash:?} is not a transaction hash (64 hex digits)"))?;
    let node = connect(global)?;
    let Some(tx) = node.committed_tx(h)? else {
        return Err(anyhow!("{} knows no committed transaction {}", node.url(), hex::encode(h)));
    };
    let decoded = Tx::decode(&tx.bytes);
    let (kind, summary) = match &decoded {
        Ok(t) => {
            let (k, s) = describe(&t.body);
            (Some(k), s)
        }
        Err(e) => (None, format!("does not decode: {e}")),
    };
    let view = TxView {
        hash: hex::encode_upper(h),
        height: tx.height,
        code: tx.code,
        code_name: if tx.code == 0 { "ok" } else { lemal_contracts::codes::name(tx.code) },
        log: tx.log,
        bytes: tx.bytes.len(),
        chain_id: decoded.as_ref().ok().map(|t| t.chain_id.clone()),
        signer: decoded.as_ref().ok().map(|t| t.signer.to_string()),
        kind,
        summary,
        events: tx
            .events
            .iter()
            .flat_map(|(kind, attrs)| attrs.iter().map(move |(k, v)| format!("{kind}.{k}={v}")))
            .collect(),
    };
    emit(global, &view, || render(&view))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId};
    use lemal_contracts::tx::{ApproveRosterChange, Challenge};

    #[test]
    fn bodies_are_described_by_kind() {
        let proof = ProofKey {
            query: QueryId([1; 16]),
            kind: ProofKind::Range,
            creator: EntityId::dp(2),
            index: 0,
        };
        let (kind, line) = describe(&TxBody::Challenge(Challenge { proof }));
        assert_eq!(kind, "challenge");
        assert!(line.ends_with("/range/dp-2/0"), "{line}");
        let (kind, line) =
            describe(&TxBody::ApproveRosterChange(ApproveRosterChange { proposal: 3 }));
        assert_eq!(
            (kind, line.as_str()),
            ("approve-roster-change", "approval of roster proposal 3")
        );
    }

    #[test]
    fn the_view_renders_code_names_and_events() {
        let view = TxView {
            hash: "AB".into(),
            height: 7,
            code: 52,
            code_name: lemal_contracts::codes::name(52),
            log: "settled".into(),
            bytes: 120,
            chain_id: Some("c".into()),
            signer: Some("vn-0".into()),
            kind: Some("challenge"),
            summary: "challenge of x".into(),
            events: vec!["lemal.challenge.valid=false".into()],
        };
        let text = render(&view);
        assert!(text.contains("result   52 (already-settled): settled"), "{text}");
        assert!(text.contains("event    lemal.challenge.valid=false"), "{text}");
    }
}
