//! `lemal audit`: every proof of a query re-verified locally from ledger state, and each
//! verifying node's column of the bitmap held against those verdicts and its VRF selection.

use std::collections::BTreeMap;
use std::fmt;

use lemal_contracts::error::ProofError;
use lemal_contracts::ids::{EntityId, ProofKey, QueryId, Verdict};
use lemal_contracts::proofs::{self, ResolveError};
use lemal_contracts::sampling::{self, VrfError};
use lemal_contracts::state::{BitmapCommitRecord, BlockPayload, ProofRecord, QueryPayload, Roster};
use lemal_contracts::tx::RegisterQuery;
use serde::{Serialize, Serializer};

use super::report::VerifyReport;
use super::{BlockRef, LightClient, LightError, Mismatch, TrustRoot};
use crate::parallel::{parallel_map, Panicked};
use crate::rpc::Node;

/// Why a received proof is wrong; in JSON, its text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofFailure {
    /// Its statement cannot be built from the ledger.
    #[error("{0}")]
    Unresolved(#[from] ResolveError),
    /// It does not verify against its statement.
    #[error("{0}")]
    Invalid(#[from] ProofError),
    /// Its verification did not finish.
    #[error("verification panicked")]
    Panicked(#[from] Panicked),
}

/// A verifying node's VRF as the audit found it; in JSON, `valid`, `absent` or why its
/// selection cannot be recomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VrfStatus {
    /// Its VRF proof verifies against its roster key: its selection is recomputed.
    Valid,
    /// It reported nothing.
    Absent,
    /// It reported, but its selection cannot be recomputed.
    Unusable(VrfProblem),
}

/// Why a reporting node's selection cannot be recomputed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VrfProblem {
    /// The node listing the commits serves none for it.
    #[error("no bitmap commit on the ledger")]
    NoCommit,
    /// It has no key in the roster to verify the VRF with.
    #[error("{0} is not in the roster")]
    NotInRoster(EntityId),
    /// The VRF proof of its commit does not verify.
    #[error(transparent)]
    Invalid(#[from] VrfError),
}

impl fmt::Display for VrfStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VrfStatus::Valid => f.write_str("valid"),
            VrfStatus::Absent => f.write_str("absent"),
            VrfStatus::Unusable(why) => why.fmt(f),
        }
    }
}

impl Serialize for VrfStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn as_text<T: fmt::Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// The local verdict on one received proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProofFinding {
    /// The proof key (`query/kind/creator/index`).
    pub key: ProofKey,
    /// The party that submitted it.
    pub creator: EntityId,
    /// Whether it verifies against the statement built from ledger state.
    pub correct: bool,
    /// Why not.
    #[serde(serialize_with = "as_text")]
    pub error: Option<ProofFailure>,
}

/// A verdict of a verifying node that the audit contradicts; in JSON, its bitmap entry as
/// `entry` (`query/kind/creator/index/verifier`), `verdict` and `expected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    /// The proof judged.
    pub proof: ProofKey,
    /// The verifying node.
    pub vn: EntityId,
    /// The node's verdict.
    pub verdict: Verdict,
    /// The verdict the audit expects.
    pub expected: Verdict,
}

impl Disagreement {
    /// The bitmap entry: `query/kind/creator/index/verifier`.
    pub fn entry(&self) -> String {
        self.proof.bitmap_key(self.vn)
    }
}

impl Serialize for Disagreement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Disagreement", 3)?;
        out.serialize_field("entry", &self.entry())?;
        out.serialize_field("verdict", &self.verdict)?;
        out.serialize_field("expected", &self.expected)?;
        out.end()
    }
}

/// What the audit found about one verifying node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifierFinding {
    /// The node.
    pub vn: EntityId,
    /// Whether it committed a bitmap.
    pub reported: bool,
    /// Its VRF: valid, absent, or why its selection could not be recomputed.
    pub vrf: VrfStatus,
    /// How many received proofs its VRF selected.
    pub selected: usize,
    /// Verdicts that contradict the audit.
    pub disagreements: Vec<Disagreement>,
}

impl VerifierFinding {
    /// Whether the node did its part: absent nodes have nothing to answer for here (the bitmap
    /// records their absence); a reporting node needs a valid VRF and no disagreement.
    pub fn faithful(&self) -> bool {
        self.disagreements.is_empty() && (!self.reported || self.vrf == VrfStatus::Valid)
    }
}

/// What re-verifying a query's proofs found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// Each received proof with its local verdict.
    pub proofs: Vec<ProofFinding>,
    /// Expected proofs that never arrived.
    pub missing: Vec<ProofKey>,
    /// Each verifying node.
    pub verifiers: Vec<VerifierFinding>,
    /// Whether the block's result ciphertexts are those the ledger's key switches give.
    pub result_consistent: bool,
}

impl Findings {
    /// The proofs that do not verify.
    pub fn wrong_proofs(&self) -> impl Iterator<Item = &ProofFinding> {
        self.proofs.iter().filter(|p| !p.correct)
    }

    /// The verifying nodes whose verdicts or VRF do not hold up.
    pub fn faulty_verifiers(&self) -> impl Iterator<Item = &VerifierFinding> {
        self.verifiers.iter().filter(|v| !v.faithful())
    }

    /// Whether nothing is wrong.
    pub fn clean(&self) -> bool {
        self.wrong_proofs().next().is_none()
            && self.missing.is_empty()
            && self.faulty_verifiers().next().is_none()
            && self.result_consistent
    }
}

/// The outcome of `lemal audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// The light verification of the query's block.
    pub verification: VerifyReport,
    /// What re-verifying its proofs found.
    pub findings: Findings,
    /// Whether the block verified and nothing is wrong.
    pub ok: bool,
}

/// Re-verify every received proof of a query from ledger state only, and hold each verifying
/// node's column of the bitmap against the local verdicts and its VRF selection.
///
/// Statements are resolved with [`proofs::resolve`] from the registration, the roster and the
/// received records themselves (every input of a proof is a proof of the same query). A proof
/// whose statement cannot be resolved counts as wrong, as it does for the verifying nodes.
/// `threads` proofs are verified at a time.
pub fn audit_proofs(
    chain_id: &str,
    roster: &Roster,
    registration: &RegisterQuery,
    payload: &QueryPayload,
    records: &[ProofRecord],
    commits: &[BitmapCommitRecord],
    threads: usize,
) -> Findings {
    let ledger =
        |k: &ProofKey| records.binary_search_by(|r| r.key.cmp(k)).ok().map(|i| records[i].clone());
    let verify = |r: &ProofRecord| reverify(chain_id, roster, registration, r, &ledger);
    let outcomes: Vec<Result<(), ProofFailure>> = parallel_map(records, threads.min(64), verify)
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|panicked| Err(panicked.into())))
        .collect();
    let proofs: Vec<ProofFinding> = records
        .iter()
        .zip(&outcomes)
        .map(|(r, outcome)| ProofFinding {
            key: r.key,
            creator: r.key.creator,
            correct: outcome.is_ok(),
            error: outcome.as_ref().err().cloned(),
        })
        .collect();
    // Whether each received proof verifies here.
    let local: BTreeMap<ProofKey, bool> =
        records.iter().zip(&outcomes).map(|(r, o)| (r.key, o.is_ok())).collect();
    let bitmap = &payload.bitmap;
    let missing = bitmap.proofs.iter().filter(|k| !local.contains_key(k)).copied().collect();
    let verifiers = bitmap
        .verifiers
        .iter()
        .map(|&vn| {
            let reported = payload.reported.contains(&vn);
            let vrf = match (commits.iter().find(|c| c.vn == vn), roster.signing_key(vn)) {
                (None, _) => Err(VrfProblem::NoCommit),
                (Some(_), None) => Err(VrfProblem::NotInRoster(vn)),
                (Some(c), Some(key)) => {
                    sampling::verify(key, chain_id, &payload.query_id, vn, &c.vrf)
                        .map_err(VrfProblem::from)
                }
            };
            let mut selected = 0;
            let mut disagreements = Vec::new();
            for (key, verdict) in bitmap.column(vn) {
                let valid = local.get(key).copied();
                let received = reported && valid.is_some();
                let chosen = vrf
                    .as_ref()
                    .ok()
                    .map(|output| sampling::is_selected(output, key, registration.threshold_ppm));
                if received && chosen == Some(true) {
                    selected += 1;
                }
                let expected = match chosen {
                    Some(chosen) => Verdict::rule(received, chosen, valid == Some(true)),
                    // Without its VRF the selection is unknown: any verdict the rule allows for
                    // either selection stands, and a 0/1 verdict is held against the proof.
                    None if verdict.allowed(received, None, valid) => verdict,
                    None => Verdict::rule(received, true, valid == Some(true)),
                };
                if verdict != expected {
                    disagreements.push(Disagreement { proof: *key, vn, verdict, expected });
                }
            }
            VerifierFinding {
                vn,
                reported,
                vrf: match (vrf, reported) {
                    (Ok(_), _) => VrfStatus::Valid,
                    (Err(_), false) => VrfStatus::Absent,
                    (Err(why), true) => VrfStatus::Unusable(why),
                },
                selected,
                disagreements,
            }
        })
        .collect();
    let result = proofs::result_ciphertexts(registration, &ledger).unwrap_or_default();
    Findings { proofs, missing, verifiers, result_consistent: result == payload.result }
}

/// Verify a proof record against its statement built from the ledger, as the verifying nodes
/// and the chain's challenge settlement do.
pub(super) fn reverify(
    chain_id: &str,
    roster: &Roster,
    registration: &RegisterQuery,
    record: &ProofRecord,
    ledger: &impl proofs::Ledger,
) -> Result<(), ProofFailure> {
    let statement = proofs::resolve(chain_id, roster, registration, record, ledger)?;
    Ok(statement.verify(&record.proof)?)
}

/// `lemal audit`: verify the query's block as a light client, then re-verify every proof
/// locally and check every verifying node's verdicts ([`audit_proofs`]). The registration and
/// roster are proven against the same header as the block; the proof bodies are authenticated
/// by the block's proofs root; the bitmap commits (listed unproven) serve only for their VRF
/// proofs, which verify against the roster's keys.
pub fn audit(node: &Node, trust: &TrustRoot, id: &QueryId) -> Result<AuditReport, LightError> {
    let client = LightClient::new(node, trust)?;
    let (verification, block, records) = client.verify(BlockRef::Query(*id))?;
    let BlockPayload::Query(payload) = &block.payload else {
        return Err(Mismatch::NotQueryBlock { query: *id }.into());
    };
    let roster = client.roster()?;
    let record = client.query_record(id)?;
    let commits = node.bitmaps(id)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let findings = audit_proofs(
        &verification.header.chain_id,
        &roster,
        &record.registration,
        payload,
        &records,
        &commits,
        threads,
    );
    let ok = verification.verified && findings.clean();
    Ok(AuditReport { verification, findings, ok })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::light::check_proofs_root;
    use crate::light::testkit::{key_of, run};
    use lemal_contracts::ids::{EntityId, ProofKind};

    #[test]
    fn audit_of_an_honest_query_finds_nothing_wrong() {
        let run = run(None, 600_000);
        let findings = run.audit();
        assert!(findings.clean(), "{findings:#?}");
        assert_eq!(findings.proofs.len(), 7);
        assert!(findings.verifiers.iter().all(|v| v.vrf == VrfStatus::Valid && v.reported));
        assert!(findings.verifiers.iter().map(|v| v.selected).sum::<usize>() > 0);
        assert!(check_proofs_root(&run.payload, &run.records).passed);
        assert!(run.bitmap_check().passed, "{:?}", run.bitmap_check());
    }

    #[test]
    fn audit_names_the_data_provider_whose_range_proof_is_wrong() {
        let run = run(Some((EntityId::dp(1), ProofKind::Range)), 1_000_000);
        let findings = run.audit();
        let wrong: Vec<_> = findings.wrong_proofs().map(|p| p.creator).collect();
        assert_eq!(wrong, [EntityId::dp(1)]);
        assert!(findings.wrong_proofs().all(|p| p.error.is_some()));
        // Every verifier checked everything and said so: none of them is at fault.
        assert_eq!(findings.faulty_verifiers().count(), 0);
        assert!(!findings.clean());
    }

    #[test]
    fn audit_names_a_computing_node_whose_key_switch_is_wrong() {
        let run = run(Some((EntityId::cn(1), ProofKind::KeySwitch)), 1_000_000);
        let findings = run.audit();
        let wrong: Vec<_> = findings.wrong_proofs().map(|p| p.key).collect();
        assert_eq!(wrong, [key_of(&run, ProofKind::KeySwitch, EntityId::cn(1))]);
    }

    #[test]
    fn audit_names_a_verifier_that_approved_a_wrong_proof() {
        let mut run = run(Some((EntityId::dp(2), ProofKind::Range)), 600_000);
        let bad = key_of(&run, ProofKind::Range, EntityId::dp(2));
        let (_, vn) = run.find(true, Some(bad));
        let (findings, d) = run.blame(true, Some(bad), Verdict::Correct);
        assert_eq!(
            d,
            Disagreement {
                proof: bad,
                vn: EntityId::vn(vn),
                verdict: Verdict::Correct,
                expected: Verdict::Wrong
            }
        );
        assert_eq!(findings.faulty_verifiers().next().expect("one").disagreements.len(), 1);
    }

    #[test]
    fn audit_names_a_verifier_that_condemned_a_correct_proof() {
        let (findings, _) = run(None, 600_000).blame(true, None, Verdict::Wrong);
        assert_eq!(findings.wrong_proofs().count(), 0);
    }

    #[test]
    fn findings_serialize_to_the_same_json_text_as_the_report_shows() {
        let mut run = run(Some((EntityId::dp(1), ProofKind::Range)), 1_000_000);
        let bad = key_of(&run, ProofKind::Range, EntityId::dp(1));
        run.set_verdict(bad, 0, Verdict::Correct);
        let gone = key_of(&run, ProofKind::KeySwitch, EntityId::cn(1));
        run.records.retain(|r| r.key != gone);
        let json = serde_json::to_value(run.audit()).expect("json");
        let wrong = json["proofs"]
            .as_array()
            .expect("proofs")
            .iter()
            .find(|p| !p["correct"].as_bool().unwrap_or(true))
            .expect("a wrong proof");
        assert_eq!(wrong["key"], bad.to_string());
        assert_eq!(wrong["creator"], "dp-1");
        assert!(wrong["error"].is_string());
        assert_eq!(json["missing"][0], gone.to_string());
        let vn0 = &json["verifiers"][0];
        assert_eq!(vn0["vn"], "vn-0");
        assert_eq!(vn0["vrf"], "valid");
        let d = &vn0["disagreements"][0];
        assert_eq!(d["entry"], bad.bitmap_key(EntityId::vn(0)));
        assert_eq!((d["verdict"].as_u64(), d["expected"].as_u64()), (Some(1), Some(0)));
    }

    #[test]
    fn audit_names_a_verifier_that_skipped_a_proof_it_was_selected_for() {
        let (_, d) = run(None, 600_000).blame(true, None, Verdict::NotSelected);
        assert_eq!((d.verdict, d.expected), (Verdict::NotSelected, Verdict::Correct));
    }

    #[test]
    fn audit_names_a_verifier_that_claims_a_proof_it_was_not_selected_for() {
        let (_, d) = run(None, 600_000).blame(false, None, Verdict::Correct);
        assert_eq!((d.verdict, d.expected), (Verdict::Correct, Verdict::NotSelected));
    }

    #[test]
    fn audit_flags_a_verifier_whose_vrf_does_not_verify() {
        let mut run = run(None, 600_000);
        let other = run.commits[1].vrf;
        run.commits[0].vrf = other;
        let findings = run.audit();
        let faulty: Vec<_> = findings.faulty_verifiers().map(|v| v.vn).collect();
        assert_eq!(faulty, [EntityId::vn(0)]);
        assert_ne!(findings.verifiers[0].vrf, VrfStatus::Valid);
        // A reporting node whose commit is not listed cannot show its selection either.
        run.commits.remove(0);
        assert_eq!(run.audit().faulty_verifiers().count(), 1);
    }

    #[test]
    fn audit_does_not_blame_an_absent_verifier_but_checks_its_column() {
        let mut run = run(None, 600_000);
        run.payload.reported.retain(|v| *v != EntityId::vn(2));
        run.payload.absent.push(EntityId::vn(2));
        run.commits.retain(|c| c.vn != EntityId::vn(2));
        for key in run.payload.bitmap.proofs.clone() {
            run.set_verdict(key, 2, Verdict::NotReceived);
        }
        let findings = run.audit();
        assert!(findings.clean(), "{findings:#?}");
        assert_eq!(findings.verifiers[2].vrf, VrfStatus::Absent);
        assert!(run.bitmap_check().passed);
        // An absent node with a verdict in the block is a contradiction.
        run.set_verdict(run.payload.bitmap.proofs[0], 2, Verdict::Correct);
        assert_eq!(run.audit().faulty_verifiers().count(), 1);
        assert!(!run.bitmap_check().passed);
    }

    #[test]
    fn audit_names_proofs_that_never_arrived() {
        let mut run = run(None, 1_000_000);
        let gone = key_of(&run, ProofKind::KeySwitch, EntityId::cn(1));
        run.records.retain(|r| r.key != gone);
        for vn in 0..3 {
            run.set_verdict(gone, vn, Verdict::NotReceived);
        }
        run.payload.result = Vec::new();
        let findings = run.audit();
        assert_eq!(findings.missing, [gone]);
        assert_eq!(findings.faulty_verifiers().count(), 0);
        assert!(findings.result_consistent);
        assert!(!findings.clean());
    }

    #[test]
    fn audit_catches_a_result_the_key_switches_do_not_give() {
        let mut run = run(None, 1_000_000);
        run.payload.result[0] = run.payload.result[0] + run.payload.result[0];
        let findings = run.audit();
        assert!(!findings.result_consistent);
        assert!(!findings.clean());
    }
}
