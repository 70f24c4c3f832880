//! Transactions: a signed envelope around one of three bodies.
//!
//! Wire format (borsh): `Envelope { chain_id, signer, body, signature }`. The signature covers
//! the borsh bytes of `(chain_id, signer, body)` under the signing context of the body's kind
//! ([`crate::sig::MessageKind`]). Because every field decodes strictly (canonical points, known
//! enum tags, exact lengths), an encoding decodes only from its one canonical byte string, and the
//! signed bytes are exactly the transaction bytes without the trailing 64-byte signature
//! ([`signed_part`]).
//!
//! Replay protection comes from uniqueness in ledger state: a query id registers once, a proof key
//! is accepted once, a bitmap per (query, VN) once, and every signature covers the chain id.
//!
//! [`Tx::decode`] is the single boundary where transaction bytes become typed values: it refuses
//! trailing bytes, non-canonical points, unknown tags and any length outside [`limits`], with a
//! typed [`DecodeError`].

use borsh::{BorshDeserialize, BorshSerialize};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::elgamal::{Ciphertext, PossessionProof, PublicKey, SecretKey};
use crate::error::DecodeError;
use crate::group::{from_borsh, to_borsh};
use crate::ids::{EntityId, ProofKey, ProofKind, QueryId, Role, Verdict};
pub use crate::noise::NoiseParams;
use crate::proofs::range::{self, Bounds};
use crate::proofs::{aggregation, keyswitch, shuffle};
use crate::sampling::{check_threshold, VrfProof};
use crate::sig::{MessageKind, SigError, Signature, SigningKey, VerifyingKey};

/// Hard upper bounds enforced when decoding; genesis parameters may only be stricter.
pub mod limits {
    /// Longest chain id (CometBFT's own limit).
    pub const MAX_CHAIN_ID: usize = 50;
    /// Longest SQL text of a query.
    pub const MAX_SQL: usize = 1024;
    /// Most data providers in one query.
    pub const MAX_DPS: usize = 1024;
    /// Most computing nodes in one query.
    pub const MAX_CNS: usize = 64;
    /// Most values (ciphertext components) per data provider.
    pub const MAX_WIDTH: usize = 8;
    /// Most rows of the public noise list.
    pub const MAX_NOISE_ROWS: usize = 4096;
    /// Most ciphertexts in one proof submission's outputs (the largest noise list).
    pub const MAX_OUTPUTS: usize = MAX_NOISE_ROWS * MAX_WIDTH;
    /// Most input references of an aggregation.
    pub const MAX_INPUTS: usize = MAX_DPS + MAX_CNS;
    /// Most verdicts in one bitmap commit (one per expected proof).
    pub const MAX_VERDICTS: usize = MAX_DPS + 3 * MAX_CNS;
    /// Largest voting power of one verifying node (far below CometBFT's total of 2^63 / 8).
    pub const MAX_VN_POWER: u64 = 1_000_000_000;
    /// Most data providers in the roster: sixteen queries' worth, so the roster can hold more
    /// entities than one query names while genesis and every roster scan stay bounded.
    pub const MAX_ROSTER_DPS: usize = 16 * MAX_DPS;
    /// Most computing nodes in the roster, sixteen queries' worth as for data providers.
    pub const MAX_ROSTER_CNS: usize = 16 * MAX_CNS;
    /// Most verifying nodes in the roster, hence most validators. Each of them signs a bitmap
    /// commit for every query and owns a column of its bitmap, so this bound also caps the
    /// commits, bitmap entries and block-end work of one query.
    pub const MAX_VNS: usize = 1024;
}

/// The aggregate a query computes; it fixes what each data provider encrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Operation {
    /// `sum(x)`: one value, the local sum.
    Sum = 0,
    /// `count(*)`: one value, the local count.
    Count = 1,
    /// `avg(x)`: two values, the local sum and count.
    Avg = 2,
    /// `variance(x)`: three values, the local sum, sum of squares and count.
    Variance = 3,
}

impl Operation {
    /// How many ciphertexts each data provider contributes.
    pub fn width(self) -> usize {
        match self {
            Operation::Sum | Operation::Count => 1,
            Operation::Avg => 2,
            Operation::Variance => 3,
        }
    }

    /// The text form used in SQL and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Sum => "sum",
            Operation::Count => "count",
            Operation::Avg => "avg",
            Operation::Variance => "variance",
        }
    }
}

/// What a query asks and who takes part; fixes the expected proof set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QuerySpec {
    /// The query text (informational; data providers interpret it).
    pub sql: String,
    /// The aggregate.
    pub operation: Operation,
    /// Bit size of the range proofs: 8, 16, 32 or 64.
    pub range_bits: u8,
    /// Public bounds of each value a data provider encrypts (`operation.width()` of them).
    pub bounds: Vec<Bounds>,
    /// Participating data providers, strictly increasing.
    pub dps: Vec<u32>,
    /// Computing nodes in protocol order, distinct. `cns[0]` is the root of the aggregation
    /// tree; the shuffle chain runs from `cns[0]` to the last.
    pub cns: Vec<u32>,
    /// The noise parameters; the public list is derived from them ([`NoiseParams::list`]).
    /// Scale 0: the query adds no noise (and then expects no shuffle proofs).
    pub noise: NoiseParams,
}

impl QuerySpec {
    /// Ciphertexts per data provider, per aggregate and per noise row.
    pub fn width(&self) -> usize {
        self.operation.width()
    }

    /// Rows of the noise list.
    pub fn noise_rows(&self) -> usize {
        self.noise.rows()
    }

    /// Whether the query adds noise (and so expects shuffle proofs).
    pub fn has_noise(&self) -> bool {
        self.noise.is_on()
    }

    /// The public noise list, derived from the noise parameters: `noise_rows()` rows of
    /// `width()` values, row-major; empty without noise.
    pub fn noise_list(&self) -> Vec<i64> {
        self.noise.list(self.width())
    }

    /// Structural checks independent of ledger state.
    pub fn check(&self) -> Result<(), DecodeError> {
        let bad = |why| Err(DecodeError::Invalid { what: "query spec", why });
        check_len("sql", self.sql.len(), limits::MAX_SQL)?;
        if !matches!(self.range_bits, 8 | 16 | 32 | 64) {
            return bad("range bits must be 8, 16, 32 or 64");
        }
        if self.bounds.len() != self.width() {
            return bad("one bound per value of the operation");
        }
        for b in &self.bounds {
            if b.lo > b.hi || i128::from(b.hi) - i128::from(b.lo) >= 1i128 << self.range_bits {
                return bad("bounds empty or wider than the range bits");
            }
        }
        check_len("dps", self.dps.len(), limits::MAX_DPS)?;
        check_len("cns", self.cns.len(), limits::MAX_CNS)?;
        if self.dps.is_empty() || self.cns.is_empty() {
            return bad("at least one data provider and one computing node");
        }
        if self.dps.len() < self.cns.len() {
            return bad("every computing node needs at least one data provider to aggregate");
        }
        if self.dps.windows(2).any(|w| w[0] >= w[1]) {
            return bad("data providers must be strictly increasing");
        }
        let mut cns = self.cns.clone();
        cns.sort_unstable();
        if cns.windows(2).any(|w| w[0] == w[1]) {
            return bad("computing nodes must be distinct");
        }
        if self.has_noise() {
            if !(2..=limits::MAX_NOISE_ROWS).contains(&self.noise_rows()) {
                return bad("noise list needs 2..=4096 rows");
            }
        } else if self.noise.rows != 0 {
            return bad("noise rows without a noise scale");
        }
        Ok(())
    }

    /// Position of a computing node in protocol order.
    pub fn cn_position(&self, cn: u32) -> Option<usize> {
        self.cns.iter().position(|&c| c == cn)
    }

    /// The proof set this query expects, sorted by key.
    ///
    /// One range proof per data provider; one aggregation, one shuffle (when noise is on) and one
    /// key switch per computing node; every index is 0.
    pub fn expected_proofs(&self, query: QueryId) -> Vec<ProofKey> {
        let key = |kind, creator| ProofKey { query, kind, creator, index: 0 };
        let mut keys: Vec<ProofKey> =
            self.dps.iter().map(|&d| key(ProofKind::Range, EntityId::dp(d))).collect();
        for &c in &self.cns {
            keys.push(key(ProofKind::Aggregation, EntityId::cn(c)));
            if self.has_noise() {
                keys.push(key(ProofKind::Shuffle, EntityId::cn(c)));
            }
            keys.push(key(ProofKind::KeySwitch, EntityId::cn(c)));
        }
        keys.sort_unstable();
        keys
    }

    /// Whether `key` belongs to the expected proof set (without building the set).
    pub fn expects(&self, key: &ProofKey) -> bool {
        if key.index != 0 {
            return false;
        }
        let i = key.creator.index;
        match (key.kind, key.creator.role) {
            (ProofKind::Range, Role::Dp) => self.dps.binary_search(&i).is_ok(),
            (ProofKind::Aggregation | ProofKind::KeySwitch, Role::Cn) => self.cns.contains(&i),
            (ProofKind::Shuffle, Role::Cn) => self.has_noise() && self.cns.contains(&i),
            _ => false,
        }
    }

    /// The inputs a computing node may aggregate, sorted: the range proofs of the data
    /// providers assigned to it (data provider at position `j` goes to the node at position
    /// `j mod m`) and the aggregations of its children in the binary tree over positions
    /// (`2p + 1`, `2p + 2`).
    pub fn aggregation_inputs(&self, query: QueryId, cn: u32) -> Vec<ProofKey> {
        let Some(p) = self.cn_position(cn) else { return Vec::new() };
        let m = self.cns.len();
        let mut keys: Vec<ProofKey> = self
            .dps
            .iter()
            .enumerate()
            .filter(|(j, _)| j % m == p)
            .map(|(_, &d)| ProofKey {
                query,
                kind: ProofKind::Range,
                creator: EntityId::dp(d),
                index: 0,
            })
            .collect();
        for child in [2 * p + 1, 2 * p + 2] {
            if let Some(&c) = self.cns.get(child) {
                keys.push(ProofKey {
                    query,
                    kind: ProofKind::Aggregation,
                    creator: EntityId::cn(c),
                    index: 0,
                });
            }
        }
        keys.sort_unstable();
        keys
    }

    /// The shuffle a computing node takes its input list from: `None` for the first node (its
    /// input is the public noise list, trivially encrypted), the previous node's shuffle after.
    pub fn shuffle_input(&self, query: QueryId, cn: u32) -> Option<ProofKey> {
        let p = self.cn_position(cn)?;
        let prev = *self.cns.get(p.checked_sub(1)?)?;
        Some(ProofKey { query, kind: ProofKind::Shuffle, creator: EntityId::cn(prev), index: 0 })
    }

    /// What every key switch takes as input: the root aggregation, and the last shuffle when the
    /// query adds noise (the result is the root aggregate plus the first row of that list).
    pub fn keyswitch_inputs(&self, query: QueryId) -> (ProofKey, Option<ProofKey>) {
        let root = ProofKey {
            query,
            kind: ProofKind::Aggregation,
            creator: EntityId::cn(self.cns[0]),
            index: 0,
        };
        let last = self.cns[self.cns.len() - 1];
        let shuffle = self.has_noise().then_some(ProofKey {
            query,
            kind: ProofKind::Shuffle,
            creator: EntityId::cn(last),
            index: 0,
        });
        (root, shuffle)
    }

    /// The proofs whose outputs the proof `key` takes as inputs: none for a range proof, the
    /// ones [`QuerySpec::aggregation_inputs`] allows for an aggregation (sorted; it may use the
    /// ones that arrived), the previous shuffle for a shuffle, the root aggregation and the last
    /// shuffle for a key switch.
    pub fn inputs_of(&self, key: &ProofKey) -> Vec<ProofKey> {
        let (q, cn) = (key.query, key.creator.index);
        match key.kind {
            ProofKind::Range => Vec::new(),
            ProofKind::Aggregation => self.aggregation_inputs(q, cn),
            ProofKind::Shuffle => self.shuffle_input(q, cn).into_iter().collect(),
            ProofKind::KeySwitch => {
                let (root, shuffle) = self.keyswitch_inputs(q);
                std::iter::once(root).chain(shuffle).collect()
            }
        }
    }

    /// How many output ciphertexts a submission of `kind` carries.
    pub fn output_len(&self, kind: ProofKind) -> usize {
        match kind {
            ProofKind::Range | ProofKind::Aggregation | ProofKind::KeySwitch => self.width(),
            ProofKind::Shuffle => self.noise_rows() * self.width(),
        }
    }

    /// The exact byte length of a proof of `kind` for this query: every proof's size is fixed
    /// by its statement's shape (bit size and width for a range proof, rows for a shuffle,
    /// width for a key switch, one version byte for an aggregation).
    pub fn proof_len(&self, kind: ProofKind) -> usize {
        match kind {
            ProofKind::Range => range::proof_len(u32::from(self.range_bits), self.width()),
            ProofKind::Aggregation => aggregation::PROOF_LEN,
            ProofKind::Shuffle => shuffle::proof_len(self.noise_rows()),
            ProofKind::KeySwitch => keyswitch::proof_len(self.width()),
        }
    }
}

/// The largest proof of `kind` any query within [`limits`] can expect: the stateless bound,
/// checked before the query (and so the exact length, [`QuerySpec::proof_len`]) is known.
pub const fn max_proof_len(kind: ProofKind) -> usize {
    match kind {
        ProofKind::Range => range::proof_len(64, limits::MAX_WIDTH),
        ProofKind::Aggregation => aggregation::PROOF_LEN,
        ProofKind::Shuffle => shuffle::proof_len(limits::MAX_NOISE_ROWS),
        ProofKind::KeySwitch => keyswitch::proof_len(limits::MAX_WIDTH),
    }
}

/// Register a query (signed by a computing node of the query, its terms signed by the querier).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RegisterQuery {
    /// The new query's id; must be unused.
    pub query_id: QueryId,
    /// The querier's ElGamal key `U`.
    pub querier_key: PublicKey,
    /// The querier's Schnorr signature with `u` (`U = u·B`) over [`RegisterQuery::terms_digest`]:
    /// a proof of possession of `U` bound to every other field and the chain id.
    pub querier_sig: PossessionProof,
    /// The query.
    pub spec: QuerySpec,
    /// Sampling threshold in parts per million (at least the chain's `min_threshold_ppm`).
    pub threshold_ppm: u32,
    /// Blocks after registration within which data providers submit their range proofs; an
    /// aggregation may leave out a missing input only after it. Below `proof_deadline`.
    pub dp_deadline: u32,
    /// Blocks after registration within which proofs are accepted.
    pub proof_deadline: u32,
    /// Blocks after the proof phase ends within which verifying nodes commit their bitmaps.
    pub commit_window: u32,
}

impl RegisterQuery {
    /// The digest the querier signs: SHA-256 over a versioned label and the borsh encoding of
    /// the chain id and every field but the signature (query id, querier key, spec with its
    /// noise parameters, threshold, deadlines).
    pub fn terms_digest(&self, chain_id: &str) -> [u8; 32] {
        let terms = (
            chain_id,
            &self.query_id,
            &self.querier_key,
            &self.spec,
            self.threshold_ppm,
            self.dp_deadline,
            self.proof_deadline,
            self.commit_window,
        );
        let mut h = Sha256::new();
        h.update(b"lemal/v1/query-terms");
        h.update(to_borsh(&terms));
        h.finalize().into()
    }

    /// The Schnorr context of the querier's signature: a label and the terms digest.
    pub fn querier_context(&self, chain_id: &str) -> Vec<u8> {
        let mut ctx = b"lemal/v1/querier-terms/".to_vec();
        ctx.extend_from_slice(&self.terms_digest(chain_id));
        ctx
    }

    /// Sign the terms as the querier: sets `querier_key` to `U` and `querier_sig`.
    pub fn sign_as_querier<R: RngCore + CryptoRng>(
        mut self,
        chain_id: &str,
        querier: &SecretKey,
        rng: &mut R,
    ) -> Self {
        self.querier_key = querier.public();
        self.querier_sig = querier.prove_possession(&self.querier_context(chain_id), rng);
        self
    }

    /// Check the querier's signature over the terms.
    pub fn verify_querier(&self, chain_id: &str) -> Result<(), crate::ProofError> {
        self.querier_sig.verify(&self.querier_context(chain_id), &self.querier_key)
    }
}

/// Submit one proof with its statement outputs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SubmitProof {
    /// The query.
    pub query_id: QueryId,
    /// The proof contract.
    pub kind: ProofKind,
    /// The proof index ("deterministic info"); 0 for every proof the current query format expects.
    pub index: u32,
    /// Aggregation only: the ledger proofs aggregated, strictly increasing; empty otherwise.
    pub inputs: Vec<ProofKey>,
    /// The statement outputs: range — the data provider's ciphertexts; aggregation — the sum;
    /// shuffle — the new list, row-major; key switch — the `(D1, D2)` shares.
    pub outputs: Vec<Ciphertext>,
    /// The proof bytes of the kind's contract.
    pub proof: Vec<u8>,
}

impl SubmitProof {
    /// The ledger key of this proof for `signer`.
    pub fn key(&self, signer: EntityId) -> ProofKey {
        ProofKey { query: self.query_id, kind: self.kind, creator: signer, index: self.index }
    }
}

/// A verifying node's signed verdicts for one query.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitBitmap {
    /// The query.
    pub query_id: QueryId,
    /// The node's VRF evaluation for this query ([`crate::sampling`]).
    pub vrf: VrfProof,
    /// Digest of the proof set judged ([`crate::state::proofs_root`] of the received proofs).
    pub proofs_digest: [u8; 32],
    /// One verdict per expected proof, in the order of [`QuerySpec::expected_proofs`].
    pub verdicts: Vec<Verdict>,
}

/// Ask the chain to settle one proof of a finalized query: every node re-verifies it in
/// FinalizeBlock, and the verdict names the proof's creator if it is wrong and every verifying
/// node whose bitmap contradicts the truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Challenge {
    /// The challenged proof (its query is `proof.query`).
    pub proof: ProofKey,
}

/// A change of the roster, decided by the verifying nodes ([`ProposeRosterChange`],
/// [`ApproveRosterChange`]). Entities keep their index for life: a removed entity stays in the
/// roster, marked removed, and an added one takes the next index of its role.
// Roster changes are rare and short-lived; the size of `AddCn` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RosterChange {
    /// Add a data provider.
    AddDp {
        /// Its sr25519 key.
        key: VerifyingKey,
    },
    /// Add a computing node.
    AddCn {
        /// Its sr25519 key.
        key: VerifyingKey,
        /// Its ElGamal key share.
        share: PublicKey,
        /// Proof of possession of the share, bound to the index the node will take
        /// ([`crate::state::cn_pop_context`]).
        share_pop: PossessionProof,
    },
    /// Add a verifying node, which becomes a CometBFT validator.
    AddVn {
        /// Its sr25519 key (bitmaps and VRF).
        key: VerifyingKey,
        /// Its CometBFT ed25519 consensus key.
        validator_key: [u8; 32],
        /// Its voting power, `1..=MAX_VN_POWER`.
        power: u64,
    },
    /// Remove an entity: it may take no part in new queries, and a verifying node leaves the
    /// validator set.
    Remove {
        /// The entity.
        entity: EntityId,
    },
    /// Change a verifying node's voting power.
    SetPower {
        /// The verifying node's index.
        vn: u32,
        /// Its new power, `1..=MAX_VN_POWER`.
        power: u64,
    },
}

impl std::fmt::Display for RosterChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RosterChange::AddDp { key } => write!(f, "add a data provider with key {key:?}"),
            RosterChange::AddCn { key, .. } => write!(f, "add a computing node with key {key:?}"),
            RosterChange::AddVn { key, power, .. } => {
                write!(f, "add a verifying node with key {key:?} and power {power}")
            }
            RosterChange::Remove { entity } => write!(f, "remove {entity}"),
            RosterChange::SetPower { vn, power } => {
                write!(f, "set the power of vn-{vn} to {power}")
            }
        }
    }
}

/// Propose a roster change (signed by a verifying node, which approves it by proposing).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposeRosterChange {
    /// The change.
    pub change: RosterChange,
}

/// Approve an open roster proposal (signed by a verifying node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ApproveRosterChange {
    /// The proposal's id.
    pub proposal: u64,
}

/// The body of a transaction.
///
/// The variant order is the wire tag ([`Envelope::parse`] reads it): new kinds are appended.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TxBody {
    /// Register a query.
    RegisterQuery(Box<RegisterQuery>),
    /// Submit a proof.
    SubmitProof(SubmitProof),
    /// Commit a verifying node's bitmap.
    CommitBitmap(CommitBitmap),
    /// Challenge one proof of a finalized query.
    Challenge(Challenge),
    /// Propose a roster change.
    ProposeRosterChange(Box<ProposeRosterChange>),
    /// Approve a roster change.
    ApproveRosterChange(ApproveRosterChange),
}

impl TxBody {
    /// The signing context of the body.
    pub fn message_kind(&self) -> MessageKind {
        match self {
            TxBody::RegisterQuery(_) => MessageKind::RegisterQuery,
            TxBody::SubmitProof(_) => MessageKind::SubmitProof,
            TxBody::CommitBitmap(_) => MessageKind::CommitBitmap,
            TxBody::Challenge(_) => MessageKind::Challenge,
            TxBody::ProposeRosterChange(_) => MessageKind::ProposeRosterChange,
            TxBody::ApproveRosterChange(_) => MessageKind::ApproveRosterChange,
        }
    }

    /// The role allowed to sign this body; `None` when any member of the roster may.
    pub fn signer_role(&self) -> Option<Role> {
        match self {
            TxBody::RegisterQuery(_) => Some(Role::Cn),
            TxBody::SubmitProof(p) if p.kind == ProofKind::Range => Some(Role::Dp),
            TxBody::SubmitProof(_) => Some(Role::Cn),
            TxBody::CommitBitmap(_) => Some(Role::Vn),
            TxBody::Challenge(_) => None,
            TxBody::ProposeRosterChange(_) | TxBody::ApproveRosterChange(_) => Some(Role::Vn),
        }
    }

    /// The query the body is about, for the bodies that belong to a query.
    pub fn query_id(&self) -> Option<QueryId> {
        match self {
            TxBody::RegisterQuery(b) => Some(b.query_id),
            TxBody::SubmitProof(b) => Some(b.query_id),
            TxBody::CommitBitmap(b) => Some(b.query_id),
            TxBody::Challenge(c) => Some(c.proof.query),
            TxBody::ProposeRosterChange(_) | TxBody::ApproveRosterChange(_) => None,
        }
    }

    fn check(&self) -> Result<(), DecodeError> {
        match self {
            TxBody::RegisterQuery(r) => {
                r.spec.check()?;
                check_threshold(r.threshold_ppm)?;
                if r.dp_deadline == 0 || r.proof_deadline == 0 || r.commit_window == 0 {
                    return Err(DecodeError::Invalid {
                        what: "register query",
                        why: "deadlines must be at least one block",
                    });
                }
                if r.dp_deadline >= r.proof_deadline {
                    return Err(DecodeError::Invalid {
                        what: "register query",
                        why: "the data-provider deadline must come before the proof deadline",
                    });
                }
                Ok(())
            }
            TxBody::SubmitProof(p) => {
                check_len("inputs", p.inputs.len(), limits::MAX_INPUTS)?;
                check_len("outputs", p.outputs.len(), limits::MAX_OUTPUTS)?;
                check_len("proof", p.proof.len(), max_proof_len(p.kind))?;
                if p.outputs.is_empty() {
                    return Err(DecodeError::Invalid { what: "submit proof", why: "no outputs" });
                }
                if (p.kind == ProofKind::Aggregation) == p.inputs.is_empty() {
                    return Err(DecodeError::Invalid {
                        what: "submit proof",
                        why: "inputs are required for aggregations and forbidden otherwise",
                    });
                }
                if p.inputs.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(DecodeError::Invalid {
                        what: "submit proof",
                        why: "inputs must be strictly increasing",
                    });
                }
                Ok(())
            }
            TxBody::CommitBitmap(c) => {
                check_len("verdicts", c.verdicts.len(), limits::MAX_VERDICTS)?;
                Ok(())
            }
            TxBody::Challenge(_) | TxBody::ApproveRosterChange(_) => Ok(()),
            TxBody::ProposeRosterChange(p) => match p.change {
                RosterChange::AddVn { power, .. } | RosterChange::SetPower { power, .. }
                    if !(1..=limits::MAX_VN_POWER).contains(&power) =>
                {
                    Err(DecodeError::Invalid {
                        what: "roster change",
                        why: "a verifying node's power must be in 1..=1000000000",
                    })
                }
                _ => Ok(()),
            },
        }
    }
}

fn check_len(what: &'static str, got: usize, max: usize) -> Result<(), DecodeError> {
    if got > max {
        return Err(DecodeError::Length { what, got: got as u64, max: max as u64 });
    }
    Ok(())
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tx {
    /// The CometBFT chain id the transaction is meant for.
    pub chain_id: String,
    /// The signing entity.
    pub signer: EntityId,
    /// The body.
    pub body: TxBody,
    /// sr25519 signature over `borsh(chain_id, signer, body)` in the body's context.
    pub signature: Signature,
}

/// The bytes a transaction's signature covers: `borsh(chain_id, signer, body)`.
pub fn signing_bytes(chain_id: &str, signer: EntityId, body: &TxBody) -> Vec<u8> {
    to_borsh(&(chain_id, signer, body))
}

/// The signed part of canonical transaction bytes: everything but the trailing signature.
///
/// Only meaningful for bytes that [`Tx::decode`] accepted.
pub fn signed_part(tx_bytes: &[u8]) -> &[u8] {
    &tx_bytes[..tx_bytes.len().saturating_sub(64)]
}

/// The envelope of transaction bytes — chain id, signer, the body's signing context, the signed
/// part and the signature — read without decoding the body.
///
/// This is what the cheap checks need: a transaction for another chain, from a stranger or with a
/// bad signature is refused before one point of its body is decompressed. It decodes nothing of
/// the body but its tag; [`Tx::decode`] remains the full, strict decoding, and on bytes it accepts
/// the two agree (same chain id, signer and signing context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The chain id the transaction names.
    pub chain_id: &'a str,
    /// The signer it names.
    pub signer: EntityId,
    /// The signing context of its body, from the body's tag.
    pub kind: MessageKind,
    /// The bytes the signature covers ([`signed_part`]).
    pub signed: &'a [u8],
    /// The trailing signature.
    pub signature: Signature,
}

impl<'a> Envelope<'a> {
    /// Read the envelope of `bytes`: the chain id (at most [`limits::MAX_CHAIN_ID`] bytes of
    /// UTF-8), the signer, the body's tag and the trailing 64-byte signature.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let truncated = |needed: usize| DecodeError::Truncated { needed };
        let len_bytes: [u8; 4] =
            bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or(truncated(4))?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        check_len("chain id", len, limits::MAX_CHAIN_ID)?;
        let chain_id = bytes.get(4..4 + len).ok_or(truncated(4 + len))?;
        let chain_id = std::str::from_utf8(chain_id)
            .map_err(|_| DecodeError::Malformed("chain id is not UTF-8".into()))?;
        let mut signer_bytes = bytes.get(4 + len..9 + len).ok_or(truncated(9 + len))?;
        let signer = EntityId::deserialize(&mut signer_bytes)?;
        let tag = *bytes.get(9 + len).ok_or(truncated(10 + len))?;
        let kind = match tag {
            0 => MessageKind::RegisterQuery,
            1 => MessageKind::SubmitProof,
            2 => MessageKind::CommitBitmap,
            3 => MessageKind::Challenge,
            4 => MessageKind::ProposeRosterChange,
            5 => MessageKind::ApproveRosterChange,
            _ => return Err(DecodeError::Malformed(format!("unknown transaction body tag {tag}"))),
        };
        let body_end = bytes.len().checked_sub(64).filter(|&end| end > 9 + len);
        let end = body_end.ok_or(truncated(10 + len + 64))?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[end..]);
        Ok(Envelope {
            chain_id,
            signer,
            kind,
            signed: &bytes[..end],
            signature: Signature(signature),
        })
    }

    /// Check the signature against the signer's `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), SigError> {
        key.verify(self.kind, self.signed, &self.signature)
    }
}

impl Tx {
    /// Build and sign a transaction, with nonce randomness from `rng`.
    pub fn sign<R: RngCore + CryptoRng>(
        chain_id: &str,
        signer: EntityId,
        body: TxBody,
        key: &SigningKey,
        rng: R,
    ) -> Tx {
        let msg = signing_bytes(chain_id, signer, &body);
        let signature = key.sign_with_rng(body.message_kind(), &msg, rng);
        Tx { chain_id: chain_id.to_owned(), signer, body, signature }
    }

    /// Decode canonical transaction bytes and run every check that needs no state.
    ///
    /// Does not check the signature (that needs the roster): use [`Tx::verify_signature`].
    pub fn decode(bytes: &[u8]) -> Result<Tx, DecodeError> {
        let tx: Tx = from_borsh(bytes)?;
        check_len("chain id", tx.chain_id.len(), limits::MAX_CHAIN_ID)?;
        tx.body.check()?;
        if tx.body.signer_role().is_some_and(|role| tx.signer.role != role) {
            return Err(DecodeError::Invalid {
                what: "signer",
                why: "role not allowed to sign this kind of transaction",
            });
        }
        Ok(tx)
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        to_borsh(self)
    }

    /// Check the signature against `key`, given the bytes this transaction was decoded from
    /// (their signed part is re-used instead of re-encoding the body).
    pub fn verify_signature(&self, tx_bytes: &[u8], key: &VerifyingKey) -> Result<(), SigError> {
        key.verify(self.body.message_kind(), signed_part(tx_bytes), &self.signature)
    }

    /// The transaction hash as CometBFT reports it: SHA-256 of the bytes.
    pub fn hash(tx_bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(tx_bytes).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elgamal::SecretKey;
    use crate::sampling;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const CHAIN: &str = "lemal-test";

    fn spec() -> QuerySpec {
        QuerySpec {
            sql: "SELECT avg(x) FROM y WHERE z < 321".into(),
            operation: Operation::Avg,
            range_bits: 32,
            bounds: vec![Bounds { lo: 0, hi: 100_000 }, Bounds { lo: 0, hi: 1000 }],
            dps: vec![0, 1, 2, 3, 4],
            cns: vec![2, 0, 1],
            noise: NoiseParams { scale: 10, rows: 4 },
        }
    }

    /// One transaction of each kind, deterministic in `seed`.
    fn samples(seed: u64) -> Vec<Tx> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let query_id = QueryId([7; 16]);
        let cn = SigningKey::random(&mut rng);
        let dp = SigningKey::random(&mut rng);
        let vn = SigningKey::random(&mut rng);
        let querier = SecretKey::random(&mut rng);
        let register = TxBody::RegisterQuery(Box::new(
            RegisterQuery {
                query_id,
                querier_key: querier.public(),
                querier_sig: PossessionProof::default(),
                spec: spec(),
                threshold_ppm: 400_000,
                dp_deadline: 30,
                proof_deadline: 50,
                commit_window: 20,
            }
            .sign_as_querier(CHAIN, &querier, &mut rng),
        ));
        let key = querier.public();
        let outputs = (0..2).map(|i| Ciphertext::encrypt_i64(key.point(), i, &mut rng).0).collect();
        let submit = TxBody::SubmitProof(SubmitProof {
            query_id,
            kind: ProofKind::Range,
            index: 0,
            inputs: vec![],
            outputs,
            proof: vec![1, 2, 3],
        });
        let (_, vrf) = sampling::evaluate(&vn, CHAIN, &query_id, EntityId::vn(1), &mut rng);
        let commit = TxBody::CommitBitmap(CommitBitmap {
            query_id,
            vrf,
            proofs_digest: [9; 32],
            verdicts: vec![Verdict::Correct, Verdict::NotSelected, Verdict::Wrong],
        });
        vec![
            Tx::sign(CHAIN, EntityId::cn(2), register, &cn, &mut rng),
            Tx::sign(CHAIN, EntityId::dp(3), submit, &dp, &mut rng),
            Tx::sign(CHAIN, EntityId::vn(1), commit, &vn, &mut rng),
        ]
    }

    /// One transaction of each kind that settles disputes and changes the roster.
    fn accountability_samples(seed: u64) -> Vec<Tx> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dp = SigningKey::random(&mut rng);
        let vn = SigningKey::random(&mut rng);
        let proof = ProofKey {
            query: QueryId([7; 16]),
            kind: ProofKind::KeySwitch,
            creator: EntityId::cn(1),
            index: 0,
        };
        let change = RosterChange::AddVn {
            key: SigningKey::random(&mut rng).verifying_key(),
            validator_key: [5; 32],
            power: 10,
        };
        vec![
            Tx::sign(CHAIN, EntityId::dp(3), TxBody::Challenge(Challenge { proof }), &dp, &mut rng),
            Tx::sign(
                CHAIN,
                EntityId::vn(1),
                TxBody::ProposeRosterChange(Box::new(ProposeRosterChange { change })),
                &vn,
                &mut rng,
            ),
            Tx::sign(
                CHAIN,
                EntityId::vn(1),
                TxBody::ApproveRosterChange(ApproveRosterChange { proposal: 4 }),
                &vn,
                &mut rng,
            ),
        ]
    }

    #[test]
    fn accountability_transactions_round_trip_and_check_their_signers() {
        for tx in accountability_samples(12) {
            let bytes = tx.encode();
            assert_eq!(Tx::decode(&bytes), Ok(tx.clone()));
            let envelope = Envelope::parse(&bytes).expect("envelope");
            assert_eq!(envelope.kind, tx.body.message_kind(), "the tag table follows TxBody");
            assert_eq!(envelope.signed, signed_part(&bytes));
        }
        // Any member may challenge; only verifying nodes propose and approve.
        let mut challenge = accountability_samples(12)[0].clone();
        for signer in [EntityId::cn(0), EntityId::vn(0)] {
            challenge.signer = signer;
            assert!(Tx::decode(&challenge.encode()).is_ok(), "{signer} may challenge");
        }
        for mut tx in accountability_samples(12).into_iter().skip(1) {
            tx.signer = EntityId::cn(0);
            assert!(matches!(
                Tx::decode(&tx.encode()),
                Err(DecodeError::Invalid { what: "signer", .. })
            ));
        }
        // Power 0 or beyond the bound is refused at decoding.
        for power in [0, limits::MAX_VN_POWER + 1] {
            let mut tx = accountability_samples(12)[1].clone();
            tx.body = TxBody::ProposeRosterChange(Box::new(ProposeRosterChange {
                change: RosterChange::SetPower { vn: 0, power },
            }));
            assert!(Tx::decode(&tx.encode()).is_err(), "power {power}");
        }
    }

    fn vector_path() -> &'static str {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/tx.hex")
    }

    fn render(txs: &[Tx]) -> String {
        txs.iter().map(|t| hex::encode(t.encode()) + "\n").collect()
    }

    #[test]
    fn tx_golden_vectors_match() {
        let expected = std::fs::read_to_string(vector_path()).expect("golden vector file");
        assert_eq!(render(&samples(2026)), expected, "encoding changed: regenerate deliberately");
        for line in expected.lines() {
            let bytes = hex::decode(line).expect("hex");
            let tx = Tx::decode(&bytes).expect("golden vector decodes");
            assert_eq!(tx.encode(), bytes);
        }
    }

    #[test]
    #[ignore = "rewrites the golden vectors; run deliberately after a format change"]
    fn regenerate_tx_golden_vectors() {
        std::fs::write(vector_path(), render(&samples(2026))).expect("write vectors");
    }

    #[test]
    fn signed_part_is_the_signing_bytes() {
        for tx in samples(1) {
            let bytes = tx.encode();
            assert_eq!(signed_part(&bytes), signing_bytes(&tx.chain_id, tx.signer, &tx.body));
        }
    }

    #[test]
    fn signatures_verify_and_bind_every_field() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let cn = SigningKey::random(&mut rng);
        let dp = SigningKey::random(&mut rng);
        let vn = SigningKey::random(&mut rng);
        let keys = [cn.verifying_key(), dp.verifying_key(), vn.verifying_key()];
        for (tx, key) in samples(1).into_iter().zip(keys) {
            let bytes = tx.encode();
            assert_eq!(tx.verify_signature(&bytes, &key), Ok(()));
            // Any change to the signed bytes that still decodes breaks the signature.
            let mut other_chain = tx.clone();
            other_chain.chain_id = "lemal-other".into();
            let ob = other_chain.encode();
            assert!(other_chain.verify_signature(&ob, &key).is_err());
            let mut other_signer = tx.clone();
            other_signer.signer.index += 1;
            let sb = other_signer.encode();
            assert!(other_signer.verify_signature(&sb, &key).is_err());
        }
    }

    #[test]
    fn the_envelope_agrees_with_the_full_decoding() {
        for tx in samples(6) {
            let bytes = tx.encode();
            let envelope = Envelope::parse(&bytes).expect("envelope");
            assert_eq!(envelope.chain_id, tx.chain_id);
            assert_eq!(envelope.signer, tx.signer);
            assert_eq!(envelope.kind, tx.body.message_kind(), "the tag table follows TxBody");
            assert_eq!(envelope.signed, signed_part(&bytes));
            assert_eq!(envelope.signature, tx.signature);
        }
    }

    #[test]
    fn the_envelope_refuses_short_and_unknown_bytes() {
        let bytes = samples(6)[1].encode();
        let header = 4 + CHAIN.len() + 5;
        assert!(Envelope::parse(&[]).is_err());
        assert!(Envelope::parse(&bytes[..header]).is_err(), "no body tag");
        assert!(Envelope::parse(&bytes[..header + 64]).is_err(), "no room for a body");
        let mut bad_tag = bytes.clone();
        bad_tag[header] = 9;
        assert!(matches!(Envelope::parse(&bad_tag), Err(DecodeError::Malformed(_))));
        let mut long_chain = bytes.clone();
        long_chain[..4].copy_from_slice(&51u32.to_le_bytes());
        assert!(matches!(Envelope::parse(&long_chain), Err(DecodeError::Length { .. })));
    }

    proptest! {
        #[test]
        fn the_envelope_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::parse(&bytes);
        }
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_bad_tags() {
        let bytes = samples(3)[1].encode();
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Tx::decode(&longer), Err(DecodeError::TrailingBytes(1)));
        let truncated = Tx::decode(&bytes[..bytes.len() - 1]);
        assert!(matches!(truncated, Err(DecodeError::Truncated { .. })), "{truncated:?}");
        // The body tag follows chain id (4 + len) and signer (1 + 4).
        let tag_at = 4 + CHAIN.len() + 5;
        let mut bad_tag = bytes.clone();
        bad_tag[tag_at] = 7;
        assert!(Tx::decode(&bad_tag).is_err());
    }

    #[test]
    fn decode_rejects_non_canonical_points() {
        let tx = &samples(4)[1];
        let bytes = tx.encode();
        let TxBody::SubmitProof(p) = &tx.body else { unreachable!() };
        let point = p.outputs[0].c1.compress().to_bytes();
        let at = bytes.windows(32).position(|w| w == point).expect("point in encoding");
        let mut bad = bytes.clone();
        bad[at..at + 32].copy_from_slice(&[0xff; 32]);
        assert_eq!(Tx::decode(&bad), Err(DecodeError::InvalidPoint));
    }

    #[test]
    fn decode_rejects_wrong_signer_role_and_bad_structure() {
        let mut tx = samples(5)[1].clone();
        tx.signer = EntityId::cn(0);
        assert!(matches!(
            Tx::decode(&tx.encode()),
            Err(DecodeError::Invalid { what: "signer", .. })
        ));

        let mut tx = samples(5)[1].clone();
        if let TxBody::SubmitProof(p) = &mut tx.body {
            p.inputs = vec![p.key(EntityId::dp(0))];
        }
        assert!(Tx::decode(&tx.encode()).is_err(), "inputs on a range proof");

        let mut tx = samples(5)[0].clone();
        if let TxBody::RegisterQuery(r) = &mut tx.body {
            r.spec.dps = vec![1, 1];
        }
        assert!(Tx::decode(&tx.encode()).is_err(), "duplicate data provider");

        let mut tx = samples(5)[0].clone();
        if let TxBody::RegisterQuery(r) = &mut tx.body {
            r.threshold_ppm = 0;
        }
        assert!(Tx::decode(&tx.encode()).is_err(), "zero threshold");

        let mut tx = samples(5)[0].clone();
        tx.chain_id = "c".repeat(51);
        assert!(matches!(Tx::decode(&tx.encode()), Err(DecodeError::Length { .. })));
    }

    #[test]
    fn decode_rejects_a_proof_longer_than_its_kind_allows() {
        let with = |kind, proof: Vec<u8>| {
            let mut tx = samples(6)[1].clone();
            let TxBody::SubmitProof(p) = &mut tx.body else { unreachable!() };
            p.kind = kind;
            if kind == ProofKind::Aggregation {
                p.inputs = vec![p.key(EntityId::cn(0))];
            }
            p.proof = proof;
            Tx::decode(&tx.encode())
        };
        let too_long = |r: Result<Tx, DecodeError>| {
            matches!(r, Err(DecodeError::Length { what: "proof", .. }))
        };
        let widest = max_proof_len(ProofKind::Range);
        assert!(
            too_long(with(ProofKind::Range, vec![0; widest + 1])),
            "past the widest range proof"
        );
        assert!(with(ProofKind::Range, vec![0; widest]).is_ok(), "the bound itself decodes");
        assert!(too_long(with(ProofKind::Aggregation, vec![1, 1])), "an aggregation is one byte");
        assert!(!too_long(with(ProofKind::Aggregation, vec![1])), "one byte fits");
    }

    #[test]
    fn spec_fixes_each_kinds_proof_length() {
        let s = spec();
        assert_eq!(s.proof_len(ProofKind::Aggregation), 1);
        assert_eq!(s.proof_len(ProofKind::KeySwitch), 68 + 96 * 2);
        assert_eq!(s.proof_len(ProofKind::Shuffle), 4 + 32 * (10 * 4 + 3));
        // Two values of 32 bits: 4 parties, lg(128) = 7 rounds.
        assert_eq!(s.proof_len(ProofKind::Range), 8 + 224 * 2 + 32 * (9 + 2 * 7));
        for kind in ProofKind::ALL {
            assert!(s.proof_len(kind) <= max_proof_len(kind));
        }
    }

    #[test]
    fn the_querier_signature_binds_every_term_of_the_registration() {
        let tx = &samples(7)[0];
        let TxBody::RegisterQuery(r) = &tx.body else { unreachable!() };
        assert_eq!(r.verify_querier(CHAIN), Ok(()));
        assert!(r.verify_querier("lemal-other").is_err(), "chain id");
        type Change = Box<dyn Fn(&mut RegisterQuery)>;
        let tampered: Vec<(&str, Change)> = vec![
            ("query id", Box::new(|r| r.query_id.0[0] ^= 1)),
            ("sql", Box::new(|r| r.spec.sql.push(' '))),
            ("operation", Box::new(|r| r.spec.operation = Operation::Sum)),
            ("range bits", Box::new(|r| r.spec.range_bits = 64)),
            ("bounds", Box::new(|r| r.spec.bounds[0].hi += 1)),
            ("dps", Box::new(|r| r.spec.dps.pop().map(drop).unwrap_or(()))),
            ("cns", Box::new(|r| r.spec.cns.swap(0, 1))),
            ("noise scale", Box::new(|r| r.spec.noise.scale = 0)),
            ("noise rows", Box::new(|r| r.spec.noise.rows += 1)),
            ("threshold", Box::new(|r| r.threshold_ppm = 1)),
            ("dp deadline", Box::new(|r| r.dp_deadline += 1)),
            ("proof deadline", Box::new(|r| r.proof_deadline += 1)),
            ("commit window", Box::new(|r| r.commit_window += 1)),
            (
                "querier key",
                Box::new(|r| {
                    r.querier_key = SecretKey::random(&mut ChaCha20Rng::seed_from_u64(1)).public()
                }),
            ),
        ];
        for (what, change) in tampered {
            let mut bad = (**r).clone();
            change(&mut bad);
            assert!(bad.verify_querier(CHAIN).is_err(), "{what} is not bound");
        }
    }

    #[test]
    fn decode_rejects_a_dp_deadline_not_before_the_proof_deadline() {
        let mut tx = samples(8)[0].clone();
        let TxBody::RegisterQuery(r) = &mut tx.body else { unreachable!() };
        r.dp_deadline = r.proof_deadline;
        assert!(matches!(Tx::decode(&tx.encode()), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn spec_checks_bounds_against_bits() {
        let mut s = spec();
        assert_eq!(s.check(), Ok(()));
        s.range_bits = 8;
        assert!(s.check().is_err(), "bound 100000 does not fit 8 bits");
        let mut s = spec();
        s.bounds[0] = Bounds { lo: 5, hi: 4 };
        assert!(s.check().is_err());
        let mut s = spec();
        s.noise.rows = 1;
        assert!(s.check().is_err(), "one noise row cannot be shuffled");
        let mut s = spec();
        s.noise = NoiseParams { scale: 0, rows: 4 };
        assert!(s.check().is_err(), "rows without a scale");
        let mut s = spec();
        s.noise.rows = 4097;
        assert!(s.check().is_err(), "more rows than the hard limit");
        let mut s = spec();
        s.cns = vec![1, 1];
        assert!(s.check().is_err());
    }

    #[test]
    fn expected_proofs_and_tree_cover_every_input_once() {
        let s = spec();
        let q = QueryId([1; 16]);
        let keys = s.expected_proofs(q);
        assert_eq!(keys.len(), 5 + 3 * 3);
        assert!(keys.iter().all(|k| s.expects(k)));
        let mut k = keys[0];
        k.index = 1;
        assert!(!s.expects(&k));
        k = keys[0];
        k.creator = EntityId::dp(5);
        assert!(!s.expects(&k));
        k.creator = EntityId::cn(0);
        assert!(!s.expects(&k), "a computing node never submits range proofs");
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // Every range proof and every non-root aggregation feeds exactly one aggregation.
        let mut fed: Vec<ProofKey> =
            s.cns.iter().flat_map(|&c| s.aggregation_inputs(q, c)).collect();
        fed.sort_unstable();
        let mut want: Vec<ProofKey> = keys
            .iter()
            .filter(|k| {
                k.kind == ProofKind::Range
                    || (k.kind == ProofKind::Aggregation && k.creator != EntityId::cn(s.cns[0]))
            })
            .copied()
            .collect();
        want.sort_unstable();
        assert_eq!(fed, want);
        assert_eq!(s.shuffle_input(q, 2), None);
        assert_eq!(s.shuffle_input(q, 0).map(|k| k.creator), Some(EntityId::cn(2)));
        let (root, last) = s.keyswitch_inputs(q);
        assert_eq!(root.creator, EntityId::cn(2));
        assert_eq!(last.map(|k| k.creator), Some(EntityId::cn(1)));
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Tx::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_transactions(
            which in 0usize..3,
            at in any::<prop::sample::Index>(),
            value in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = samples(9)[which].encode();
            let i = at.index(bytes.len());
            bytes[i] = value;
            if let Ok(tx) = Tx::decode(&bytes) {
                prop_assert_eq!(tx.encode(), bytes.clone());
            }
            let j = cut.index(bytes.len());
            let _ = Tx::decode(&bytes[..j]);
        }

        #[test]
        fn generated_transactions_round_trip(seed in any::<u64>()) {
            for tx in samples(seed) {
                let bytes = tx.encode();
                prop_assert_eq!(Tx::decode(&bytes), Ok(tx));
            }
        }
    }
}
