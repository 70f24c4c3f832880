//! `lemal audit`: every proof of a query re-verified locally from ledger state, and each
//! verifying node's column of the bitmap held against those verdicts and its VRF selection.

use std::collections::BTreeMap;

use lemal_contracts::ids::{ProofKey, QueryId, Verdict};
use lemal_contracts::proofs;
use lemal_contracts::sampling;
use lemal_contracts::state::{BitmapCommitRecord, BlockPayload, ProofRecord, QueryPayload, Roster};
use lemal_contracts::tx::RegisterQuery;
use serde::Serialize;

use super::report::VerifyReport;
use super::{BlockRef, LightClient, LightError, TrustRoot};
use crate::rpc::Node;

/// The local verdict on one received proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProofFinding {
    /// The proof key (`query/kind/creator/index`).
    pub key: String,
    /// The party that submitted it.
    pub creator: String,
    /// Whether it verifies against the statement built from ledger state.
    pub correct: bool,
    /// Why not.
    pub error: Option<String>,
}

/// A verdict of a verifying node that the audit contradicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    /// The bitmap key (`query/kind/creator/index/verifier`).
    pub entry: String,
    /// The node's verdict.
    pub verdict: u8,
    /// The verdict the audit expects.
    pub expected: u8,
}

/// What the audit found about one verifying node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifierFinding {
    /// The node.
    pub vn: String,
    /// Whether it committed a bitmap.
    pub reported: bool,
    /// Its VRF: `valid`, or why its selection could not be recomputed.
    pub vrf: String,
    /// How many received proofs its VRF selected.
    pub selected: usize,
    /// Verdicts that contradict the audit.
    pub disagreements: Vec<Disagreement>,
}

impl VerifierFinding {
    /// Whether the node did its part: absent nodes have nothing to answer for here (the bitmap
    /// records their absence); a reporting node needs a valid VRF and no disagreement.
    pub fn faithful(&self) -> bool {
        self.disagreements.is_empty() && (!self.reported || self.vrf == "valid")
    }
}

/// What re-verifying a query's proofs found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// Each received proof with its local verdict.
    pub proofs: Vec<ProofFinding>,
    /// Expected proofs that never arrived.
    pub missing: Vec<String>,
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
    let verdict_of = |r: &ProofRecord| -> Result<(), String> {
        let statement = proofs::resolve(chain_id, roster, registration, r, &ledger)
            .map_err(|e| e.to_string())?;
        statement.verify(&r.proof).map_err(|e| e.to_string())
    };
    let verdict_of = &verdict_of;
    let chunk = records.len().div_ceil(threads.clamp(1, 64)).max(1);
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| (part.len(), s.spawn(move || part.iter().map(verdict_of).collect())))
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                h.join().unwrap_or_else(|_| vec![Err("verification panicked".to_owned()); n])
            })
            .collect()
    });
    let proofs: Vec<ProofFinding> = records
        .iter()
        .zip(&outcomes)
        .map(|(r, outcome)| ProofFinding {
            key: r.key.to_string(),
            creator: r.key.creator.to_string(),
            correct: outcome.is_ok(),
            error: outcome.as_ref().err().cloned(),
        })
        .collect();
    let local: BTreeMap<ProofKey, Verdict> = records
        .iter()
        .zip(&outcomes)
        .map(|(r, o)| (r.key, if o.is_ok() { Verdict::Correct } else { Verdict::Wrong }))
        .collect();
    let bitmap = &payload.bitmap;
    let missing =
        bitmap.proofs.iter().filter(|k| !local.contains_key(k)).map(|k| k.to_string()).collect();
    let cols = bitmap.verifiers.len();
    let verifiers = bitmap
        .verifiers
        .iter()
        .enumerate()
        .map(|(col, &vn)| {
            let reported = payload.reported.contains(&vn);
            let vrf = match (commits.iter().find(|c| c.vn == vn), roster.signing_key(vn)) {
                (None, _) => Err("no bitmap commit on the ledger".to_owned()),
                (Some(_), None) => Err(format!("{vn} is not in the roster")),
                (Some(c), Some(key)) => {
                    sampling::verify(key, chain_id, &payload.query_id, vn, &c.vrf)
                        .map_err(|e| e.to_string())
                }
            };
            let mut selected = 0;
            let mut disagreements = Vec::new();
            for (row, key) in bitmap.proofs.iter().enumerate() {
                let Some(&verdict) = bitmap.verdicts.get(row * cols + col) else {
                    continue;
                };
                let expected = match (reported, local.get(key), &vrf) {
                    (false, _, _) | (true, None, _) => Verdict::NotReceived,
                    (true, Some(&mine), Ok(output)) => {
                        if sampling::is_selected(output, key, registration.threshold_ppm) {
                            selected += 1;
                            mine
                        } else {
                            Verdict::NotSelected
                        }
                    }
                    // Without its VRF the selection is unknown: only a 0/1 verdict is checked.
                    (true, Some(&mine), Err(_)) => match verdict {
                        Verdict::Wrong | Verdict::Correct => mine,
                        other => other,
                    },
                };
                if verdict != expected {
                    disagreements.push(Disagreement {
                        entry: key.bitmap_key(vn),
                        verdict: verdict.value(),
                        expected: expected.value(),
                    });
                }
            }
            VerifierFinding {
                vn: vn.to_string(),
                reported,
                vrf: match (&vrf, reported) {
                    (Ok(_), _) => "valid".to_owned(),
                    (Err(_), false) => "absent".to_owned(),
                    (Err(e), true) => e.clone(),
                },
                selected,
                disagreements,
            }
        })
        .collect();
    let result = proofs::result_ciphertexts(registration, &ledger).unwrap_or_default();
    Findings { proofs, missing, verifiers, result_consistent: result == payload.result }
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
        return Err(LightError::Mismatch(format!("the block of query {id} records no query")));
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
        assert!(findings.verifiers.iter().all(|v| v.vrf == "valid" && v.reported));
        assert!(findings.verifiers.iter().map(|v| v.selected).sum::<usize>() > 0);
        assert!(check_proofs_root(&run.payload, &run.records).passed);
        assert!(run.bitmap_check().passed, "{:?}", run.bitmap_check());
    }

    #[test]
    fn audit_names_the_data_provider_whose_range_proof_is_wrong() {
        let run = run(Some((EntityId::dp(1), ProofKind::Range)), 1_000_000);
        let findings = run.audit();
        let wrong: Vec<_> = findings.wrong_proofs().map(|p| p.creator.as_str()).collect();
        assert_eq!(wrong, ["dp-1"]);
        assert!(findings.wrong_proofs().all(|p| p.error.is_some()));
        // Every verifier checked everything and said so: none of them is at fault.
        assert_eq!(findings.faulty_verifiers().count(), 0);
        assert!(!findings.clean());
    }

    #[test]
    fn audit_names_a_computing_node_whose_key_switch_is_wrong() {
        let run = run(Some((EntityId::cn(1), ProofKind::KeySwitch)), 1_000_000);
        let findings = run.audit();
        let wrong: Vec<_> = findings.wrong_proofs().map(|p| p.key.clone()).collect();
        assert_eq!(wrong, [key_of(&run, ProofKind::KeySwitch, EntityId::cn(1)).to_string()]);
    }

    #[test]
    fn audit_names_a_verifier_that_approved_a_wrong_proof() {
        let mut run = run(Some((EntityId::dp(2), ProofKind::Range)), 600_000);
        let bad = key_of(&run, ProofKind::Range, EntityId::dp(2));
        let (_, vn) = run.find(true, Some(bad));
        let (findings, d) = run.blame(true, Some(bad), Verdict::Correct);
        assert_eq!(
            d,
            Disagreement { entry: bad.bitmap_key(EntityId::vn(vn)), verdict: 1, expected: 0 }
        );
        assert_eq!(findings.faulty_verifiers().next().expect("one").disagreements.len(), 1);
    }

    #[test]
    fn audit_names_a_verifier_that_condemned_a_correct_proof() {
        let (findings, _) = run(None, 600_000).blame(true, None, Verdict::Wrong);
        assert_eq!(findings.wrong_proofs().count(), 0);
    }

    #[test]
    fn audit_names_a_verifier_that_skipped_a_proof_it_was_selected_for() {
        let (_, d) = run(None, 600_000).blame(true, None, Verdict::NotSelected);
        assert_eq!((d.verdict, d.expected), (2, 1));
    }

    #[test]
    fn audit_names_a_verifier_that_claims_a_proof_it_was_not_selected_for() {
        let (_, d) = run(None, 600_000).blame(false, None, Verdict::Correct);
        assert_eq!((d.verdict, d.expected), (1, 2));
    }

    #[test]
    fn audit_flags_a_verifier_whose_vrf_does_not_verify() {
        let mut run = run(None, 600_000);
        let other = run.commits[1].vrf;
        run.commits[0].vrf = other;
        let findings = run.audit();
        let faulty: Vec<_> = findings.faulty_verifiers().map(|v| v.vn.clone()).collect();
        assert_eq!(faulty, ["vn-0"]);
        assert_ne!(findings.verifiers[0].vrf, "valid");
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
        for row in 0..run.payload.bitmap.proofs.len() {
            run.set_verdict(row, 2, Verdict::NotReceived);
        }
        let findings = run.audit();
        assert!(findings.clean(), "{findings:#?}");
        assert_eq!(findings.verifiers[2].vrf, "absent");
        assert!(run.bitmap_check().passed);
        // An absent node with a verdict in the block is a contradiction.
        run.set_verdict(0, 2, Verdict::Correct);
        assert_eq!(run.audit().faulty_verifiers().count(), 1);
        assert!(!run.bitmap_check().passed);
    }

    #[test]
    fn audit_names_proofs_that_never_arrived() {
        let mut run = run(None, 1_000_000);
        let gone = key_of(&run, ProofKind::KeySwitch, EntityId::cn(1));
        run.records.retain(|r| r.key != gone);
        let row = run.row(&gone);
        for vn in 0..3 {
            run.set_verdict(row, vn, Verdict::NotReceived);
        }
        run.payload.result = Vec::new();
        let findings = run.audit();
        assert_eq!(findings.missing, [gone.to_string()]);
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
