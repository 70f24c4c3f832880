//! Ledger state values: genesis (parameters and roster), query and proof records, bitmap
//! commits and skipblocks. Borsh-encoded in the authenticated store; JSON only at the genesis
//! boundary ([`GenesisState`]).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::elgamal::{Ciphertext, PossessionProof, PublicKey};
use crate::error::DecodeError;
use crate::group::to_borsh;
use crate::ids::{EntityId, ProofKey, QueryId, Verdict};
use crate::sampling::{check_threshold, VrfProof};
use crate::sig::VerifyingKey;
use crate::tx::{limits, RegisterQuery};

/// Chain parameters, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// The sampling threshold clients use when they do not choose one, in ppm.
    pub default_threshold_ppm: u32,
    /// The lowest sampling threshold a query may ask for, in ppm.
    pub min_threshold_ppm: u32,
    /// Most rows of a query's noise list (at most the hard limit of 4096).
    pub max_noise_rows: u16,
    /// Largest proof deadline a query may ask for, in blocks.
    pub max_proof_deadline: u32,
    /// Largest commit window a query may ask for, in blocks.
    pub max_commit_window: u32,
    /// Skipchain base `b` (≥ 2).
    pub skip_base: u32,
    /// Skipchain maximum height `h_max` (1..=32).
    pub skip_max_height: u8,
    /// Largest transaction in bytes accepted by the application.
    pub max_tx_bytes: u32,
    /// Most queries one computing node may have registered and still open at once.
    pub max_open_queries_per_cn: u32,
    /// The validator set never shrinks below this many verifying nodes: a verifying node found
    /// at fault beyond it is marked faulty but keeps its power.
    pub min_validators: u32,
    /// Unfounded challenges (of a right proof that no verifying node contradicted) a roster
    /// member may file; past them its challenges are refused.
    pub max_unfounded_challenges: u32,
    /// Verification cost ([`crate::proofs::verify_cost`]) a block may spend settling
    /// challenges; the first challenge of a block is settled whatever its cost.
    pub challenge_budget: u64,
    /// Blocks a roster proposal stays open for approvals.
    pub proposal_ttl: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            default_threshold_ppm: 400_000,
            min_threshold_ppm: 100_000,
            max_noise_rows: 1024,
            max_proof_deadline: 10_000,
            max_commit_window: 10_000,
            skip_base: 2,
            skip_max_height: 16,
            max_tx_bytes: 8 << 20,
            max_open_queries_per_cn: 16,
            min_validators: 1,
            max_unfounded_challenges: 3,
            challenge_budget: 200_000,
            proposal_ttl: 1000,
        }
    }
}

impl Params {
    /// Check the parameters are usable.
    pub fn check(&self) -> Result<(), DecodeError> {
        let bad = |why| Err(DecodeError::Invalid { what: "params", why });
        check_threshold(self.default_threshold_ppm)?;
        check_threshold(self.min_threshold_ppm)?;
        if self.default_threshold_ppm < self.min_threshold_ppm {
            return bad("default_threshold_ppm below min_threshold_ppm");
        }
        if !(2..=limits::MAX_NOISE_ROWS).contains(&usize::from(self.max_noise_rows)) {
            return bad("max_noise_rows must be in 2..=4096");
        }
        if self.skip_base < 2 {
            return bad("skip_base must be at least 2");
        }
        if !(1..=32).contains(&self.skip_max_height) {
            return bad("skip_max_height must be in 1..=32");
        }
        if self.max_proof_deadline == 0 || self.max_commit_window == 0 {
            return bad("deadlines must allow at least one block");
        }
        if self.max_tx_bytes < 1024 {
            return bad("max_tx_bytes below 1024");
        }
        if self.max_open_queries_per_cn == 0 {
            return bad("max_open_queries_per_cn must allow at least one query");
        }
        if self.min_validators == 0 {
            return bad("min_validators must be at least 1");
        }
        if self.proposal_ttl == 0 {
            return bad("proposal_ttl must allow at least one block");
        }
        Ok(())
    }
}

/// A verifying node of the roster.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VnEntry {
    /// The CometBFT validator address (first 20 bytes of SHA-256 of its ed25519 key).
    pub validator_address: [u8; 20],
    /// The sr25519 key for bitmap commits and the VRF.
    pub key: VerifyingKey,
}

/// A computing node of the roster.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CnEntry {
    /// The sr25519 signing key.
    pub key: VerifyingKey,
    /// The ElGamal key share `K_i`.
    pub share: PublicKey,
    /// Proof of possession of the share, bound to [`cn_pop_context`].
    pub share_pop: PossessionProof,
}

/// A data provider of the roster.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct DpEntry {
    /// The sr25519 signing key.
    pub key: VerifyingKey,
}

/// Every key of the system; an entity's index is its position in its list.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Default)]
pub struct Roster {
    /// Verifying nodes `vn-0 ..`.
    pub vns: Vec<VnEntry>,
    /// Computing nodes `cn-0 ..`.
    pub cns: Vec<CnEntry>,
    /// Data providers `dp-0 ..`.
    pub dps: Vec<DpEntry>,
}

/// The context a computing node's proof of possession is bound to.
pub fn cn_pop_context(cn: EntityId) -> Vec<u8> {
    format!("lemal/v1/cn-share/{cn}").into_bytes()
}

impl Roster {
    /// The signing key of an entity, if it is in the roster.
    pub fn signing_key(&self, id: EntityId) -> Option<&VerifyingKey> {
        let i = usize::try_from(id.index).ok()?;
        match id.role {
            crate::ids::Role::Dp => self.dps.get(i).map(|e| &e.key),
            crate::ids::Role::Cn => self.cns.get(i).map(|e| &e.key),
            crate::ids::Role::Vn => self.vns.get(i).map(|e| &e.key),
        }
    }

    /// All verifying nodes, in order.
    pub fn vn_ids(&self) -> Vec<EntityId> {
        (0..self.vns.len()).map(|i| EntityId::vn(i as u32)).collect()
    }

    /// Check the roster: non-empty roles within their bounds ([`limits::MAX_VNS`],
    /// [`limits::MAX_ROSTER_CNS`], [`limits::MAX_ROSTER_DPS`]), valid proofs of possession, no
    /// duplicate keys.
    pub fn check(&self) -> Result<(), DecodeError> {
        let bad = |why| Err(DecodeError::Invalid { what: "roster", why });
        if self.vns.is_empty() || self.cns.is_empty() || self.dps.is_empty() {
            return bad("needs at least one VN, one CN and one DP");
        }
        if self.vns.len() > limits::MAX_VNS
            || self.cns.len() > limits::MAX_ROSTER_CNS
            || self.dps.len() > limits::MAX_ROSTER_DPS
        {
            return bad("too many entities");
        }
        for (i, cn) in self.cns.iter().enumerate() {
            if cn.share_pop.verify(&cn_pop_context(EntityId::cn(i as u32)), &cn.share).is_err() {
                return bad("a computing node's share has an invalid proof of possession");
            }
        }
        let mut keys: Vec<[u8; 32]> = self
            .vns
            .iter()
            .map(|e| e.key.to_bytes())
            .chain(self.cns.iter().map(|e| e.key.to_bytes()))
            .chain(self.dps.iter().map(|e| e.key.to_bytes()))
            .collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return bad("a signing key appears twice");
        }
        let mut addrs: Vec<[u8; 20]> = self.vns.iter().map(|v| v.validator_address).collect();
        addrs.sort_unstable();
        if addrs.windows(2).any(|w| w[0] == w[1]) {
            return bad("a validator address appears twice");
        }
        Ok(())
    }
}

/// Genesis `app_state` as JSON: parameters and the roster with hex-encoded keys.
///
/// ```json
/// { "params": { "default_threshold_ppm": 400000, ... },
///   "roster": { "vns": [{"validator_address": "<40 hex>", "key": "<64 hex>"}],
///               "cns": [{"key": "<64 hex>", "share": "<64 hex>", "share_pop": "<128 hex>"}],
///               "dps": [{"key": "<64 hex>"}] } }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisState {
    /// Chain parameters (missing fields take their defaults).
    #[serde(default)]
    pub params: Params,
    /// The roster.
    pub roster: RosterJson,
}

/// JSON form of the roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RosterJson {
    /// Verifying nodes.
    pub vns: Vec<VnJson>,
    /// Computing nodes.
    pub cns: Vec<CnJson>,
    /// Data providers.
    pub dps: Vec<DpJson>,
}

/// JSON form of a verifying node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VnJson {
    /// Validator address, 40 hex digits.
    pub validator_address: String,
    /// sr25519 key, 64 hex digits.
    pub key: String,
}

/// JSON form of a computing node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnJson {
    /// sr25519 key, 64 hex digits.
    pub key: String,
    /// ElGamal share, 64 hex digits.
    pub share: String,
    /// Proof of possession of the share, 128 hex digits.
    pub share_pop: String,
}

/// JSON form of a data provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpJson {
    /// sr25519 key, 64 hex digits.
    pub key: String,
}

fn hex_array<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], DecodeError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| DecodeError::Invalid { what, why: "wrong length or not hex" })?;
    Ok(out)
}

impl GenesisState {
    /// Decode and validate into typed parameters and roster.
    pub fn into_typed(self) -> Result<(Params, Roster), DecodeError> {
        self.params.check()?;
        let vns = self
            .roster
            .vns
            .iter()
            .map(|v| {
                Ok(VnEntry {
                    validator_address: hex_array("validator_address", &v.validator_address)?,
                    key: VerifyingKey::from_bytes(&hex_array("vn key", &v.key)?)?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        let cns = self
            .roster
            .cns
            .iter()
            .map(|c| {
                Ok(CnEntry {
                    key: VerifyingKey::from_bytes(&hex_array("cn key", &c.key)?)?,
                    share: PublicKey::from_bytes(&hex_array("cn share", &c.share)?)?,
                    share_pop: PossessionProof::from_bytes(&hex_array("cn pop", &c.share_pop)?)?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        let dps = self
            .roster
            .dps
            .iter()
            .map(|d| Ok(DpEntry { key: VerifyingKey::from_bytes(&hex_array("dp key", &d.key)?)? }))
            .collect::<Result<_, DecodeError>>()?;
        let roster = Roster { vns, cns, dps };
        roster.check()?;
        Ok((self.params, roster))
    }

    /// The JSON form of typed parameters and roster.
    pub fn from_typed(params: &Params, roster: &Roster) -> Self {
        GenesisState {
            params: params.clone(),
            roster: RosterJson {
                vns: roster
                    .vns
                    .iter()
                    .map(|v| VnJson {
                        validator_address: hex::encode(v.validator_address),
                        key: hex::encode(v.key.to_bytes()),
                    })
                    .collect(),
                cns: roster
                    .cns
                    .iter()
                    .map(|c| CnJson {
                        key: hex::encode(c.key.to_bytes()),
                        share: hex::encode(c.share.as_bytes()),
                        share_pop: hex::encode(c.share_pop.to_bytes()),
                    })
                    .collect(),
                dps: roster
                    .dps
                    .iter()
                    .map(|d| DpJson { key: hex::encode(d.key.to_bytes()) })
                    .collect(),
            },
        }
    }
}

/// Where a query is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum QueryStatus {
    /// Accepting proofs until every expected proof is in or the proof deadline passes.
    Collecting,
    /// Proof phase over (at `since`); accepting bitmap commits until every VN committed or the
    /// commit window ends.
    Committing {
        /// CometBFT height at which the proof phase ended.
        since: u64,
    },
    /// Closed: its skipblock is appended.
    Finalized {
        /// Skipchain index of the query's block.
        block: u64,
    },
}

/// A registered query (immutable once written).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryRecord {
    /// The registration as submitted.
    pub registration: RegisterQuery,
    /// The computing node that registered it.
    pub registrar: EntityId,
    /// CometBFT height of registration.
    pub registered_at: u64,
}

impl QueryRecord {
    /// Last height at which an aggregation must still list every allowed input (it may leave
    /// out a missing one only above it).
    pub fn dp_deadline_height(&self) -> u64 {
        self.registered_at + u64::from(self.registration.dp_deadline)
    }

    /// Last height at which proofs are accepted.
    pub fn proof_deadline_height(&self) -> u64 {
        self.registered_at + u64::from(self.registration.proof_deadline)
    }
}

/// What changes while a query runs; kept apart from the registration so that each accepted
/// proof rewrites a few bytes only.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryProgress {
    /// Lifecycle state.
    pub status: QueryStatus,
    /// Proofs received.
    pub received: u32,
    /// Bitmap commits received.
    pub commits: u32,
    /// Fixed when the proof phase ends: the proof set the verifying nodes judge.
    pub judged: Option<JudgedSet>,
}

/// The proof set the verifying nodes judge, fixed when the proof phase ends.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct JudgedSet {
    /// One flag per expected proof (in expected-proof order): whether it arrived.
    pub received: Vec<bool>,
    /// [`proofs_root`] of the received proofs' hashes, in key order.
    pub proofs_root: [u8; 32],
    /// The verifying nodes whose bitmaps the query expects, in roster order: those in good
    /// standing when the proof phase ended.
    pub verifiers: Vec<EntityId>,
}

/// A proof accepted on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProofRecord {
    /// Its key.
    pub key: ProofKey,
    /// Aggregation inputs (empty for other kinds).
    pub inputs: Vec<ProofKey>,
    /// Statement outputs.
    pub outputs: Vec<Ciphertext>,
    /// Proof bytes.
    pub proof: Vec<u8>,
    /// CometBFT height of acceptance.
    pub height: u64,
}

impl ProofRecord {
    /// The proof's hash, a leaf of [`proofs_root`]: SHA-256 over a label and the borsh encoding
    /// of key, inputs, outputs and proof bytes (the height is not part of it).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"lemal/v1/proof");
        h.update(to_borsh(&(&self.key, &self.inputs, &self.outputs, &self.proof)));
        h.finalize().into()
    }
}

/// Merkle root over proof hashes (in proof key order), RFC 6962 style: leaves and inner nodes
/// are domain-separated; the empty set has the hash of the empty string under the leaf label.
pub fn proofs_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    fn leaf(x: &[u8; 32]) -> [u8; 32] {
        Sha256::new().chain_update([0u8]).chain_update(x).finalize().into()
    }
    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        Sha256::new().chain_update([1u8]).chain_update(l).chain_update(r).finalize().into()
    }
    fn root(xs: &[[u8; 32]]) -> [u8; 32] {
        match xs.len() {
            0 => Sha256::digest([0u8]).into(),
            1 => leaf(&xs[0]),
            n => {
                let k = n.next_power_of_two() / 2;
                node(&root(&xs[..k]), &root(&xs[k..]))
            }
        }
    }
    root(leaves)
}

/// A verifying node's accepted bitmap commit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BitmapCommitRecord {
    /// The verifying node.
    pub vn: EntityId,
    /// Its VRF evaluation.
    pub vrf: VrfProof,
    /// Its verdicts, in expected-proof order.
    pub verdicts: Vec<Verdict>,
    /// CometBFT height of acceptance.
    pub height: u64,
}

/// Who verified what for one query: proof × verifier.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Default)]
pub struct Bitmap {
    /// The expected proofs, in key order (rows).
    pub proofs: Vec<ProofKey>,
    /// The verifying nodes, in roster order (columns).
    pub verifiers: Vec<EntityId>,
    /// Row-major verdicts: `verdicts[row * verifiers.len() + column]`.
    pub verdicts: Vec<Verdict>,
}

impl Bitmap {
    /// The bitmap of `proofs` × `verifiers` from each verifier's column (its committed verdicts,
    /// in `proofs` order): a verifier without a column is absent, and its column is all 3 (not
    /// received).
    pub fn from_columns<'c>(
        proofs: Vec<ProofKey>,
        verifiers: Vec<EntityId>,
        column: impl Fn(EntityId) -> Option<&'c [Verdict]>,
    ) -> Self {
        let columns: Vec<Option<&[Verdict]>> = verifiers.iter().map(|&vn| column(vn)).collect();
        let verdicts = (0..proofs.len())
            .flat_map(|row| {
                columns.iter().map(move |c| {
                    c.and_then(|c| c.get(row)).copied().unwrap_or(Verdict::NotReceived)
                })
            })
            .collect();
        Bitmap { proofs, verifiers, verdicts }
    }

    /// Whether it holds one verdict per proof and verifier.
    pub fn is_well_formed(&self) -> bool {
        self.proofs.len().checked_mul(self.verifiers.len()) == Some(self.verdicts.len())
    }

    /// Position of `(proof, verifier)` in `verdicts`.
    fn position(&self, proof: &ProofKey, verifier: EntityId) -> Option<usize> {
        let r = self.proofs.binary_search(proof).ok()?;
        let c = self.verifiers.iter().position(|v| *v == verifier)?;
        Some(r * self.verifiers.len() + c)
    }

    /// The verdict of `verifier` on `proof`.
    pub fn get(&self, proof: &ProofKey, verifier: EntityId) -> Option<Verdict> {
        self.verdicts.get(self.position(proof, verifier)?).copied()
    }

    /// The verdict of `verifier` on `proof`, to change it.
    pub fn get_mut(&mut self, proof: &ProofKey, verifier: EntityId) -> Option<&mut Verdict> {
        let i = self.position(proof, verifier)?;
        self.verdicts.get_mut(i)
    }

    /// The rows: each expected proof with its verdicts, one per verifier in column order.
    pub fn rows(&self) -> impl Iterator<Item = (&ProofKey, &[Verdict])> + '_ {
        self.proofs.iter().zip(self.verdicts.chunks(self.verifiers.len().max(1)))
    }

    /// The column of `verifier`: each expected proof with its verdict (empty when it is not a
    /// column of this bitmap).
    pub fn column(&self, verifier: EntityId) -> impl Iterator<Item = (&ProofKey, Verdict)> + '_ {
        let c = self.verifiers.iter().position(|v| *v == verifier);
        self.rows().filter_map(move |(p, row)| Some((p, *row.get(c?)?)))
    }

    /// The verifiers whose verdict on `proof` contradicts its true validity: 1 (correct) on a
    /// wrong proof, 0 (wrong) on a right one. What a challenge verdict finds at fault, and what
    /// a light client checks it against.
    pub fn contradicting(&self, proof: &ProofKey, valid: bool) -> Vec<EntityId> {
        let lie = if valid { Verdict::Wrong } else { Verdict::Correct };
        self.verifiers.iter().filter(|&&vn| self.get(proof, vn) == Some(lie)).copied().collect()
    }

    /// The entries as the report's `queryID/kind/creator/index/verifier` strings.
    pub fn entries(&self) -> impl Iterator<Item = (String, Verdict)> + '_ {
        self.rows().flat_map(move |(p, row)| {
            self.verifiers.iter().zip(row).map(move |(v, &verdict)| (p.bitmap_key(*v), verdict))
        })
    }

    /// How many entries hold each value 0, 1, 2, 3.
    pub fn counts(&self) -> [usize; 4] {
        let mut out = [0; 4];
        for v in &self.verdicts {
            out[usize::from(v.value())] += 1;
        }
        out
    }
}

/// Block time as CometBFT reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// What block 0 records: the chain's starting point.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct GenesisRecord {
    /// The chain id.
    pub chain_id: String,
    /// SHA-256 of the borsh roster.
    pub roster_hash: [u8; 32],
    /// SHA-256 of the borsh parameters.
    pub params_hash: [u8; 32],
}

impl GenesisRecord {
    /// The record of a chain with this id, roster and parameters.
    pub fn new(chain_id: &str, roster: &Roster, params: &Params) -> Self {
        GenesisRecord {
            chain_id: chain_id.to_owned(),
            roster_hash: Sha256::digest(to_borsh(roster)).into(),
            params_hash: Sha256::digest(to_borsh(params)).into(),
        }
    }
}

/// The content of a skipblock; block 0 carries the genesis record, later blocks one query.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BlockPayload {
    /// Block 0.
    Genesis(GenesisRecord),
    /// A finalized query.
    Query(QueryPayload),
    /// The settlement of a challenge, linked to its query's block.
    Verdict(ChallengeVerdict),
    /// A roster change that took effect.
    RosterChange(Box<RosterChangeRecord>),
}

/// What the chain decided about a challenged proof; recorded in state and as a skipblock.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChallengeVerdict {
    /// The challenged proof.
    pub proof: ProofKey,
    /// Who challenged it.
    pub challenger: EntityId,
    /// Whether the proof verifies against its statement built from the ledger.
    pub valid: bool,
    /// Why it does not verify (empty when it does).
    pub reason: String,
    /// The proof's creator, when the proof is wrong.
    pub creator_at_fault: Option<EntityId>,
    /// The verifying nodes that checked the proof and said the opposite of the truth (1 for a
    /// wrong proof, 0 for a right one), in roster order.
    pub vns_at_fault: Vec<EntityId>,
    /// Skipchain index of the query's block.
    pub query_block: u64,
    /// Hash of the query's block.
    pub query_block_hash: [u8; 32],
    /// CometBFT height at which it was settled.
    pub height: u64,
}

impl ChallengeVerdict {
    /// The longest `reason` recorded, in bytes.
    pub const MAX_REASON: usize = 200;

    /// A verification error as a verdict's `reason`: at most [`Self::MAX_REASON`] bytes, cut at
    /// a character boundary (error texts hold non-ASCII letters such as Σ).
    pub fn reason_of(error: &str) -> String {
        let mut end = error.len().min(Self::MAX_REASON);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error[..end].to_owned()
    }

    /// Whether the challenge found something: a wrong proof or a verifying node that lied.
    pub fn founded(&self) -> bool {
        !self.valid || !self.vns_at_fault.is_empty()
    }

    /// Everyone the verdict finds at fault: the creator (if the proof is wrong), then the
    /// verifying nodes.
    pub fn at_fault(&self) -> impl Iterator<Item = EntityId> + '_ {
        self.creator_at_fault.iter().chain(&self.vns_at_fault).copied()
    }
}

/// A challenge verdict as stored under its proof key, with the index of its skipblock.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VerdictRecord {
    /// The verdict.
    pub verdict: ChallengeVerdict,
    /// Skipchain index of the verdict's own block.
    pub block: u64,
}

/// Whether an entity may take part in new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Standing {
    /// Found at fault by a challenge verdict.
    Faulty,
    /// Removed by a roster change.
    Removed,
}

impl Standing {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Faulty => "faulty",
            Standing::Removed => "removed",
        }
    }
}

/// What put an entity out of good standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StandingCause {
    /// A challenge verdict, by the challenged proof and the verdict's skipblock.
    Verdict {
        /// The challenged proof.
        proof: ProofKey,
        /// The verdict's skipblock.
        block: u64,
    },
    /// A roster proposal.
    Proposal {
        /// The proposal's id.
        id: u64,
    },
}

/// An entity out of good standing (an entity without a record is in good standing).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StandingRecord {
    /// The entity.
    pub entity: EntityId,
    /// Its standing.
    pub standing: Standing,
    /// Why.
    pub cause: StandingCause,
    /// CometBFT height of the change.
    pub height: u64,
}

/// A verifying node's CometBFT validator: its consensus key and current voting power (0 once
/// it left the validator set).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ValidatorRecord {
    /// The ed25519 consensus key.
    pub pub_key: [u8; 32],
    /// Current voting power.
    pub power: u64,
}

impl ValidatorRecord {
    /// The CometBFT validator address: the first 20 bytes of SHA-256 of the key.
    pub fn address(&self) -> [u8; 20] {
        validator_address(&self.pub_key)
    }
}

/// The CometBFT address of an ed25519 consensus key.
pub fn validator_address(pub_key: &[u8; 32]) -> [u8; 20] {
    let digest = Sha256::digest(pub_key);
    let mut addr = [0u8; 20];
    addr.copy_from_slice(&digest[..20]);
    addr
}

/// Where a roster proposal stands.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalStatus {
    /// Collecting approvals until `expires` (inclusive).
    Open {
        /// Last CometBFT height at which it can be approved.
        expires: u64,
    },
    /// Approved by more than 2/3 of the voting power and applied.
    Applied {
        /// CometBFT height.
        height: u64,
        /// Skipchain index of its block.
        block: u64,
    },
    /// Approved, but no longer applicable when approved (the roster changed meanwhile).
    Failed {
        /// CometBFT height.
        height: u64,
        /// Why.
        reason: String,
    },
}

/// A roster proposal and its approvals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalRecord {
    /// Its id, from 0.
    pub id: u64,
    /// The change.
    pub change: crate::tx::RosterChange,
    /// The verifying node that proposed it.
    pub proposer: EntityId,
    /// The verifying nodes that approved it (the proposer first), in order of approval.
    pub approvals: Vec<EntityId>,
    /// CometBFT height of the proposal.
    pub height: u64,
    /// Its status.
    pub status: ProposalStatus,
}

/// What a roster change's skipblock records.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RosterChangeRecord {
    /// The proposal's id.
    pub proposal: u64,
    /// The change.
    pub change: crate::tx::RosterChange,
    /// The entity it added or changed.
    pub entity: EntityId,
    /// Who approved it.
    pub approvals: Vec<EntityId>,
    /// Their power, and the total power, when it passed.
    pub approved_power: u64,
    /// The total voting power when it passed.
    pub total_power: u64,
    /// SHA-256 of the borsh roster after it.
    pub roster_hash: [u8; 32],
}

/// What a query's skipblock records.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryPayload {
    /// The query.
    pub query_id: QueryId,
    /// Who verified what.
    pub bitmap: Bitmap,
    /// Sampling threshold in ppm.
    pub threshold_ppm: u32,
    /// Verifying nodes whose bitmap was committed.
    pub reported: Vec<EntityId>,
    /// Verifying nodes absent at the end of the commit window.
    pub absent: Vec<EntityId>,
    /// [`proofs_root`] over the received proofs' hashes, in key order.
    pub proofs_root: [u8; 32],
    /// The final result ciphertexts for the querier, when every key switch arrived.
    pub result: Vec<Ciphertext>,
    /// The data providers whose range proofs the root aggregation covers, through the
    /// aggregation tree as accepted on the ledger ([`crate::proofs::covered_dps`]), increasing.
    pub covered: Vec<EntityId>,
    /// The query's data providers the result does not cover (missing at the DP deadline).
    pub uncovered: Vec<EntityId>,
}

/// One block of the skipchain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SkipBlock {
    /// Position in the chain, from 0.
    pub index: u64,
    /// Skip height ([`crate::state::skip_height`]).
    pub height: u8,
    /// `back_links[ℓ]` = hash of the latest earlier block of height > ℓ (empty for block 0).
    pub back_links: Vec<[u8; 32]>,
    /// CometBFT height of the block that appended it.
    pub ledger_height: u64,
    /// CometBFT time of that block.
    pub time: Timestamp,
    /// What the block records.
    pub payload: BlockPayload,
}

impl SkipBlock {
    /// The block hash: SHA-256 over a label and the borsh encoding of every field (forward
    /// links are kept beside the block and are not hashed).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"lemal/v1/skipblock");
        h.update(to_borsh(self));
        h.finalize().into()
    }

    /// The query id, for query blocks.
    pub fn query_id(&self) -> Option<QueryId> {
        match &self.payload {
            BlockPayload::Query(q) => Some(q.query_id),
            BlockPayload::Genesis(_) | BlockPayload::Verdict(_) | BlockPayload::RosterChange(_) => {
                None
            }
        }
    }
}

/// Skip height of block `index`: `min(h_max, 1 + the number of times base divides index)`;
/// block 0 has `h_max`.
pub fn skip_height(index: u64, base: u32, max_height: u8) -> u8 {
    if index == 0 {
        return max_height;
    }
    let base = u64::from(base.max(2));
    let mut h = 1u8;
    let mut i = index;
    while h < max_height && i.is_multiple_of(base) {
        i /= base;
        h += 1;
    }
    h
}

/// `base^level`, saturating.
fn span(base: u32, level: usize) -> u64 {
    let mut s = 1u64;
    for _ in 0..level {
        s = s.saturating_mul(u64::from(base.max(2)));
    }
    s
}

/// Index of the block that back link `level` of block `index ≥ 1` points to: the latest earlier
/// block of height > `level`, i.e. the largest multiple of `base^level` below `index`.
pub fn back_link_target(index: u64, level: usize, base: u32) -> u64 {
    let s = span(base, level);
    ((index - 1) / s) * s
}

/// Index of the block that forward link `level` of block `index` will point to: the next block
/// of height > `level`, i.e. the smallest multiple of `base^level` above `index`.
pub fn forward_link_target(index: u64, level: usize, base: u32) -> u64 {
    let s = span(base, level);
    (index / s).saturating_add(1).saturating_mul(s)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::elgamal::SecretKey;
    use crate::ids::ProofKind;
    use crate::sig::SigningKey;

    fn key(creator: EntityId) -> ProofKey {
        ProofKey { query: QueryId([7; 16]), kind: ProofKind::Range, creator, index: 0 }
    }

    /// Two proofs (dp-0, dp-1) × three verifiers; vn-1 absent.
    fn bitmap() -> Bitmap {
        let proofs = vec![key(EntityId::dp(0)), key(EntityId::dp(1))];
        let verifiers = vec![EntityId::vn(0), EntityId::vn(1), EntityId::vn(2)];
        let vn0 = [Verdict::Correct, Verdict::NotSelected];
        let vn2 = [Verdict::NotSelected, Verdict::Wrong];
        Bitmap::from_columns(proofs, verifiers, |vn| match vn.index {
            0 => Some(&vn0[..]),
            2 => Some(&vn2[..]),
            _ => None,
        })
    }

    #[test]
    fn bitmap_from_columns_is_row_major_with_absent_columns_not_received() {
        let b = bitmap();
        assert!(b.is_well_formed());
        use Verdict::{Correct, NotReceived, NotSelected, Wrong};
        assert_eq!(
            b.verdicts,
            [Correct, NotReceived, NotSelected, NotSelected, NotReceived, Wrong]
        );
        assert_eq!(b.get(&key(EntityId::dp(1)), EntityId::vn(2)), Some(Wrong));
        assert_eq!(b.get(&key(EntityId::dp(1)), EntityId::vn(3)), None);
    }

    #[test]
    fn bitmap_rows_columns_and_entries_agree_with_get() {
        let b = bitmap();
        for (proof, row) in b.rows() {
            for (vn, v) in b.verifiers.iter().zip(row) {
                assert_eq!(b.get(proof, *vn), Some(*v));
            }
        }
        for &vn in &b.verifiers {
            for (proof, v) in b.column(vn) {
                assert_eq!(b.get(proof, vn), Some(v));
            }
            assert_eq!(b.column(vn).count(), b.proofs.len());
        }
        assert_eq!(b.column(EntityId::vn(9)).count(), 0);
        assert_eq!(b.entries().count(), 6);
        let (entry, v) = b.entries().last().expect("entries");
        assert_eq!(entry, key(EntityId::dp(1)).bitmap_key(EntityId::vn(2)));
        assert_eq!(v, Verdict::Wrong);
    }

    #[test]
    fn bitmap_entry_changed_through_get_mut_is_read_back() {
        let mut b = bitmap();
        let (proof, vn) = (key(EntityId::dp(0)), EntityId::vn(2));
        *b.get_mut(&proof, vn).expect("entry") = Verdict::Correct;
        assert_eq!(b.get(&proof, vn), Some(Verdict::Correct));
        assert_eq!(b.contradicting(&proof, false), [EntityId::vn(0), vn]);
        b.verdicts.pop();
        assert!(!b.is_well_formed());
    }

    /// Plain reference: scan backwards for the latest earlier block taller than `level`.
    fn reference_back(index: u64, level: usize, base: u32, hmax: u8) -> u64 {
        (0..index).rev().find(|&j| usize::from(skip_height(j, base, hmax)) > level).unwrap_or(0)
    }

    fn reference_forward(index: u64, level: usize, base: u32, hmax: u8) -> u64 {
        (index + 1..).find(|&j| usize::from(skip_height(j, base, hmax)) > level).unwrap_or(0)
    }

    #[test]
    fn heights_follow_the_skipchain_rule() {
        assert_eq!(skip_height(0, 2, 5), 5);
        assert_eq!(skip_height(1, 2, 5), 1);
        assert_eq!(skip_height(2, 2, 5), 2);
        assert_eq!(skip_height(8, 2, 5), 4);
        assert_eq!(skip_height(64, 2, 5), 5);
        assert_eq!(skip_height(9, 3, 5), 3);
    }

    #[test]
    fn link_targets_match_a_linear_scan() {
        for (base, hmax) in [(2u32, 4u8), (3, 3), (2, 16), (4, 2)] {
            for i in 1..300u64 {
                for level in 0..usize::from(skip_height(i, base, hmax)) {
                    assert_eq!(
                        back_link_target(i, level, base),
                        reference_back(i, level, base, hmax),
                        "back base {base} i {i} level {level}"
                    );
                }
                for level in 0..usize::from(skip_height(i, base, hmax)) {
                    assert_eq!(
                        forward_link_target(i, level, base),
                        reference_forward(i, level, base, hmax),
                        "forward base {base} i {i} level {level}"
                    );
                }
            }
        }
    }

    #[test]
    fn proofs_root_depends_on_every_leaf_and_order() {
        let leaves: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
        let r = proofs_root(&leaves);
        let mut swapped = leaves.clone();
        swapped.swap(1, 2);
        assert_ne!(proofs_root(&swapped), r);
        assert_ne!(proofs_root(&leaves[..4]), r);
        assert_ne!(proofs_root(&[]), proofs_root(&[[0; 32]]));
    }

    #[test]
    fn a_verdicts_reason_is_cut_at_a_character_boundary() {
        let long = "Σ".repeat(150); // 300 bytes, two per character
        let reason = ChallengeVerdict::reason_of(&long);
        assert_eq!(reason.len(), 200);
        assert!(reason.chars().all(|c| c == 'Σ'));
        let odd = format!("x{long}"); // byte 200 falls inside a Σ
        assert_eq!(ChallengeVerdict::reason_of(&odd).len(), 199);
        assert_eq!(ChallengeVerdict::reason_of("short"), "short");
    }

    /// A roster of `vns` verifying nodes, one computing node and one data provider, all keys
    /// distinct.
    fn roster_with_vns(vns: usize) -> Roster {
        let sig_key = |role: u8, i: usize| {
            let mut seed = [role; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SigningKey::from_seed(seed).verifying_key()
        };
        let vns = (0..vns)
            .map(|i| {
                let mut validator_address = [0; 20];
                validator_address[..8].copy_from_slice(&(i as u64).to_be_bytes());
                VnEntry { validator_address, key: sig_key(1, i) }
            })
            .collect();
        let share = SecretKey::random(&mut ChaCha20Rng::seed_from_u64(7));
        let share_pop = share
            .prove_possession(&cn_pop_context(EntityId::cn(0)), &mut ChaCha20Rng::seed_from_u64(8));
        let cns = vec![CnEntry { key: sig_key(2, 0), share: share.public(), share_pop }];
        Roster { vns, cns, dps: vec![DpEntry { key: sig_key(3, 0) }] }
    }

    #[test]
    fn roster_with_more_verifying_nodes_than_the_limit_is_refused() {
        assert_eq!(roster_with_vns(limits::MAX_VNS).check(), Ok(()));
        assert_eq!(
            roster_with_vns(limits::MAX_VNS + 1).check(),
            Err(DecodeError::Invalid { what: "roster", why: "too many entities" })
        );
    }

    #[test]
    fn default_params_are_valid() {
        assert_eq!(Params::default().check(), Ok(()));
        let bad = Params { skip_base: 1, ..Params::default() };
        assert!(bad.check().is_err());
        let bad = Params { min_threshold_ppm: 500_000, ..Params::default() };
        assert!(bad.check().is_err(), "default below the minimum");
        let bad = Params { max_noise_rows: 5000, ..Params::default() };
        assert!(bad.check().is_err(), "beyond the hard limit");
    }
}
