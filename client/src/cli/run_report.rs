//! What `lemal run` reports: the query and its parameters, the decrypted result against the
//! plaintext answer, the skipblock that records the query, the light client's verification,
//! the problems found and the timings. It serializes to the `--json` document; its `Display` is
//! the text summary.

use std::collections::BTreeMap;
use std::fmt;

use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, Verdict};
use lemal_contracts::state::{BlockPayload, QueryPayload, SkipBlock};
use serde::Serialize;

use crate::light::VerifyReport;

/// The outcome of one `lemal run`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct RunReport {
    /// The query id.
    pub(super) query_id: String,
    /// The query as planned.
    pub(super) sql: String,
    /// The chain it ran on.
    pub(super) chain_id: String,
    /// The node it was sent to.
    pub(super) node: String,
    /// Data providers taking part.
    pub(super) dps: u32,
    /// Computing nodes taking part.
    pub(super) cns: u32,
    /// Rows per data provider.
    pub(super) rows: u32,
    /// Noise scale (0: no noise).
    pub(super) noise_scale: u32,
    /// Rows of the noise list.
    pub(super) noise_rows: usize,
    /// Share of proofs each verifying node checks, in parts per million.
    pub(super) threshold_ppm: u32,
    /// Blocks after registration within which proofs are accepted.
    pub(super) proof_deadline: u32,
    /// Blocks after the proof phase within which bitmaps are committed.
    pub(super) commit_window: u32,
    /// Height of the block that registered the query.
    pub(super) registered_at: u64,
    /// The party told to cheat, as `entity:kind`.
    pub(super) cheat: Option<String>,
    /// The decrypted answer (none without a result or for an empty average).
    pub(super) result: Option<f64>,
    /// The decrypted result's components (none when the skipblock carries no result).
    pub(super) result_components: Option<Vec<i64>>,
    /// The plaintext answer.
    pub(super) expected: Option<f64>,
    /// The plaintext totals.
    pub(super) expected_components: Vec<i64>,
    /// Result minus plaintext answer.
    pub(super) noise: Option<f64>,
    /// Result components minus plaintext totals.
    pub(super) noise_components: Option<Vec<i64>>,
    /// The query's skipblock.
    pub(super) skipblock: SkipblockSummary,
    /// The data providers the result covers.
    pub(super) covered_dps: Vec<String>,
    /// The data providers it does not cover.
    pub(super) uncovered_dps: Vec<String>,
    /// How many bitmap entries hold each verdict.
    pub(super) bitmap: BitmapCounts,
    /// Who sent the proofs.
    pub(super) parties: Parties,
    /// How many proofs of each kind the skipblock judges.
    pub(super) proofs_by_kind: ProofsByKind,
    /// Every proof some verifying node judged wrong.
    pub(super) wrong_proofs: Vec<WrongProof>,
    /// With `--cheat`: whether every verifying node that selected the cheater's proof judged it
    /// wrong (false when none selected it).
    pub(super) cheat_detected: Option<bool>,
    /// Whether the skipblock verified.
    pub(super) verified: bool,
    /// The light client's report, or why there is none.
    pub(super) verification: VerificationReport,
    /// What went wrong; the run fails unless this is empty.
    pub(super) problems: Vec<String>,
    /// How long each phase took.
    pub(super) timings_ms: Timings,
}

/// The query's skipblock, in a run report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct SkipblockSummary {
    /// Skipchain index.
    pub(super) index: u64,
    /// Block hash (hex).
    pub(super) hash: String,
    /// CometBFT height of the block that appended it.
    pub(super) height: u64,
    /// Skip height.
    pub(super) skip_height: u8,
    /// Root over the received proofs' hashes (hex).
    pub(super) proofs_root: String,
    /// Verifying nodes whose bitmap was committed.
    pub(super) reported: Vec<String>,
    /// Verifying nodes absent at the end of the commit window.
    pub(super) absent: Vec<String>,
    /// Data providers the result covers.
    pub(super) covered: Vec<String>,
    /// Data providers it does not cover.
    pub(super) uncovered: Vec<String>,
}

impl SkipblockSummary {
    /// The summary of a query block with payload `p`.
    pub(super) fn of(block: &SkipBlock, p: &QueryPayload) -> Self {
        SkipblockSummary {
            index: block.index,
            hash: hex::encode(block.hash()),
            height: block.ledger_height,
            skip_height: block.height,
            proofs_root: hex::encode(p.proofs_root),
            reported: names(&p.reported),
            absent: names(&p.absent),
            covered: names(&p.covered),
            uncovered: names(&p.uncovered),
        }
    }
}

/// How many bitmap entries hold each verdict value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(super) struct BitmapCounts {
    /// Verdict 0.
    #[serde(rename = "0")]
    pub(super) wrong: usize,
    /// Verdict 1.
    #[serde(rename = "1")]
    pub(super) correct: usize,
    /// Verdict 2.
    #[serde(rename = "2")]
    pub(super) not_selected: usize,
    /// Verdict 3.
    #[serde(rename = "3")]
    pub(super) not_received: usize,
}

impl From<[usize; 4]> for BitmapCounts {
    fn from([wrong, correct, not_selected, not_received]: [usize; 4]) -> Self {
        BitmapCounts { wrong, correct, not_selected, not_received }
    }
}

/// Who sent the proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Parties {
    /// The localnet's party daemons.
    Daemons,
    /// `lemal run` itself, with the localnet's keys.
    InProcess,
}

impl fmt::Display for Parties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Parties::Daemons => "daemons",
            Parties::InProcess => "in-process",
        })
    }
}

/// How many proofs of each kind a query block judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct ProofsByKind {
    /// Range proofs.
    pub(super) range: usize,
    /// Aggregations.
    pub(super) aggregation: usize,
    /// Shuffles.
    pub(super) shuffle: usize,
    /// Key switches.
    pub(super) keyswitch: usize,
}

impl ProofsByKind {
    /// Count `keys` by kind.
    pub(super) fn of(keys: &[ProofKey]) -> Self {
        let mut out = ProofsByKind::default();
        for key in keys {
            *match key.kind {
                ProofKind::Range => &mut out.range,
                ProofKind::Aggregation => &mut out.aggregation,
                ProofKind::Shuffle => &mut out.shuffle,
                ProofKind::KeySwitch => &mut out.keyswitch,
            } += 1;
        }
        out
    }
}

/// A proof some verifying node judged wrong, with every node's verdict on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct WrongProof {
    /// The proof.
    pub(super) proof: String,
    /// Each verifying node's verdict value, by node name.
    pub(super) verdicts: BTreeMap<String, u8>,
}

impl WrongProof {
    /// Every proof of a query block that any verifying node judged wrong, in bitmap order.
    pub(super) fn all_in(block: &SkipBlock) -> Vec<WrongProof> {
        let BlockPayload::Query(p) = &block.payload else { return Vec::new() };
        let bm = &p.bitmap;
        let n = bm.verifiers.len();
        bm.proofs
            .iter()
            .enumerate()
            .filter_map(|(r, key)| {
                let row = bm.verdicts.get(r * n..(r + 1) * n)?;
                row.contains(&Verdict::Wrong).then(|| WrongProof {
                    proof: key.to_string(),
                    verdicts: bm
                        .verifiers
                        .iter()
                        .zip(row)
                        .map(|(v, d)| (v.to_string(), d.value()))
                        .collect(),
                })
            })
            .collect()
    }
}

/// The light client's report on the skipblock, or why verification could not run to its end.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(super) enum VerificationReport {
    /// The light client ran; its report says which checks passed.
    Ran(Box<VerifyReport>),
    /// It could not run to its end.
    Failed {
        /// Why (the whole error chain).
        error: String,
    },
}

/// How long each phase of a run took, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Timings {
    /// Parsing, loading the data and planning.
    pub(super) prepare: u128,
    /// From sending the registration to every proof on the ledger.
    pub(super) register: u128,
    /// From the first range proof sent to the last committed (none if none was).
    pub(super) range: Option<u128>,
    /// The same for aggregations.
    pub(super) aggregation: Option<u128>,
    /// The same for shuffles.
    pub(super) shuffle: Option<u128>,
    /// The same for key switches.
    pub(super) keyswitch: Option<u128>,
    /// From the registration's commit to every proof on the ledger.
    pub(super) proofs: u128,
    /// Waiting for the bitmaps and the skipblock.
    pub(super) bitmaps: u128,
    /// Decrypting the result.
    pub(super) decrypt: u128,
    /// Verifying the skipblock.
    pub(super) verify: u128,
    /// From sending the registration to seeing the skipblock.
    pub(super) registration_to_skipblock: u128,
    /// From sending the registration to the verified skipblock.
    pub(super) registration_to_verified: u128,
    /// The whole run.
    pub(super) total: u128,
}

/// Entity names, in order.
pub(super) fn names(ids: &[EntityId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// A value as the summary shows it: `-` when there is none.
fn or_dash<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A number as JSON writes it (`160.0`, not `160`); `-` when there is none or it is not finite.
fn float(v: Option<f64>) -> String {
    or_dash(v.and_then(serde_json::Number::from_f64))
}

/// A list of names, or `none`.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A value's name in JSON (a unit variant's renamed name), `-` when it has none.
fn json_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".to_owned(),
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "query     {}  {}", self.query_id, self.sql)?;
        writeln!(f, "result    {}", float(self.result))?;
        writeln!(f, "expected  {}  (noise {})", float(self.expected), float(self.noise))?;
        let b = &self.skipblock;
        writeln!(f, "skipblock #{}  hash {}  at height {}", b.index, b.hash, b.height)?;
        writeln!(
            f,
            "covers    {}  (not covered: {})",
            list(&self.covered_dps),
            list(&self.uncovered_dps)
        )?;
        let k = &self.proofs_by_kind;
        writeln!(
            f,
            "proofs    {} range, {} aggregation, {} shuffle, {} keyswitch  ({})",
            k.range,
            k.aggregation,
            k.shuffle,
            k.keyswitch,
            match self.parties {
                Parties::Daemons => "sent by the party daemons",
                Parties::InProcess => "every party played by this process",
            }
        )?;
        let m = &self.bitmap;
        writeln!(
            f,
            "bitmap    {} wrong, {} correct, {} not selected, {} not received",
            m.wrong, m.correct, m.not_selected, m.not_received
        )?;
        for w in &self.wrong_proofs {
            let verdicts = serde_json::to_string(&w.verdicts).map_err(|_| fmt::Error)?;
            writeln!(f, "  wrong proof {}  verdicts {verdicts}", w.proof)?;
        }
        if let Some(cheat) = &self.cheat {
            writeln!(f, "cheat     {cheat}  detected: {}", or_dash(self.cheat_detected))?;
        }
        match &self.verification {
            VerificationReport::Ran(r) if self.verified => {
                let h = &r.header;
                writeln!(
                    f,
                    "verified  yes: header {} signed by {}/{} of the trusted voting power; state \
                     proof, hash, links and proofs root check",
                    h.header_height, h.signed_power, h.total_power
                )?;
                writeln!(
                    f,
                    "trust     {} ({}), fingerprint {}",
                    h.trust.source,
                    json_name(&h.trust.kind),
                    h.trust.fingerprint
                )?;
            }
            VerificationReport::Ran(r) => {
                writeln!(f, "verified  NO")?;
                for c in r.checks.iter().filter(|c| !c.passed) {
                    writeln!(f, "  failed check {}: {}", c.name, c.detail)?;
                }
            }
            VerificationReport::Failed { error } => {
                writeln!(f, "verified  NO")?;
                writeln!(f, "  {error}")?;
            }
        }
        for p in &self.problems {
            writeln!(f, "PROBLEM   {p}")?;
        }
        writeln!(
            f,
            "time      {} ms from registration to verified skipblock",
            self.timings_ms.registration_to_verified
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::light::{BlockSummary, Check, HeaderReport, RootReport, TrustKind};
    use lemal_contracts::ids::QueryId;
    use lemal_contracts::state::{Bitmap, Timestamp};
    use serde_json::{json, Value};

    const Q: QueryId = QueryId([5; 16]);

    fn range_of_dp0() -> ProofKey {
        ProofKey { query: Q, kind: ProofKind::Range, creator: EntityId::dp(0), index: 0 }
    }

    /// A query block: dp-0's range proof judged wrong by vn-0, cn-0's aggregation correct.
    fn block() -> SkipBlock {
        use Verdict::{Correct, NotSelected, Wrong};
        let aggregation =
            ProofKey { query: Q, kind: ProofKind::Aggregation, creator: EntityId::cn(0), index: 0 };
        SkipBlock {
            index: 4,
            height: 2,
            back_links: Vec::new(),
            ledger_height: 9,
            time: Timestamp::default(),
            payload: BlockPayload::Query(QueryPayload {
                query_id: Q,
                bitmap: Bitmap {
                    proofs: vec![range_of_dp0(), aggregation],
                    verifiers: vec![EntityId::vn(0), EntityId::vn(1)],
                    verdicts: vec![Wrong, Correct, Correct, NotSelected],
                },
                threshold_ppm: 400_000,
                reported: vec![EntityId::vn(0), EntityId::vn(1)],
                absent: Vec::new(),
                proofs_root: [7; 32],
                result: Vec::new(),
                covered: vec![EntityId::dp(0)],
                uncovered: vec![EntityId::dp(1)],
            }),
        }
    }

    fn light_report(verified: bool) -> VerifyReport {
        VerifyReport {
            block: BlockSummary::from(&block()),
            header: HeaderReport {
                chain_id: "lemal-test".into(),
                state_height: 9,
                header_height: 10,
                header_hash: "aa".into(),
                app_hash: "bb".into(),
                validators_hash: "cc".into(),
                validators: 4,
                via: Vec::new(),
                signed_power: 3,
                total_power: 4,
                trust: RootReport {
                    kind: TrustKind::KnownGenesis,
                    fingerprint: "abcd".into(),
                    source: "genesis file g.json".into(),
                },
            },
            checks: vec![
                Check { name: "header".into(), passed: true, detail: "signed".into() },
                Check { name: "links".into(), passed: verified, detail: "back link 0".into() },
            ],
            verified,
            verdicts: Vec::new(),
        }
    }

    /// The report of a run in which dp-0 cheated on its range proof and vn-1 let it pass.
    fn report(verification: VerificationReport) -> RunReport {
        let block = block();
        let BlockPayload::Query(p) = &block.payload else { unreachable!("a query block") };
        RunReport {
            query_id: Q.to_string(),
            sql: "SELECT avg(x) FROM y".into(),
            chain_id: "lemal-test".into(),
            node: "http://127.0.0.1:26657".into(),
            dps: 2,
            cns: 1,
            rows: 100,
            noise_scale: 0,
            noise_rows: 0,
            threshold_ppm: 400_000,
            proof_deadline: 200,
            commit_window: 20,
            registered_at: 3,
            cheat: Some("dp-0:range".into()),
            result: Some(160.0),
            result_components: Some(vec![320, 2]),
            expected: Some(160.5),
            expected_components: vec![321, 2],
            noise: Some(-0.5),
            noise_components: Some(vec![-1, 0]),
            skipblock: SkipblockSummary::of(&block, p),
            covered_dps: names(&p.covered),
            uncovered_dps: names(&p.uncovered),
            bitmap: BitmapCounts::from(p.bitmap.counts()),
            parties: Parties::InProcess,
            proofs_by_kind: ProofsByKind::of(&p.bitmap.proofs),
            wrong_proofs: WrongProof::all_in(&block),
            cheat_detected: Some(false),
            verified: matches!(&verification, VerificationReport::Ran(r) if r.verified),
            verification,
            problems: vec!["a verifying node that selected the cheater's proof accepted it".into()],
            timings_ms: Timings {
                prepare: 1,
                register: 2,
                range: Some(3),
                aggregation: None,
                shuffle: None,
                keyswitch: Some(4),
                proofs: 5,
                bitmaps: 6,
                decrypt: 7,
                verify: 8,
                registration_to_skipblock: 9,
                registration_to_verified: 42,
                total: 50,
            },
        }
    }

    #[test]
    fn the_json_report_keeps_every_field_name_nesting_and_type_of_the_run_document() {
        let light = light_report(true);
        let value = serde_json::to_value(report(VerificationReport::Ran(Box::new(light.clone()))))
            .expect("serializes");
        let block = block();
        let skipblock = json!({
            "index": 4,
            "hash": hex::encode(block.hash()),
            "height": 9,
            "skip_height": 2,
            "proofs_root": hex::encode([7u8; 32]),
            "reported": ["vn-0", "vn-1"],
            "absent": [],
            "covered": ["dp-0"],
            "uncovered": ["dp-1"],
        });
        let timings = json!({
            "prepare": 1,
            "register": 2,
            "range": 3,
            "aggregation": null,
            "shuffle": null,
            "keyswitch": 4,
            "proofs": 5,
            "bitmaps": 6,
            "decrypt": 7,
            "verify": 8,
            "registration_to_skipblock": 9,
            "registration_to_verified": 42,
            "total": 50,
        });
        let expected = json!({
            "query_id": Q.to_string(),
            "sql": "SELECT avg(x) FROM y",
            "chain_id": "lemal-test",
            "node": "http://127.0.0.1:26657",
            "dps": 2,
            "cns": 1,
            "rows": 100,
            "noise_scale": 0,
            "noise_rows": 0,
            "threshold_ppm": 400_000,
            "proof_deadline": 200,
            "commit_window": 20,
            "registered_at": 3,
            "cheat": "dp-0:range",
            "result": 160.0,
            "result_components": [320, 2],
            "expected": 160.5,
            "expected_components": [321, 2],
            "noise": -0.5,
            "noise_components": [-1, 0],
            "skipblock": skipblock,
            "covered_dps": ["dp-0"],
            "uncovered_dps": ["dp-1"],
            "bitmap": { "0": 1, "1": 2, "2": 1, "3": 0 },
            "parties": "in-process",
            "proofs_by_kind": { "range": 1, "aggregation": 1, "shuffle": 0, "keyswitch": 0 },
            "wrong_proofs": [
                { "proof": range_of_dp0().to_string(), "verdicts": { "vn-0": 0, "vn-1": 1 } },
            ],
            "cheat_detected": false,
            "verified": true,
            "verification": serde_json::to_value(&light).expect("serializes"),
            "problems": ["a verifying node that selected the cheater's proof accepted it"],
            "timings_ms": timings,
        });
        assert_eq!(value, expected);
        for key in ["result", "expected", "noise"] {
            assert!(value[key].is_f64(), "{key} is a float: {}", value[key]);
        }
        assert_eq!(value["verification"]["header"]["trust"]["kind"], "known-genesis");
    }

    #[test]
    fn a_run_without_result_or_cheat_reports_nulls_and_a_failed_verification_its_error() {
        let mut r = report(VerificationReport::Failed { error: "no header above 9".into() });
        (r.cheat, r.cheat_detected) = (None, None);
        (r.result, r.result_components, r.noise, r.noise_components) = (None, None, None, None);
        let value = serde_json::to_value(&r).expect("serializes");
        for key in ["cheat", "cheat_detected", "result", "result_components", "noise"] {
            assert_eq!(value[key], Value::Null, "{key}");
        }
        assert_eq!(value["noise_components"], Value::Null);
        assert_eq!(value["verified"], false);
        assert_eq!(value["verification"], json!({ "error": "no header above 9" }));
    }

    #[test]
    fn the_summary_of_a_verified_run_prints_one_line_per_fact() {
        let r = report(VerificationReport::Ran(Box::new(light_report(true))));
        let hash = hex::encode(block().hash());
        let expected = format!(
            "query     {Q}  SELECT avg(x) FROM y\n\
             result    160.0\n\
             expected  160.5  (noise -0.5)\n\
             skipblock #4  hash {hash}  at height 9\n\
             covers    dp-0  (not covered: dp-1)\n\
             proofs    1 range, 1 aggregation, 0 shuffle, 0 keyswitch  (every party played by this process)\n\
             bitmap    1 wrong, 2 correct, 1 not selected, 0 not received\n  \
             wrong proof {}  verdicts {{\"vn-0\":0,\"vn-1\":1}}\n\
             cheat     dp-0:range  detected: false\n\
             verified  yes: header 10 signed by 3/4 of the trusted voting power; state proof, \
             hash, links and proofs root check\n\
             trust     genesis file g.json (known-genesis), fingerprint abcd\n\
             PROBLEM   a verifying node that selected the cheater's proof accepted it\n\
             time      42 ms from registration to verified skipblock\n",
            range_of_dp0()
        );
        assert_eq!(r.to_string(), expected);
    }

    #[test]
    fn the_summary_of_an_unverified_run_says_no_and_why() {
        let mut r = report(VerificationReport::Ran(Box::new(light_report(false))));
        (r.result, r.expected, r.noise, r.cheat) = (None, Some(7.0), None, None);
        (r.covered_dps, r.uncovered_dps) = (Vec::new(), Vec::new());
        let text = r.to_string();
        assert!(text.contains("\nresult    -\n"), "{text}");
        assert!(text.contains("\nexpected  7.0  (noise -)\n"), "{text}");
        assert!(text.contains("\ncovers    none  (not covered: none)\n"), "{text}");
        assert!(text.contains("\nverified  NO\n  failed check links: back link 0\n"), "{text}");
        assert!(!text.contains("failed check header"), "{text}");
        assert!(!text.contains("cheat "), "{text}");

        let failed = report(VerificationReport::Failed { error: "no header above 9".into() });
        let text = failed.to_string();
        assert!(text.contains("\nverified  NO\n  no header above 9\n"), "{text}");
        assert!(text.contains("\nbitmap    1 wrong, 2 correct,"), "{text}");
    }
}
