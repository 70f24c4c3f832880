//! `lemal challenge` and `lemal audit --challenge`: ask the chain to settle proofs of a finalized
//! query.
//!
//! A challenge names one proof; every node re-verifies it in FinalizeBlock and records a verdict
//! (right or wrong, who is at fault) as a skipblock. The challenger signs with its key from the
//! localnet's keyring under `--home`. A block spends at most the chain's challenge budget; a
//! challenge refused for that (code 54) is filed again for a later block.
//!
//! Exit codes: 0 when every challenge was accepted (or, for `audit --challenge`, had already
//! been settled); 1 when one was refused, or the audited block did not verify; 3 when the node
//! could not be asked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Args;
use lemal_contracts::ids::{EntityId, ProofKey, QueryId, Verdict};
use lemal_contracts::state::VerdictRecord;
use lemal_contracts::tx::{Challenge, TxBody};
use serde::Serialize;

use super::inspect::{light_failure, parse_query, render_audit};
use super::submit::{Rejection, Signer, Submitted, ALREADY_SETTLED, CHALLENGE_BUDGET};
use super::{connect, emit, exit, trust::trust_root, Global};
use crate::light::{self, AuditReport, Findings, VerdictSummary};
use crate::rpc::Node;

/// How many times a challenge refused for the block's challenge budget is filed again.
const BUDGET_RETRIES: u32 = 10;

/// Who signs a challenge, and how long to wait for it.
#[derive(Debug, Clone, Args)]
pub struct ChallengerArgs {
    /// The roster member that signs the challenge, with its key from the localnet under --home.
    #[arg(long = "as", value_name = "ENTITY", default_value = "vn-0")]
    pub signer: EntityId,
    /// Seconds to wait for each challenge's block and verdict.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

/// Options of `lemal challenge`.
#[derive(Debug, Args)]
pub struct ChallengeArgs {
    /// The query id.
    pub id: String,
    /// The proof: `kind/creator/index` (e.g. `keyswitch/cn-1/0`) or a full proof key
    /// `query/kind/creator/index`.
    pub proof: String,
    /// Who signs.
    #[command(flatten)]
    pub challenger: ChallengerArgs,
}

/// The proof a `PROOF` argument names: `kind/creator/index` of query `id`, or a full proof key,
/// which must be of query `id`.
fn parse_proof(id: &QueryId, proof: &str) -> Result<ProofKey> {
    let text = proof.trim();
    let full = match text.split('/').count() {
        3 => format!("{id}/{text}"),
        4 => text.to_owned(),
        _ => bail!(
            "{proof:?} is not a proof: expected kind/creator/index or query/kind/creator/index"
        ),
    };
    let key: ProofKey = full.parse().map_err(|e| anyhow!("{proof:?} is not a proof: {e}"))?;
    ensure!(key.query == *id, "proof {key} is of query {}, not of {id}", key.query);
    Ok(key)
}

/// What became of one challenge. In JSON, a settled proof's document holds the verdict's fields
/// (`proof`, `valid`, `reason`, `at_fault`, `challenger`, and `block`, the verdict's skipblock)
/// beside `outcome`, `signer` and, for this challenge, `height` (its CometBFT block) and `tx`.
#[derive(Debug, Serialize)]
struct ChallengeReport {
    /// Who signed the challenge.
    signer: String,
    /// The outcome.
    #[serde(flatten)]
    outcome: ChallengeOutcome,
}

#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum ChallengeOutcome {
    /// Accepted in the block at `height`; the chain's verdict.
    Settled {
        height: u64,
        tx: String,
        #[serde(flatten)]
        verdict: VerdictSummary,
    },
    /// An earlier challenge settled the proof.
    AlreadySettled {
        #[serde(flatten)]
        verdict: VerdictSummary,
    },
    /// Refused.
    Rejected { proof: String, rejection: Rejection },
}

impl ChallengeReport {
    /// Whether the proof is settled (by this challenge or an earlier one).
    fn settled(&self) -> bool {
        !matches!(self.outcome, ChallengeOutcome::Rejected { .. })
    }

    fn already_settled(signer: EntityId, record: &VerdictRecord) -> Self {
        ChallengeReport {
            signer: signer.to_string(),
            outcome: ChallengeOutcome::AlreadySettled { verdict: VerdictSummary::of(record) },
        }
    }
}

impl fmt::Display for ChallengeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = |v: &VerdictSummary| {
            if v.reason.is_empty() {
                String::new()
            } else {
                format!("; reason: {}", v.reason)
            }
        };
        match &self.outcome {
            ChallengeOutcome::Settled { height, verdict, .. } => {
                write!(f, "settled in block {height}: {verdict}{}", reason(verdict))
            }
            ChallengeOutcome::AlreadySettled { verdict } => {
                write!(f, "already settled: {verdict}{}", reason(verdict))
            }
            ChallengeOutcome::Rejected { proof, rejection } => write!(f, "{proof}: {rejection}"),
        }
    }
}

/// File one challenge and read the chain's verdict back; a challenge refused for the block's
/// budget is signed and sent again, for a later block.
fn file(
    node: &Node,
    signer: &Signer,
    proof: ProofKey,
    timeout: Duration,
) -> Result<ChallengeReport> {
    let mut retries = 0;
    let outcome = loop {
        match signer.submit(node, TxBody::Challenge(Challenge { proof }), timeout)? {
            Submitted::Rejected(r) if r.code == CHALLENGE_BUDGET && retries < BUDGET_RETRIES => {
                retries += 1;
                eprintln!("{proof}: {r}; filing it again");
            }
            Submitted::Rejected(rejection) => {
                break ChallengeOutcome::Rejected { proof: proof.to_string(), rejection }
            }
            Submitted::Accepted { hash, height } => {
                let record = node
                    .wait_for(
                        &format!("the verdict on {proof}"),
                        timeout,
                        Duration::from_millis(100),
                        |n| n.verdict(&proof),
                    )
                    .with_context(|| {
                        format!("the challenge of {proof} was accepted in block {height}")
                    })?;
                break ChallengeOutcome::Settled {
                    height,
                    tx: hash,
                    verdict: VerdictSummary::of(&record),
                };
            }
        }
    };
    Ok(ChallengeReport { signer: signer.entity.to_string(), outcome })
}

/// `lemal challenge ID PROOF`.
pub fn challenge(args: ChallengeArgs, global: &Global) -> Result<ExitCode> {
    let id = parse_query(&args.id)?;
    let proof = parse_proof(&id, &args.proof)?;
    let node = connect(global)?;
    let signer = Signer::load(global, &node, args.challenger.signer)?;
    eprintln!("challenging {proof} as {} at {}", signer.entity, node.url());
    let report = file(&node, &signer, proof, Duration::from_secs(args.challenger.timeout))?;
    if report.settled() {
        emit(global, &report, || format!("{report}\n"))?;
    } else {
        // A refusal is the command's failure: said on stderr, and as the document with --json.
        eprintln!("lemal: {report}");
        emit(global, &report, String::new)?;
    }
    Ok(exit(report.settled()))
}

/// The proofs an audit gives reason to challenge, each once, in key order: those that do not
/// verify here, and those on which a verifying node's 0/1 verdict contradicts the local
/// verification (the verdicts a challenge settles; a disagreement over selection or receipt is
/// not one a challenge can decide).
fn challenge_targets(findings: &Findings) -> Vec<ProofKey> {
    let correct: BTreeMap<ProofKey, bool> =
        findings.proofs.iter().map(|p| (p.key, p.correct)).collect();
    let mut targets: BTreeSet<ProofKey> = findings.wrong_proofs().map(|p| p.key).collect();
    for d in findings.verifiers.iter().flat_map(|v| &v.disagreements) {
        let contradicts = match correct.get(&d.proof) {
            Some(true) => d.verdict == Verdict::Wrong,
            Some(false) => d.verdict == Verdict::Correct,
            None => false,
        };
        if contradicts {
            targets.insert(d.proof);
        }
    }
    targets.into_iter().collect()
}

/// `lemal audit ID --challenge` as one JSON document.
#[derive(Serialize)]
struct AuditChallenges<'a> {
    audit: &'a AuditReport,
    challenges: Vec<ChallengeReport>,
    /// Whether every proof to challenge is settled (and the block verified).
    ok: bool,
}

/// `lemal audit ID --challenge`: the audit, then one challenge per proof it gives reason to
/// challenge (`challenge_targets`), filed one after the other, skipping those already settled.
pub fn audit_and_challenge(
    id: &str,
    challenger: &ChallengerArgs,
    global: &Global,
) -> Result<ExitCode> {
    let id = parse_query(id)?;
    let node = connect(global)?;
    let trust = trust_root(global, &node)?;
    let signer = Signer::load(global, &node, challenger.signer)?;
    let timeout = Duration::from_secs(challenger.timeout);
    eprintln!(
        "auditing query {id} against {}: light verification of its skipblock, every proof \
         re-verified locally, then what is wrong challenged as {}",
        node.url(),
        signer.entity
    );
    let report = match light::audit(&node, &trust, &id) {
        Ok(report) => report,
        Err(e) => return light_failure(global, e),
    };
    if !global.json {
        print!("{}", render_audit(&report));
    }
    let mut challenges = Vec::new();
    let summary = if report.verification.verified {
        let targets = challenge_targets(&report.findings);
        if !global.json {
            println!("\nchallenges as {}: {} proofs to settle", signer.entity, targets.len());
        }
        for proof in targets {
            let outcome = settle(&node, &signer, proof, timeout)?;
            if !global.json {
                println!("  {outcome}");
            }
            challenges.push(outcome);
        }
        let refused = challenges.iter().filter(|c| !c.settled()).count();
        if refused == 0 {
            format!("CHALLENGES SETTLED: {} proofs", challenges.len())
        } else {
            format!("CHALLENGES NOT ALL SETTLED: {refused} of {} refused", challenges.len())
        }
    } else {
        "NO CHALLENGE FILED: the query's block did not verify".to_owned()
    };
    let ok = report.verification.verified && challenges.iter().all(ChallengeReport::settled);
    if global.json {
        eprintln!("{summary}");
        emit(global, &AuditChallenges { audit: &report, challenges, ok }, String::new)?;
    } else {
        println!("{summary}");
    }
    Ok(exit(ok))
}

/// Settle `proof` as `signer`: nothing to do if a verdict is on record, else file a challenge
/// (one refused because another settled the proof meanwhile counts as settled).
fn settle(
    node: &Node,
    signer: &Signer,
    proof: ProofKey,
    timeout: Duration,
) -> Result<ChallengeReport> {
    let already = |record: &VerdictRecord| ChallengeReport::already_settled(signer.entity, record);
    if let Some(record) = node.verdict(&proof).context("reading the proof's verdict")? {
        return Ok(already(&record));
    }
    match file(node, signer, proof, timeout)? {
        ChallengeReport { outcome: ChallengeOutcome::Rejected { rejection, .. }, .. }
            if rejection.code == ALREADY_SETTLED =>
        {
            let record = node
                .verdict(&proof)
                .context("reading the proof's verdict")?
                .ok_or_else(|| anyhow!("{proof}: {rejection}, yet has no verdict"))?;
            Ok(already(&record))
        }
        filed => Ok(filed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};
    use crate::light::{Disagreement, ProofFailure, ProofFinding, VerifierFinding, VrfStatus};
    use lemal_contracts::error::ProofError;

    const Q: QueryId = QueryId([0xab; 16]);

    fn key(text: &str) -> String {
        format!("{Q}/{text}")
    }

    fn proof(text: &str) -> ProofKey {
        key(text).parse().expect("proof key")
    }

    #[test]
    fn a_proof_argument_is_kind_creator_index_or_a_full_proof_key_of_the_query() {
        let short = parse_proof(&Q, "keyswitch/cn-1/0").expect("short form");
        assert_eq!(short.to_string(), key("keyswitch/cn-1/0"));
        assert_eq!(parse_proof(&Q, &key("keyswitch/cn-1/0")).expect("full form"), short);
        let other = format!("{}/range/dp-0/0", "cd".repeat(16));
        let err = parse_proof(&Q, &other).expect_err("another query's proof");
        assert!(err.to_string().contains("not of"), "{err}");
        for junk in ["", "range/dp-0", "sum/dp-0/0", "range/dp-x/0", "range/dp-0/-1", "a/b/c/d/e"] {
            assert!(parse_proof(&Q, junk).is_err(), "{junk:?} accepted");
        }
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("lemal").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn audit_challenges_only_with_the_flag_and_challenge_signs_as_vn_0_unless_told() {
        Cli::command().debug_assert();
        let q = Q.to_string();
        match parse(&["audit", &q]) {
            Ok(Command::Audit { challenge: false, .. }) => {}
            other => panic!("plain audit parsed as {other:?}"),
        }
        match parse(&["audit", &q, "--challenge", "--as", "dp-2"]) {
            Ok(Command::Audit { challenge: true, signer, timeout: 60, .. }) => {
                assert_eq!(signer, EntityId::dp(2));
            }
            other => panic!("audit --challenge parsed as {other:?}"),
        }
        assert!(parse(&["audit", &q, "--as", "vn-1"]).is_err(), "--as without --challenge");
        match parse(&["challenge", &q, "keyswitch/cn-1/0"]) {
            Ok(Command::Challenge(args)) => {
                assert_eq!(args.challenger.signer, EntityId::vn(0));
                assert_eq!(args.proof, "keyswitch/cn-1/0");
            }
            other => panic!("challenge parsed as {other:?}"),
        }
        assert!(parse(&["challenge", &q, "range/dp-0/0", "--as", "xx-0"]).is_err());
    }

    fn finding(text: &str, correct: bool) -> ProofFinding {
        ProofFinding {
            key: proof(text),
            creator: proof(text).creator,
            correct,
            error: (!correct).then_some(ProofFailure::Invalid(ProofError::Equation("test"))),
        }
    }

    fn disagreement(text: &str, vn: &str, verdict: Verdict, expected: Verdict) -> Disagreement {
        Disagreement { proof: proof(text), vn: vn.parse().expect("vn"), verdict, expected }
    }

    #[test]
    fn an_audit_challenges_wrong_proofs_and_contradicted_verdicts_once_each() {
        let findings = Findings {
            proofs: vec![
                finding("range/dp-0/0", true),
                finding("range/dp-1/0", true),
                finding("range/dp-2/0", true),
                finding("aggregation/cn-0/0", false),
            ],
            missing: vec![proof("keyswitch/cn-0/0")],
            verifiers: vec![
                VerifierFinding {
                    vn: EntityId::vn(0),
                    reported: true,
                    vrf: VrfStatus::Valid,
                    selected: 3,
                    disagreements: vec![
                        // Said wrong of a right proof: a challenge finds vn-0 at fault.
                        disagreement("range/dp-1/0", "vn-0", Verdict::Wrong, Verdict::Correct),
                        // Said right of the wrong proof: challenged once, as a wrong proof.
                        disagreement(
                            "aggregation/cn-0/0",
                            "vn-0",
                            Verdict::Correct,
                            Verdict::Wrong,
                        ),
                    ],
                },
                VerifierFinding {
                    vn: EntityId::vn(1),
                    reported: true,
                    vrf: VrfStatus::Valid,
                    selected: 1,
                    disagreements: vec![
                        // A selection dispute is not for a challenge to settle.
                        disagreement(
                            "range/dp-2/0",
                            "vn-1",
                            Verdict::NotSelected,
                            Verdict::Correct,
                        ),
                        // Nor is a verdict on a proof that never arrived.
                        disagreement(
                            "keyswitch/cn-0/0",
                            "vn-1",
                            Verdict::Wrong,
                            Verdict::NotReceived,
                        ),
                    ],
                },
            ],
            result_consistent: true,
        };
        let targets: Vec<String> =
            challenge_targets(&findings).iter().map(ToString::to_string).collect();
        assert_eq!(targets, [key("range/dp-1/0"), key("aggregation/cn-0/0")]);
    }

    #[test]
    fn an_audit_without_findings_challenges_nothing() {
        let findings = Findings {
            proofs: vec![finding("range/dp-0/0", true)],
            missing: Vec::new(),
            verifiers: Vec::new(),
            result_consistent: true,
        };
        assert!(challenge_targets(&findings).is_empty());
    }

    fn verdict_summary() -> VerdictSummary {
        VerdictSummary {
            proof: key("keyswitch/cn-1/0"),
            valid: false,
            reason: "equation fails".into(),
            at_fault: vec!["cn-1".into(), "vn-2".into()],
            challenger: "vn-0".into(),
            block: 12,
        }
    }

    #[test]
    fn a_settled_challenge_shows_the_verdict_its_skipblock_and_who_is_at_fault() {
        let report = ChallengeReport {
            signer: "vn-0".into(),
            outcome: ChallengeOutcome::Settled {
                height: 345,
                tx: "00".repeat(32),
                verdict: verdict_summary(),
            },
        };
        assert!(report.settled());
        let line = report.to_string();
        assert!(line.starts_with("settled in block 345: "), "{line}");
        assert!(line.contains("is wrong (skipblock 12); at fault: cn-1, vn-2"), "{line}");
        assert!(line.ends_with("; reason: equation fails"), "{line}");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["outcome"], "settled");
        assert_eq!(json["signer"], "vn-0");
        assert_eq!(json["height"], 345);
        assert_eq!(json["proof"], key("keyswitch/cn-1/0"));
        assert_eq!(json["block"], 12);
        assert_eq!(json["valid"], false);
        assert_eq!(json["at_fault"], serde_json::json!(["cn-1", "vn-2"]));
    }

    #[test]
    fn a_refused_challenge_names_the_code_and_is_not_settled() {
        let report = ChallengeReport {
            signer: "dp-3".into(),
            outcome: ChallengeOutcome::Rejected {
                proof: key("range/dp-0/0"),
                rejection: Rejection::new(51, "query is not finalized yet".into(), None),
            },
        };
        assert!(!report.settled());
        assert_eq!(
            report.to_string(),
            format!(
                "{}: refused with code 51 (query-not-final) by CheckTx: query is not finalized yet",
                key("range/dp-0/0")
            )
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["outcome"], "rejected");
        assert_eq!(json["proof"], key("range/dp-0/0"));
        assert_eq!(json["rejection"]["code"], 51);
        assert_eq!(json["rejection"]["name"], "query-not-final");
        let already = ChallengeReport {
            signer: "vn-0".into(),
            outcome: ChallengeOutcome::AlreadySettled { verdict: verdict_summary() },
        };
        assert!(already.settled() && already.to_string().starts_with("already settled: "));
    }
}
