//! Fixtures for the light client's tests: validator sets with their keys, signed headers and
//! commits; a skipchain built in memory; a query run in memory with real proofs.

use std::collections::BTreeMap;

use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Verdict};
use lemal_contracts::proofs;
use lemal_contracts::sampling;
use lemal_contracts::state::{
    back_link_target, proofs_root, skip_height, Bitmap, BitmapCommitRecord, BlockPayload,
    GenesisRecord, Params, ProofRecord, QueryPayload, Roster, SkipBlock, Timestamp,
};
use lemal_contracts::tx::TxBody;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tendermint::block::signed_header::SignedHeader;
use tendermint::block::{self, Commit, CommitSig, Header, Height, Round};
use tendermint::validator::Info as ValidatorInfo;
use tendermint::vote::{Type as VoteType, ValidatorIndex, Vote};

use super::trust::validator_set;
use super::{
    audit_proofs, check_bitmap, Check, Disagreement, Findings, LightError, RootReport,
    SkipchainState, TrustKind, TrustedValidators,
};
use crate::data::DataBounds;
use crate::keyring::Keyring;
use crate::pipeline::{self, PlanOptions, QueryPlan, Session};

/// The chain id of test headers.
pub(crate) const CHAIN: &str = "lemal-test";

/// A validator set with its ed25519 keys, in the set's order.
pub(crate) struct Validators {
    pub(crate) keys: Vec<ed25519_consensus::SigningKey>,
    pub(crate) trusted: TrustedValidators,
}

pub(crate) fn validators(seed: u8, powers: &[u32]) -> Validators {
    let keys: Vec<ed25519_consensus::SigningKey> = (0..powers.len())
        .map(|i| ed25519_consensus::SigningKey::from([seed.wrapping_add(i as u8); 32]))
        .collect();
    let infos: Vec<ValidatorInfo> = keys
        .iter()
        .zip(powers)
        .map(|(k, &p)| {
            let pk = tendermint::PublicKey::from_raw_ed25519(&k.verification_key().to_bytes())
                .expect("32-byte key");
            ValidatorInfo::new(pk, p.into())
        })
        .collect();
    let set = validator_set(infos).expect("valid set");
    // Keys in the set's order, so that signer positions are commit positions.
    let keys = set
        .validators()
        .iter()
        .map(|v| {
            keys.iter()
                .find(|k| {
                    v.pub_key.ed25519().map(|p| p.as_bytes().to_vec())
                        == Some(k.verification_key().to_bytes().to_vec())
                })
                .expect("every validator has a key")
                .clone()
        })
        .collect();
    let trusted = TrustedValidators {
        set,
        chain_id: Some(CHAIN.to_owned()),
        from: None,
        root: RootReport {
            kind: TrustKind::Genesis,
            fingerprint: String::new(),
            source: "test validators".into(),
        },
    };
    Validators { keys, trusted }
}

pub(crate) fn header(vals: &Validators, chain: &str, height: u64, app_hash: [u8; 32]) -> Header {
    header_at(vals, vals, chain, height, 1_700_000_000, app_hash)
}

/// A header of `vals` naming `next` as the next validators, at `time` (Unix seconds).
pub(crate) fn header_at(
    vals: &Validators,
    next: &Validators,
    chain: &str,
    height: u64,
    time: i64,
    app_hash: [u8; 32],
) -> Header {
    let hash = vals.trusted.set().hash();
    Header {
        version: block::header::Version { block: 11, app: 1 },
        chain_id: chain.try_into().expect("chain id"),
        height: Height::try_from(height).expect("height"),
        time: tendermint::Time::from_unix_timestamp(time, 0).expect("time"),
        last_block_id: None,
        last_commit_hash: None,
        data_hash: None,
        validators_hash: hash,
        next_validators_hash: next.trusted.set().hash(),
        consensus_hash: tendermint::Hash::Sha256([7; 32]),
        app_hash: tendermint::AppHash::try_from(app_hash.to_vec()).expect("app hash"),
        last_results_hash: None,
        evidence_hash: None,
        proposer_address: vals.trusted.set().validators()[0].address,
    }
}

/// The header signed by the validators at `signers` (positions in the set).
pub(crate) fn sign(vals: &Validators, header: Header, signers: &[usize]) -> SignedHeader {
    let block_id = block::Id {
        hash: header.hash(),
        part_set_header: block::parts::Header::new(1, tendermint::Hash::Sha256([9; 32]))
            .expect("part set header"),
    };
    let time = header.time;
    let signatures = vals
        .trusted
        .set()
        .validators()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if !signers.contains(&i) {
                return CommitSig::BlockIdFlagAbsent;
            }
            let vote = Vote {
                vote_type: VoteType::Precommit,
                height: header.height,
                round: Round::default(),
                block_id: Some(block_id),
                timestamp: Some(time),
                validator_address: v.address,
                validator_index: ValidatorIndex::try_from(i as u32).expect("index"),
                signature: None,
                extension: Vec::new(),
                extension_signature: None,
            };
            let bytes = vote.into_signable_vec(header.chain_id.clone());
            let sig = vals.keys[i].sign(&bytes).to_bytes();
            CommitSig::BlockIdFlagCommit {
                validator_address: v.address,
                timestamp: time,
                signature: tendermint::Signature::try_from(sig.as_slice()).ok(),
            }
        })
        .collect();
    let commit = Commit { height: header.height, round: Round::default(), block_id, signatures };
    SignedHeader::new(header, commit).expect("heights agree")
}

pub(crate) fn params(base: u32, max_height: u8) -> Params {
    Params { skip_base: base, skip_max_height: max_height, ..Params::default() }
}

/// A skipchain built the way the verifying nodes append blocks: back links to the latest
/// earlier block taller than each level, and forward links filled level by level.
#[derive(Clone)]
pub(crate) struct MemChain {
    pub(crate) blocks: Vec<SkipBlock>,
    pub(crate) forward: Vec<Vec<[u8; 32]>>,
}

impl MemChain {
    pub(crate) fn build(n: u64, params: &Params) -> MemChain {
        let (base, hmax) = (params.skip_base, params.skip_max_height);
        let genesis = SkipBlock {
            index: 0,
            height: hmax,
            back_links: Vec::new(),
            ledger_height: 1,
            time: Timestamp::default(),
            payload: BlockPayload::Genesis(GenesisRecord {
                chain_id: CHAIN.into(),
                roster_hash: [1; 32],
                params_hash: [2; 32],
            }),
        };
        let mut chain = MemChain { blocks: vec![genesis], forward: vec![Vec::new()] };
        for index in 1..=n {
            let height = skip_height(index, base, hmax);
            let targets: Vec<u64> =
                (0..usize::from(height)).map(|l| back_link_target(index, l, base)).collect();
            let block = SkipBlock {
                index,
                height,
                back_links: targets.iter().map(|&t| chain.blocks[t as usize].hash()).collect(),
                ledger_height: 10 * index,
                time: Timestamp { seconds: index as i64, nanos: 0 },
                payload: BlockPayload::Query(QueryPayload {
                    query_id: QueryId([index as u8; 16]),
                    bitmap: Bitmap::default(),
                    threshold_ppm: 1,
                    reported: Vec::new(),
                    absent: Vec::new(),
                    proofs_root: proofs_root(&[]),
                    result: Vec::new(),
                    covered: Vec::new(),
                    uncovered: Vec::new(),
                }),
            };
            let hash = block.hash();
            for (level, &t) in targets.iter().enumerate() {
                let links = &mut chain.forward[t as usize];
                assert_eq!(links.len(), level);
                links.push(hash);
            }
            chain.blocks.push(block);
            chain.forward.push(Vec::new());
        }
        chain
    }
}

impl SkipchainState for MemChain {
    fn block(&self, index: u64) -> Result<Option<SkipBlock>, LightError> {
        Ok(usize::try_from(index).ok().and_then(|i| self.blocks.get(i)).cloned())
    }

    fn forward_links(&self, index: u64) -> Result<Vec<[u8; 32]>, LightError> {
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| self.forward.get(i))
            .cloned()
            .unwrap_or_default())
    }
}

/// A query run entirely in memory with real proofs: its registration, the roster, the
/// accepted proof records, the verifying nodes' commits and the block payload an honest
/// chain appends for it.
pub(crate) struct Run {
    pub(crate) roster: Roster,
    pub(crate) params: Params,
    pub(crate) plan: QueryPlan,
    pub(crate) records: Vec<ProofRecord>,
    pub(crate) commits: Vec<BitmapCommitRecord>,
    pub(crate) payload: QueryPayload,
}

pub(crate) fn run(cheat: Option<(EntityId, ProofKind)>, threshold_ppm: u32) -> Run {
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let keys = Keyring::generate(3, 2, 3, &mut rng);
    let addresses: Vec<[u8; 20]> = (0..3u8).map(|i| [i + 1; 20]).collect();
    let (params, roster) =
        keys.genesis(Params::default(), &addresses, &mut rng).into_typed().expect("valid genesis");
    let query = crate::sql::parse("SELECT sum(x) FROM y").expect("query");
    let options = PlanOptions {
        dps: vec![0, 1, 2],
        cns: vec![0, 1],
        bounds: DataBounds { min: 0, max: 10, rows: 4 },
        noise: 0,
        noise_rows: 0,
        threshold_ppm,
        dp_deadline: 10,
        proof_deadline: 20,
        commit_window: 20,
    };
    let plan = pipeline::plan(CHAIN, query, &options, &mut rng);
    let session =
        Session { chain_id: CHAIN, keys: &keys, roster: &roster, registration: &plan.registration };
    let cheats = |who: EntityId, kind| cheat == Some((who, kind));
    let mut ledger: BTreeMap<ProofKey, ProofRecord> = BTreeMap::new();
    let accept = |tx: lemal_contracts::tx::Tx, ledger: &mut BTreeMap<_, _>| {
        let TxBody::SubmitProof(p) = tx.body else { panic!("not a proof") };
        let key = p.key(tx.signer);
        let record =
            ProofRecord { key, inputs: p.inputs, outputs: p.outputs, proof: p.proof, height: 3 };
        ledger.insert(key, record);
    };
    for d in 0..3 {
        let dp = EntityId::dp(d);
        let tx = session
            .range(dp, &[i64::from(d) + 4], cheats(dp, ProofKind::Range), &mut rng)
            .expect("range proof");
        accept(tx, &mut ledger);
    }
    for c in [1, 0] {
        let cn = EntityId::cn(c);
        let view = ledger.clone();
        let get = |k: &ProofKey| view.get(k).cloned();
        let tx = session
            .aggregation(cn, &get, cheats(cn, ProofKind::Aggregation), &mut rng)
            .expect("aggregation");
        accept(tx, &mut ledger);
    }
    for c in [0, 1] {
        let cn = EntityId::cn(c);
        let view = ledger.clone();
        let get = |k: &ProofKey| view.get(k).cloned();
        let tx = session
            .keyswitch(cn, &get, cheats(cn, ProofKind::KeySwitch), &mut rng)
            .expect("key switch");
        accept(tx, &mut ledger);
    }
    let records: Vec<ProofRecord> = ledger.values().cloned().collect();
    let q = plan.registration.query_id;
    let expected = plan.registration.spec.expected_proofs(q);
    let truth = |k: &ProofKey| {
        let r = &ledger[k];
        let get = |k: &ProofKey| ledger.get(k).cloned();
        let ok = proofs::resolve(CHAIN, &roster, &plan.registration, r, &get)
            .map(|st| st.verify(&r.proof).is_ok())
            .unwrap_or(false);
        if ok {
            Verdict::Correct
        } else {
            Verdict::Wrong
        }
    };
    let commits: Vec<BitmapCommitRecord> = (0..3u32)
        .map(|v| {
            let vn = EntityId::vn(v);
            let (output, vrf) = sampling::evaluate(&keys.vns[v as usize], CHAIN, &q, vn, &mut rng);
            let verdicts = expected
                .iter()
                .map(|k| {
                    if !ledger.contains_key(k) {
                        Verdict::NotReceived
                    } else if sampling::is_selected(&output, k, threshold_ppm) {
                        truth(k)
                    } else {
                        Verdict::NotSelected
                    }
                })
                .collect();
            BitmapCommitRecord { vn, vrf, verdicts, height: 4 }
        })
        .collect();
    let verifiers = roster.vn_ids();
    let bitmap = Bitmap::from_columns(expected, verifiers.clone(), |vn| {
        commits.iter().find(|c| c.vn == vn).map(|c| &c.verdicts[..])
    });
    let hashes: Vec<[u8; 32]> = records.iter().map(ProofRecord::hash).collect();
    let get = |k: &ProofKey| ledger.get(k).cloned();
    let payload = QueryPayload {
        query_id: q,
        bitmap,
        threshold_ppm,
        reported: verifiers,
        absent: Vec::new(),
        proofs_root: proofs_root(&hashes),
        result: proofs::result_ciphertexts(&plan.registration, &get).unwrap_or_default(),
        covered: proofs::covered_dps(&plan.registration, &get),
        uncovered: Vec::new(),
    };
    Run { roster, params, plan, records, commits, payload }
}

impl Run {
    pub(crate) fn audit(&self) -> Findings {
        audit_proofs(
            CHAIN,
            &self.roster,
            &self.plan.registration,
            &self.payload,
            &self.records,
            &self.commits,
            2,
        )
    }

    pub(crate) fn bitmap_check(&self) -> Check {
        check_bitmap(&self.payload, &self.plan.registration, &self.roster, &self.records)
    }

    /// Change the verdict of one VN on a proof it was (`selected`) or was not selected for
    /// (`proof`, or the first one found) to `verdict`, audit, and require that VN and only
    /// it to be named faulty. Returns the audit and that VN's first disagreement.
    pub(crate) fn blame(
        &mut self,
        selected: bool,
        proof: Option<ProofKey>,
        verdict: Verdict,
    ) -> (Findings, Disagreement) {
        let (key, vn) = self.find(selected, proof);
        self.set_verdict(key, vn, verdict);
        let findings = self.audit();
        let faulty: Vec<_> = findings.faulty_verifiers().map(|v| v.vn).collect();
        assert_eq!(faulty, [EntityId::vn(vn)]);
        let first = findings.faulty_verifiers().next().expect("one").disagreements[0].clone();
        (findings, first)
    }

    pub(crate) fn set_verdict(&mut self, key: ProofKey, vn: u32, v: Verdict) {
        *self.payload.bitmap.get_mut(&key, EntityId::vn(vn)).expect("bitmap entry") = v;
    }

    /// A (proof, verifier) pair whose VRF selects (or does not select) a received proof.
    pub(crate) fn find(&self, selected: bool, proof: Option<ProofKey>) -> (ProofKey, u32) {
        for c in &self.commits {
            let key = self.roster.signing_key(c.vn).expect("vn key");
            let out = sampling::verify(key, CHAIN, &self.payload.query_id, c.vn, &c.vrf)
                .expect("valid VRF");
            for r in &self.records {
                if proof.is_some_and(|p| p != r.key) {
                    continue;
                }
                if sampling::is_selected(&out, &r.key, self.payload.threshold_ppm) == selected {
                    return (r.key, c.vn.index);
                }
            }
        }
        panic!("no verifier with that selection in this run")
    }
}

pub(crate) fn key_of(run: &Run, kind: ProofKind, creator: EntityId) -> ProofKey {
    ProofKey { query: run.payload.query_id, kind, creator, index: 0 }
}
