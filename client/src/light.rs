//! Light-client verification of the skipchain: the library behind `lemal verify` and
//! `lemal audit`.
//!
//! A light client trusts one thing, a validator set, taken from a root the caller chose
//! ([`TrustRoot`]): a genesis file it holds, a known chain's genesis fingerprint, a pinned
//! validator-set hash or a pinned header — never from the node being checked. A node that
//! contradicts the root is refused ([`LightError::DifferentChain`]). Everything else a node
//! serves is checked against the trusted set:
//!
//! 1. **Header.** The signed header of block `H + 1` carries the app hash of state height `H`.
//!    It must be at that height, of the expected chain, name the trusted set as its validators
//!    and next validators, and carry a commit signed by more than 2/3 of the trusted voting
//!    power ([`check_header`], built on `tendermint-light-client-verifier`).
//! 2. **State.** Every value read at height `H` comes with an ICS23 proof against that app hash,
//!    under the state key the client computes itself, so a node cannot answer one question with
//!    the proven value of another ([`check_answer`]). Absence is proven the same way.
//! 3. **Skipblock.** Its skip height, each back link (the linked block, proven, has that hash),
//!    the forward link that points back at it ([`check_links`]); for a query block, the proofs
//!    root over the proof bodies the node lists ([`check_proofs_root`]), the covered data
//!    providers recomputed from those bodies ([`check_coverage`]) and the bitmap's shape
//!    against the proven registration and roster ([`check_bitmap`]); for block 0, the genesis
//!    record against the proven roster and parameters ([`check_genesis_record`]).
//! 4. **Ancestry.** From a trusted block, forward links lead to the latest block in
//!    O(log n) hops while the chain is shorter than `base^max_height` blocks (beyond, the top
//!    level adds n / base^(max_height−1) hops), each hop proven and matched by the target's back
//!    link ([`walk_forward`]).
//!
//! [`audit`] then re-verifies every proof of a query locally, from ledger state only, and
//! compares each verifying node's verdicts with the local ones and with its VRF selection.
//!
//! Across validator-set changes the client follows the CometBFT light-client rules from its
//! trusted state, bisecting where the sets overlap too little ([`follow`]). While the trusted
//! set itself signs, no wall clock is involved: a header of any age verifies as long as that set
//! signed it.
//!
//! ```no_run
//! use lemal_client::light::{self, BlockRef, LightClient, TrustRoot};
//! use lemal_client::rpc::Node;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::connect("http://127.0.0.1:26657")?;
//! let trust = TrustRoot::genesis_file("genesis.json".as_ref())?;
//! // One verified header; every read below is proven against its app hash.
//! let client = LightClient::new(&node, &trust)?;
//! let query = BlockRef::Query("00112233445566778899aabbccddeeff".parse()?);
//! let (report, block, _proofs) = client.verify(query)?;
//! for check in &report.checks {
//!     println!("{}: {} ({})", check.name, check.passed, check.detail);
//! }
//! let ancestry = light::verify_ancestry_with(&client, BlockRef::Index(block.index))?;
//! println!("latest block {} reached in {} hops", ancestry.latest.index, ancestry.hops.len());
//! # Ok(())
//! # }
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use borsh::BorshDeserialize;
use lemal_contracts::commitment::verify_proof;
use lemal_contracts::group::from_borsh;
use lemal_contracts::ids::{EntityId, ProofKey, QueryId, Verdict};
use lemal_contracts::proofs;
use lemal_contracts::sampling;
use lemal_contracts::state::{
    back_link_target, forward_link_target, proofs_root, skip_height, BitmapCommitRecord,
    BlockPayload, ChallengeVerdict, GenesisRecord, Params, ProofRecord, QueryPayload, QueryRecord,
    Roster, RosterChangeRecord, SkipBlock, VerdictRecord,
};
use lemal_contracts::tx::RegisterQuery;
use serde::Serialize;
use tendermint::block::signed_header::SignedHeader;
use tendermint::trust_threshold::{TrustThreshold, TrustThresholdFraction};
use tendermint_light_client_verifier::operations::{
    ProdVotingPowerCalculator, VotingPowerCalculator,
};
use tendermint_light_client_verifier::types::UntrustedBlockState;
use tendermint_light_client_verifier::{ProdVerifier, Verdict as LightVerdict};

use crate::rpc::{Answer, Node, RpcError};

mod follow;
mod trust;

pub use follow::{follow, FollowOptions, Followed, HeaderSource, TrustedState, MAX_STEPS};
use trust::hash_bytes;
pub use trust::{
    check_known_genesis, check_pinned_header, check_pinned_set, GenesisInfo, KnownChain,
    KnownChains, KnownRoot, RootReport, TrustKind, TrustRoot, TrustedValidators,
};

/// Why light verification could not be carried out, or failed at a step everything after it
/// depends on.
#[derive(Debug, thiserror::Error)]
pub enum LightError {
    /// Talking to the node failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The trust root cannot be used (unreadable genesis, no validators, hash mismatch...).
    #[error("trust root: {0}")]
    Trust(String),
    /// The signed header does not verify against the trusted validator set.
    #[error("header {height}: {reason}")]
    Header {
        /// The header's height.
        height: u64,
        /// Why it was refused.
        reason: String,
    },
    /// A state value's ICS23 proof is missing, for another key, or does not verify.
    #[error("state proof for {path}: {reason}")]
    Proof {
        /// The ABCI query path.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The state proves that the thing asked for does not exist.
    #[error("{0} does not exist (absence proven)")]
    NotFound(String),
    /// A proven value does not decode.
    #[error("{what} does not decode: {reason}")]
    Decode {
        /// What was decoded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A served value contradicts what was asked for or what it links to.
    #[error("{0}")]
    Mismatch(String),
    /// The chain is too young to have a signed header above a committed state.
    #[error("the chain is at height {0}; light verification needs at least height 2")]
    TooEarly(u64),
    /// The node answers under a chain id the client knows, with another root (genesis or
    /// pinned header) than the one it trusts.
    #[error("a different chain answers as {chain_id}: {detail}")]
    DifferentChain {
        /// The chain id it answers as.
        chain_id: String,
        /// What differs.
        detail: String,
    },
}

impl LightError {
    /// Whether the check could not be carried out (the node unreachable, the trust root
    /// unusable, the chain too young), as opposed to having run and found something wrong.
    pub fn is_inconclusive(&self) -> bool {
        match self {
            LightError::Rpc(e) => e.is_inconclusive(),
            LightError::Trust(_) | LightError::TooEarly(_) => true,
            LightError::Header { .. }
            | LightError::Proof { .. }
            | LightError::NotFound(_)
            | LightError::Decode { .. }
            | LightError::Mismatch(_)
            | LightError::DifferentChain { .. } => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State keys
// ---------------------------------------------------------------------------------------------

pub use lemal_contracts::keys as state_key;

// ---------------------------------------------------------------------------------------------
// Header check
// ---------------------------------------------------------------------------------------------

/// Voting power that signed a header, out of the trusted total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SignedPower {
    /// Trusted voting power whose valid signature is in the commit.
    pub signed: u64,
    /// Total trusted voting power.
    pub total: u64,
}

/// Check a signed header at `height` against the trusted validator set: the expected height
/// and chain id, the trusted set as validators and next validators, the header hash in the
/// commit, and valid signatures of more than 2/3 of the trusted voting power. Every signature
/// in the commit is checked, and the power that signed is returned.
pub fn check_header(
    signed: &SignedHeader,
    trusted: &TrustedValidators,
    height: u64,
) -> Result<SignedPower, LightError> {
    check_position(signed, height, trusted.chain_id())?;
    let untrusted = UntrustedBlockState {
        signed_header: signed,
        validators: trusted.set(),
        next_validators: Some(trusted.set()),
    };
    match ProdVerifier::default().verify_validator_sets(&untrusted) {
        LightVerdict::Success => {}
        LightVerdict::NotEnoughTrust(tally) => {
            return Err(LightError::Header {
                height,
                reason: format!("not enough voting power signed: {tally}"),
            })
        }
        LightVerdict::Invalid(detail) => {
            return Err(LightError::Header { height, reason: detail.to_string() })
        }
    }
    full_tally(signed, trusted.set(), height)
}

/// The header and its commit are at `height` and, when `chain` is known, for that chain.
fn check_position(
    signed: &SignedHeader,
    height: u64,
    chain: Option<&str>,
) -> Result<(), LightError> {
    let fail = |reason: String| LightError::Header { height, reason };
    let header = &signed.header;
    if header.height.value() != height || signed.commit.height.value() != height {
        return Err(fail(format!(
            "served for height {} (commit {}), expected {height}",
            header.height, signed.commit.height
        )));
    }
    if let Some(chain) = chain {
        if header.chain_id.as_str() != chain {
            return Err(fail(format!(
                "chain id {:?}, expected {chain:?}",
                header.chain_id.as_str()
            )));
        }
    }
    Ok(())
}

/// Every signature of the commit checked against `set` (a threshold of 1/1 is never reached
/// early, and an invalid signature is an error); the power that signed must exceed 2/3.
fn full_tally(
    signed: &SignedHeader,
    set: &tendermint::validator::Set,
    height: u64,
) -> Result<SignedPower, LightError> {
    let fail = |reason: String| LightError::Header { height, reason };
    let all = TrustThresholdFraction::new(1, 1).map_err(|e| fail(e.to_string()))?;
    let tally = ProdVotingPowerCalculator::default()
        .voting_power_in(signed, set, all)
        .map_err(|e| fail(e.to_string()))?;
    if !TrustThresholdFraction::TWO_THIRDS.is_enough_power(tally.tallied, tally.total) {
        return Err(fail(format!(
            "not enough voting power signed: {} of {}, more than 2/3 needed",
            tally.tallied, tally.total
        )));
    }
    Ok(SignedPower { signed: tally.tallied, total: tally.total })
}

/// Check an ABCI answer against a trusted app hash: it is for `expected_key`, carries an ICS23
/// proof, and the proof shows the answer's value (or its absence) under that key. Returns the
/// value.
pub fn check_answer<'a>(
    app_hash: &[u8; 32],
    path: &str,
    expected_key: &[u8],
    answer: &'a Answer,
) -> Result<Option<&'a [u8]>, LightError> {
    let fail = |reason: String| LightError::Proof { path: path.to_owned(), reason };
    if answer.key != expected_key {
        return Err(fail(format!(
            "answer is for state key {}, expected {}",
            hex::encode(&answer.key),
            hex::encode(expected_key)
        )));
    }
    let proof = answer.proof.as_ref().ok_or_else(|| fail("the answer carries no proof".into()))?;
    let value = answer.value.as_deref();
    if !verify_proof(app_hash, expected_key, value, proof) {
        return Err(fail(format!(
            "the ICS23 proof does not show this {} against app hash {}",
            if value.is_some() { "value" } else { "absence" },
            hex::encode(app_hash)
        )));
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was compared, or what differs.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Self {
        Check { name: name.into(), passed, detail: detail.into() }
    }

    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, true, detail)
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, false, detail)
    }
}

/// The verified header everything else is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderReport {
    /// The chain id the header is signed for.
    pub chain_id: String,
    /// The state height `H` whose values are proven.
    pub state_height: u64,
    /// The header checked: `H + 1`, which carries the app hash of `H`.
    pub header_height: u64,
    /// The header's hash (hex).
    pub header_hash: String,
    /// The app hash of state height `H` (hex).
    pub app_hash: String,
    /// The hash (hex) of the trusted validator set that signed the header.
    pub validators_hash: String,
    /// How many validators that set has.
    pub validators: usize,
    /// Heights verified on the way from the trust root across validator-set changes (empty when
    /// the trusted set signed the header).
    pub via: Vec<u64>,
    /// Trusted voting power that signed the header.
    pub signed_power: u64,
    /// Total trusted voting power.
    pub total_power: u64,
    /// The trust root the validator set comes from.
    pub trust: RootReport,
}

/// A skipblock in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockSummary {
    /// Skipchain index.
    pub index: u64,
    /// Block hash (hex).
    pub hash: String,
    /// Skip height.
    pub height: u8,
    /// CometBFT height of the block that appended it.
    pub ledger_height: u64,
    /// The query it records (none for block 0).
    pub query_id: Option<String>,
}

impl From<&SkipBlock> for BlockSummary {
    fn from(b: &SkipBlock) -> Self {
        BlockSummary {
            index: b.index,
            hash: hex::encode(b.hash()),
            height: b.height,
            ledger_height: b.ledger_height,
            query_id: b.query_id().map(|q| q.to_string()),
        }
    }
}

/// A roster change block is self-consistent: it passed with more than 2/3 of the voting power.
pub fn check_roster_change(r: &RosterChangeRecord) -> Check {
    const NAME: &str = "roster change";
    if u128::from(r.approved_power) * 3 <= u128::from(r.total_power) * 2 {
        return Check::fail(
            NAME,
            format!(
                "approved by {} of {} voting power, not more than 2/3",
                r.approved_power, r.total_power
            ),
        );
    }
    Check::pass(
        NAME,
        format!(
            "proposal {}: {} ({}), approved by {} of {} voting power",
            r.proposal, r.change, r.entity, r.approved_power, r.total_power
        ),
    )
}

/// The outcome of verifying one skipblock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The block.
    pub block: BlockSummary,
    /// The header its state was proven against.
    pub header: HeaderReport,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Whether every check passed.
    pub verified: bool,
    /// For a query block: the chain's verdicts on its challenged proofs, each proven by its own
    /// skipblock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<VerdictSummary>,
}

/// A challenge verdict in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerdictSummary {
    /// The challenged proof.
    pub proof: String,
    /// Whether it verifies.
    pub valid: bool,
    /// Why not.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Who was found at fault.
    pub at_fault: Vec<String>,
    /// Who challenged.
    pub challenger: String,
    /// The verdict's skipblock.
    pub block: u64,
}

impl VerdictSummary {
    /// The summary of a stored verdict.
    pub fn of(r: &VerdictRecord) -> Self {
        VerdictSummary {
            proof: r.verdict.proof.to_string(),
            valid: r.verdict.valid,
            reason: r.verdict.reason.clone(),
            at_fault: r.verdict.at_fault().map(|e| e.to_string()).collect(),
            challenger: r.verdict.challenger.to_string(),
            block: r.block,
        }
    }
}

impl std::fmt::Display for VerdictSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} (skipblock {}); at fault: {}; challenged by {}",
            self.proof,
            if self.valid { "right" } else { "wrong" },
            self.block,
            if self.at_fault.is_empty() { "nobody".to_owned() } else { self.at_fault.join(", ") },
            self.challenger
        )
    }
}

/// One hop of a forward walk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// Index of the block the hop leaves.
    pub from: u64,
    /// Index of the block it reaches.
    pub to: u64,
    /// The forward link's level.
    pub level: usize,
    /// Hash of the block reached (hex).
    pub hash: String,
}

/// The outcome of proving that a block is an ancestor of the latest block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AncestryReport {
    /// The header the walk was proven against.
    pub header: HeaderReport,
    /// Where the walk starts.
    pub from: BlockSummary,
    /// The latest block, where it ends.
    pub latest: BlockSummary,
    /// The hops, in order.
    pub hops: Vec<Hop>,
}

// ---------------------------------------------------------------------------------------------
// Skipchain checks over authenticated state
// ---------------------------------------------------------------------------------------------

/// Read access to skipchain state whose answers are authenticated: by a [`LightClient`] against
/// a verified header, or by construction in tests.
pub trait SkipchainState {
    /// The block at `index`; `None` only when its absence is established.
    fn block(&self, index: u64) -> Result<Option<SkipBlock>, LightError>;
    /// The forward links of block `index`, level by level (empty while it has no successor).
    fn forward_links(&self, index: u64) -> Result<Vec<[u8; 32]>, LightError>;
}

/// Check a block's skip height, each back link (the linked block has that hash) and the
/// forward link of the linked block that points back at it.
pub fn check_links(
    state: &impl SkipchainState,
    block: &SkipBlock,
    params: &Params,
) -> Result<Vec<Check>, LightError> {
    let base = params.skip_base;
    let want = skip_height(block.index, base, params.skip_max_height);
    let links = if block.index == 0 { 0 } else { usize::from(want) };
    let mut checks = vec![if block.height == want && block.back_links.len() == links {
        Check::pass("skip height", format!("height {want}, {links} back links"))
    } else {
        Check::fail(
            "skip height",
            format!(
                "height {} with {} back links; block {} must have height {want} and {links}",
                block.height,
                block.back_links.len(),
                block.index
            ),
        )
    }];
    if block.index == 0 {
        return Ok(checks);
    }
    let hash = block.hash();
    for (level, link) in block.back_links.iter().enumerate() {
        let name = format!("back link {level}");
        let target = back_link_target(block.index, level, base);
        let Some(linked) = state.block(target)? else {
            checks.push(Check::fail(name, format!("block {target} does not exist")));
            continue;
        };
        if linked.hash() != *link {
            checks.push(Check::fail(
                name,
                format!(
                    "points to {}, but block {target} hashes to {}",
                    hex::encode(link),
                    hex::encode(linked.hash())
                ),
            ));
            continue;
        }
        let forward = state.forward_links(target)?;
        if forward.get(level) != Some(&hash) {
            checks.push(Check::fail(
                name,
                format!(
                    "block {target} is linked, but its forward link {level} is {}",
                    forward.get(level).map_or("missing".into(), hex::encode)
                ),
            ));
            continue;
        }
        checks.push(Check::pass(
            name,
            format!("block {target} ({}) links forward to this block", short(link)),
        ));
    }
    Ok(checks)
}

/// Follow forward links from `from` to the latest block, taking the highest link at each step.
///
/// Each hop's target must have the linked hash and a back link at the same level to the block
/// the hop leaves; the walk ends at a block without forward links whose successor is proven
/// absent. With base `b` that is at most `b − 1` hops per level below the top one, plus
/// n / b^(h−1) hops on the top level `h` (the maximum height): O(log n) while that term is
/// small.
pub fn walk_forward(
    state: &impl SkipchainState,
    from: &SkipBlock,
    base: u32,
) -> Result<(Vec<Hop>, SkipBlock), LightError> {
    let mut hops = Vec::new();
    let mut current = from.clone();
    loop {
        let links = state.forward_links(current.index)?;
        let Some((level, link)) = links.iter().enumerate().next_back() else {
            break;
        };
        let to = forward_link_target(current.index, level, base);
        if to <= current.index {
            return Err(LightError::Mismatch(format!(
                "forward link {level} of block {} leads nowhere",
                current.index
            )));
        }
        let next = state.block(to)?.ok_or_else(|| {
            LightError::Mismatch(format!(
                "forward link {level} of block {} points to block {to}, which does not exist",
                current.index
            ))
        })?;
        if next.index != to || next.hash() != *link {
            return Err(LightError::Mismatch(format!(
                "forward link {level} of block {} is {}, but block {to} hashes to {}",
                current.index,
                hex::encode(link),
                hex::encode(next.hash())
            )));
        }
        if next.back_links.get(level) != Some(&current.hash()) {
            return Err(LightError::Mismatch(format!(
                "block {to} is reached by forward link {level} of block {}, but its back link \
                 {level} does not point there",
                current.index
            )));
        }
        hops.push(Hop { from: current.index, to, level, hash: hex::encode(link) });
        current = next;
    }
    let after = current.index.checked_add(1).ok_or_else(|| {
        LightError::Mismatch("the walk reached the last representable index".into())
    })?;
    if state.block(after)?.is_some() {
        return Err(LightError::Mismatch(format!(
            "block {} has no forward link, yet block {after} exists",
            current.index
        )));
    }
    Ok((hops, current))
}

/// Check the block's statement of which data providers the result covers against the proof
/// records (authenticated by [`check_proofs_root`]): `covered` must be what the aggregation tree
/// on the ledger reaches ([`proofs::covered_dps`], the chain's own rule) and `uncovered` the
/// query's other data providers.
pub fn check_coverage(
    payload: &QueryPayload,
    registration: &RegisterQuery,
    records: &[ProofRecord],
) -> Check {
    const NAME: &str = "coverage";
    let ledger =
        |k: &ProofKey| records.binary_search_by(|r| r.key.cmp(k)).ok().map(|i| records[i].clone());
    let covered = proofs::covered_dps(registration, &ledger);
    let uncovered: Vec<EntityId> = registration
        .spec
        .dps
        .iter()
        .map(|&d| EntityId::dp(d))
        .filter(|d| covered.binary_search(d).is_err())
        .collect();
    if covered != payload.covered || uncovered != payload.uncovered {
        return Check::fail(
            NAME,
            format!(
                "the block says it covers {} and not {}; the proofs cover {} and not {}",
                payload.covered.len(),
                payload.uncovered.len(),
                covered.len(),
                uncovered.len()
            ),
        );
    }
    Check::pass(
        NAME,
        format!(
            "the result covers {} of {} data providers",
            covered.len(),
            registration.spec.dps.len()
        ),
    )
}

/// Check that the proof records a node lists for a query are exactly the ones the block's
/// proofs root commits to: of this query, in strictly increasing key order, each an expected
/// proof, and hashing to the root.
pub fn check_proofs_root(payload: &QueryPayload, records: &[ProofRecord]) -> Check {
    const NAME: &str = "proofs root";
    let q = payload.query_id;
    if let Some(r) = records.iter().find(|r| r.key.query != q) {
        return Check::fail(NAME, format!("the list holds {}, of another query", r.key));
    }
    if let Some(w) = records.windows(2).find(|w| w[0].key >= w[1].key) {
        return Check::fail(NAME, format!("{} is listed after {}", w[1].key, w[0].key));
    }
    if let Some(r) = records.iter().find(|r| payload.bitmap.proofs.binary_search(&r.key).is_err()) {
        return Check::fail(NAME, format!("{} is not an expected proof of the query", r.key));
    }
    let hashes: Vec<[u8; 32]> = records.iter().map(ProofRecord::hash).collect();
    let root = proofs_root(&hashes);
    if root != payload.proofs_root {
        return Check::fail(
            NAME,
            format!(
                "{} listed proofs hash to {}, the block commits to {}",
                records.len(),
                hex::encode(root),
                hex::encode(payload.proofs_root)
            ),
        );
    }
    Check::pass(
        NAME,
        format!("{} proof bodies hash to the block's root {}", records.len(), short(&root)),
    )
}

/// Check a query block's bitmap against the query's registration, the roster and the proofs
/// received: rows are the expected proofs, columns the roster's verifying nodes, the reported
/// and absent nodes split the columns, absent nodes' columns and the rows of proofs never
/// received are all 3, and a reporting node marks a received proof with 0, 1 or 2.
pub fn check_bitmap(
    payload: &QueryPayload,
    registration: &RegisterQuery,
    roster: &Roster,
    received: &[ProofRecord],
) -> Check {
    const NAME: &str = "bitmap";
    let bitmap = &payload.bitmap;
    let q = payload.query_id;
    if registration.query_id != q {
        return Check::fail(NAME, format!("registration of {}, not {q}", registration.query_id));
    }
    if bitmap.proofs != registration.spec.expected_proofs(q) {
        return Check::fail(NAME, "its rows are not the query's expected proofs");
    }
    // The columns are the verifying nodes in good standing when the proof phase ended: roster
    // members, in roster order.
    let in_roster = bitmap.verifiers.iter().all(|v| roster.vn_ids().contains(v));
    if !in_roster || bitmap.verifiers.windows(2).any(|w| w[0] >= w[1]) {
        return Check::fail(NAME, "its columns are not verifying nodes of the roster, in order");
    }
    let cols = bitmap.verifiers.len();
    if bitmap.proofs.len().checked_mul(cols) != Some(bitmap.verdicts.len()) {
        return Check::fail(
            NAME,
            format!(
                "{} verdicts for {} proofs × {cols} verifiers",
                bitmap.verdicts.len(),
                bitmap.proofs.len()
            ),
        );
    }
    if payload.threshold_ppm != registration.threshold_ppm {
        return Check::fail(
            NAME,
            format!(
                "threshold {} ppm, the query registered {}",
                payload.threshold_ppm, registration.threshold_ppm
            ),
        );
    }
    let mut split: Vec<EntityId> =
        payload.reported.iter().chain(&payload.absent).copied().collect();
    split.sort_unstable();
    if split != bitmap.verifiers {
        return Check::fail(NAME, "reported and absent nodes do not split the verifiers");
    }
    for (row, key) in bitmap.proofs.iter().enumerate() {
        let got = received.binary_search_by(|r| r.key.cmp(key)).is_ok();
        for (col, vn) in bitmap.verifiers.iter().enumerate() {
            let v = bitmap.verdicts[row * cols + col];
            let ok = if !payload.reported.contains(vn) || !got {
                v == Verdict::NotReceived
            } else {
                v != Verdict::NotReceived
            };
            if !ok {
                return Check::fail(
                    NAME,
                    format!(
                        "{} is {} for {vn} on {key} ({}received, {vn} {})",
                        key.bitmap_key(*vn),
                        v.value(),
                        if got { "" } else { "not " },
                        if payload.reported.contains(vn) { "reported" } else { "absent" }
                    ),
                );
            }
        }
    }
    Check::pass(
        NAME,
        format!(
            "{} proofs × {cols} verifiers, {} reported, {} absent",
            bitmap.proofs.len(),
            payload.reported.len(),
            payload.absent.len()
        ),
    )
}

/// Check block 0's genesis record against the chain id and the proven roster and parameters.
pub fn check_genesis_record(
    record: &GenesisRecord,
    chain_id: &str,
    roster: &Roster,
    params: &Params,
) -> Check {
    const NAME: &str = "genesis record";
    if record.chain_id != chain_id {
        return Check::fail(NAME, format!("chain id {:?}, expected {chain_id:?}", record.chain_id));
    }
    let state = GenesisRecord::new(chain_id, roster, params);
    if record.roster_hash != state.roster_hash {
        return Check::fail(NAME, "the roster hash is not the hash of the roster in state");
    }
    if record.params_hash != state.params_hash {
        return Check::fail(NAME, "the parameters hash is not the hash of the parameters in state");
    }
    Check::pass(NAME, format!("chain {chain_id}, roster and parameters match state"))
}

fn short(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..6])
}

// ---------------------------------------------------------------------------------------------
// The light client
// ---------------------------------------------------------------------------------------------

/// Which skipblock to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRef {
    /// The latest block.
    Latest,
    /// By index.
    Index(u64),
    /// By hash.
    Hash([u8; 32]),
    /// The block of a query.
    Query(QueryId),
}

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockRef::Latest => f.write_str("the latest skipblock"),
            BlockRef::Index(i) => write!(f, "skipblock {i}"),
            BlockRef::Hash(h) => write!(f, "skipblock {}", hex::encode(h)),
            BlockRef::Query(q) => write!(f, "the skipblock of query {q}"),
        }
    }
}

impl BlockRef {
    fn path(&self) -> String {
        match self {
            BlockRef::Latest => "/skipchain/latest".into(),
            BlockRef::Index(i) => format!("/skipchain/index/{i}"),
            BlockRef::Hash(h) => format!("/skipchain/hash/{}", hex::encode(h)),
            BlockRef::Query(q) => format!("/skipchain/query/{q}"),
        }
    }

    /// The key whose absence shows that the block does not exist.
    fn lookup_key(&self) -> Vec<u8> {
        match self {
            BlockRef::Latest => state_key::SKIP_HEAD.to_vec(),
            BlockRef::Index(i) => state_key::block(*i),
            BlockRef::Hash(h) => state_key::block_by_hash(h),
            BlockRef::Query(q) => state_key::block_by_query(q),
        }
    }

    /// Whether `block` is the one asked for (the latest block is checked separately).
    fn matches(&self, block: &SkipBlock) -> bool {
        match self {
            BlockRef::Latest => true,
            BlockRef::Index(i) => block.index == *i,
            BlockRef::Hash(h) => block.hash() == *h,
            BlockRef::Query(q) => block.query_id() == Some(*q),
        }
    }
}

/// A node's state at one height, behind a header verified against the trust root: every read
/// is proven against that header's app hash.
///
/// Proven values are kept (by state key) for the client's life: the state height is fixed, so
/// a value asked for twice is fetched and proven once.
#[derive(Debug)]
pub struct LightClient<'a> {
    node: &'a Node,
    header: HeaderReport,
    app_hash: [u8; 32],
    proven: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

/// The local clock, for the trusting period of validator-set changes (and the dates of known
/// chains).
pub(crate) fn now() -> tendermint::Time {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs())
        .ok()
        .and_then(|secs| tendermint::Time::from_unix_timestamp(secs, since.subsec_nanos()).ok())
        .unwrap_or_else(tendermint::Time::unix_epoch)
}

impl<'a> LightClient<'a> {
    /// Verify the header above the node's latest state height that has one (`latest − 1`).
    pub fn new(node: &'a Node, trust: &TrustRoot) -> Result<Self, LightError> {
        let latest = node.status()?.height;
        if latest < 2 {
            return Err(LightError::TooEarly(latest));
        }
        Self::at_height(node, trust, latest - 1)
    }

    /// Verify the header of block `state_height + 1`, which carries the app hash of
    /// `state_height`.
    pub fn at_height(
        node: &'a Node,
        trust: &TrustRoot,
        state_height: u64,
    ) -> Result<Self, LightError> {
        if state_height == 0 {
            return Err(LightError::TooEarly(0));
        }
        let header_height = state_height.checked_add(1).ok_or(LightError::TooEarly(0))?;
        let trusted = trust.resolve(node, header_height)?;
        let (signed, power, validators, via) = match trusted.state() {
            Some(state) => {
                let f = follow(node, &state, header_height, &FollowOptions::default(), now())?;
                (f.header, f.power, f.validators, f.via)
            }
            None => {
                let signed = node.signed_header(header_height)?;
                let power = check_header(&signed, &trusted, header_height)?;
                (signed, power, trusted.set().clone(), Vec::new())
            }
        };
        let app_hash: [u8; 32] =
            signed.header.app_hash.as_bytes().try_into().map_err(|_| LightError::Header {
                height: header_height,
                reason: format!(
                    "app hash of {} bytes, the ledger's is 32",
                    signed.header.app_hash.as_bytes().len()
                ),
            })?;
        let header = HeaderReport {
            chain_id: signed.header.chain_id.to_string(),
            state_height,
            header_height,
            header_hash: hex::encode(hash_bytes(&signed.header.hash())),
            app_hash: hex::encode(app_hash),
            validators_hash: hex::encode(hash_bytes(&validators.hash())),
            validators: validators.validators().len(),
            via,
            signed_power: power.signed,
            total_power: power.total,
            trust: trusted.root().clone(),
        };
        Ok(LightClient { node, header, app_hash, proven: RefCell::default() })
    }

    /// The verified header.
    pub fn header(&self) -> &HeaderReport {
        &self.header
    }

    fn query(&self, path: &str) -> Result<Answer, LightError> {
        let answer = self.node.query(path, Some(self.header.state_height), true)?;
        if answer.height != self.header.state_height {
            return Err(LightError::Proof {
                path: path.to_owned(),
                reason: format!(
                    "answered at height {}, asked for {}",
                    answer.height, self.header.state_height
                ),
            });
        }
        Ok(answer)
    }

    /// The proven value under `key`, asked for through `path`; `None` when its absence is
    /// proven.
    pub fn get<T: BorshDeserialize>(
        &self,
        path: &str,
        key: &[u8],
    ) -> Result<Option<T>, LightError> {
        self.get_bytes(path, key)?
            .map(|v| {
                from_borsh(&v).map_err(|e| LightError::Decode {
                    what: path.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// The value bytes of `path`, proven under the state key `key` (or proven absent).
    pub fn get_bytes(&self, path: &str, key: &[u8]) -> Result<Option<Vec<u8>>, LightError> {
        let cached = self.proven.borrow().get(key).cloned();
        Ok(match cached {
            Some(value) => value,
            None => {
                let answer = self.query(path)?;
                let value = check_answer(&self.app_hash, path, key, &answer)?.map(<[u8]>::to_vec);
                self.proven.borrow_mut().insert(key.to_vec(), value.clone());
                value
            }
        })
    }

    /// The proven chain parameters.
    pub fn params(&self) -> Result<Params, LightError> {
        self.get("/params", state_key::PARAMS)?
            .ok_or_else(|| LightError::NotFound("the chain parameters".into()))
    }

    /// The proven roster.
    pub fn roster(&self) -> Result<Roster, LightError> {
        self.get("/roster", state_key::ROSTER)?
            .ok_or_else(|| LightError::NotFound("the roster".into()))
    }

    /// The proven roster as genesis set it (block 0 records its hash).
    pub fn genesis_roster(&self) -> Result<Roster, LightError> {
        self.get("/roster/genesis", state_key::GENESIS_ROSTER)?
            .ok_or_else(|| LightError::NotFound("the genesis roster".into()))
    }

    /// A proven accepted proof.
    pub fn proof_record(&self, key: &ProofKey) -> Result<Option<ProofRecord>, LightError> {
        let path = format!("/proof/{}/{}/{}/{}", key.query, key.kind, key.creator, key.index);
        self.get(&path, &state_key::proof(key))
    }

    /// The verdicts of a query's challenged proofs, each proven by its own skipblock: the list
    /// comes unproven from the node, and every entry must equal the verdict block it names
    /// (a node can leave verdicts out of the list, not forge one).
    pub fn verdicts(&self, id: &QueryId) -> Result<Vec<VerdictRecord>, LightError> {
        let records: Vec<VerdictRecord> = self.node.list(&format!("/verdicts/{id}"))?;
        for r in &records {
            let block = self.block(BlockRef::Index(r.block))?;
            match &block.payload {
                BlockPayload::Verdict(v) if *v == r.verdict && v.proof.query == *id => {}
                _ => {
                    return Err(LightError::Mismatch(format!(
                        "the verdict on {} does not match skipblock {}",
                        r.verdict.proof, r.block
                    )))
                }
            }
        }
        Ok(records)
    }

    /// Re-check a challenge verdict: its query block is proven and has the recorded hash, the
    /// challenged proof verifies (or not) here as the verdict says, and the verifying nodes at
    /// fault are exactly those whose bitmap entry says the opposite.
    pub fn check_verdict(
        &self,
        v: &ChallengeVerdict,
        roster: &Roster,
    ) -> Result<Check, LightError> {
        const NAME: &str = "verdict";
        let key = v.proof;
        let block = self.block(BlockRef::Index(v.query_block))?;
        if block.hash() != v.query_block_hash {
            return Ok(Check::fail(
                NAME,
                format!("query block {} has another hash", v.query_block),
            ));
        }
        let BlockPayload::Query(payload) = &block.payload else {
            return Ok(Check::fail(NAME, format!("block {} is not a query block", v.query_block)));
        };
        if payload.query_id != key.query {
            return Ok(Check::fail(NAME, format!("block {} records another query", v.query_block)));
        }
        let Some(record) = self.proof_record(&key)? else {
            return Ok(Check::fail(NAME, format!("{key} is not on the ledger")));
        };
        let registration = self.query_record(&key.query)?.registration;
        let ledger = |k: &ProofKey| self.proof_record(k).ok().flatten();
        let outcome =
            proofs::resolve(&self.header.chain_id, roster, &registration, &record, &ledger)
                .map_err(|e| e.to_string())
                .and_then(|st| st.verify(&record.proof).map_err(|e| e.to_string()));
        if outcome.is_ok() != v.valid {
            return Ok(Check::fail(
                NAME,
                format!(
                    "the chain says {key} is {}, it verifies here as {}",
                    if v.valid { "right" } else { "wrong" },
                    if outcome.is_ok() { "right" } else { "wrong" }
                ),
            ));
        }
        if v.creator_at_fault != (!v.valid).then_some(key.creator) {
            return Ok(Check::fail(
                NAME,
                "the creator at fault does not follow the proof's validity",
            ));
        }
        let liars = payload.bitmap.contradicting(&key, v.valid);
        if liars != v.vns_at_fault {
            return Ok(Check::fail(
                NAME,
                format!(
                    "verifying nodes at fault {:?}, the bitmap shows {liars:?}",
                    v.vns_at_fault
                ),
            ));
        }
        let at_fault: Vec<String> = v.at_fault().map(|e| e.to_string()).collect();
        Ok(Check::pass(
            NAME,
            format!(
                "{key} is {} (re-verified here); at fault: {}; query block {} matches",
                if v.valid { "right" } else { "wrong" },
                if at_fault.is_empty() { "nobody".to_owned() } else { at_fault.join(", ") },
                v.query_block
            ),
        ))
    }

    /// A query's proven registration.
    pub fn query_record(&self, id: &QueryId) -> Result<QueryRecord, LightError> {
        self.get(&format!("/query/{id}"), &state_key::query(id))?
            .ok_or_else(|| LightError::NotFound(format!("query {id}")))
    }

    /// A proven skipblock: the value is proven under the block key of its own index, is the
    /// block asked for, and, for the latest block, its successor is proven absent.
    pub fn block(&self, which: BlockRef) -> Result<SkipBlock, LightError> {
        let path = which.path();
        let answer = self.query(&path)?;
        let Some(bytes) = &answer.value else {
            check_answer(&self.app_hash, &path, &which.lookup_key(), &answer)?;
            return Err(LightError::NotFound(which.to_string()));
        };
        let block: SkipBlock = from_borsh(bytes)
            .map_err(|e| LightError::Decode { what: which.to_string(), reason: e.to_string() })?;
        check_answer(&self.app_hash, &path, &state_key::block(block.index), &answer)?;
        if !which.matches(&block) {
            return Err(LightError::Mismatch(format!(
                "asked for {which}, the node proved block {} ({})",
                block.index,
                hex::encode(block.hash())
            )));
        }
        if which == BlockRef::Latest {
            let next = block.index.checked_add(1).ok_or_else(|| {
                LightError::Mismatch("the latest block has the last representable index".into())
            })?;
            if SkipchainState::block(self, next)?.is_some() {
                return Err(LightError::Mismatch(format!(
                    "block {} was served as the latest, but block {next} exists",
                    block.index
                )));
            }
        }
        Ok(block)
    }

    /// Verify a skipblock: its proof, height and links, and, for a query block, its bitmap and
    /// the proof bodies behind its proofs root. Returns the report, the block and the proof
    /// records (empty for block 0).
    pub fn verify(
        &self,
        which: BlockRef,
    ) -> Result<(VerifyReport, SkipBlock, Vec<ProofRecord>), LightError> {
        let block = self.block(which)?;
        let params = self.params()?;
        let roster = self.roster()?;
        let h = &self.header;
        let mut checks = vec![
            Check::pass(
                "header",
                format!(
                    "header {} of {} signed by {}/{} of the voting power of validator set {} \
                     ({} validators; {})",
                    h.header_height,
                    h.chain_id,
                    h.signed_power,
                    h.total_power,
                    &h.validators_hash[..12],
                    h.validators,
                    h.trust
                ),
            ),
            Check::pass(
                "state proof",
                format!(
                    "block {} proven against app hash {} of height {}",
                    block.index,
                    &h.app_hash[..12],
                    h.state_height
                ),
            ),
        ];
        checks.extend(check_links(self, &block, &params)?);
        let mut records = Vec::new();
        let mut verdicts = Vec::new();
        match &block.payload {
            BlockPayload::Genesis(g) => {
                checks.push(check_genesis_record(g, &h.chain_id, &self.genesis_roster()?, &params));
            }
            BlockPayload::Query(payload) => {
                let record = self.query_record(&payload.query_id)?;
                records = self.node.proofs(&payload.query_id)?;
                checks.push(check_proofs_root(payload, &records));
                checks.push(check_coverage(payload, &record.registration, &records));
                checks.push(check_bitmap(payload, &record.registration, &roster, &records));
                verdicts =
                    self.verdicts(&payload.query_id)?.iter().map(VerdictSummary::of).collect();
            }
            BlockPayload::Verdict(v) => {
                checks.push(self.check_verdict(v, &roster)?);
            }
            BlockPayload::RosterChange(r) => {
                checks.push(check_roster_change(r));
            }
        }
        let report = VerifyReport {
            block: BlockSummary::from(&block),
            header: self.header.clone(),
            verified: checks.iter().all(|c| c.passed),
            checks,
            verdicts,
        };
        Ok((report, block, records))
    }
}

impl SkipchainState for LightClient<'_> {
    fn block(&self, index: u64) -> Result<Option<SkipBlock>, LightError> {
        match LightClient::block(self, BlockRef::Index(index)) {
            Ok(b) => Ok(Some(b)),
            Err(LightError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn forward_links(&self, index: u64) -> Result<Vec<[u8; 32]>, LightError> {
        Ok(self
            .get(&format!("/skipchain/forward/{index}"), &state_key::forward(index))?
            .unwrap_or_default())
    }
}

/// Verify a skipblock as a light client (`lemal verify`, `lemal block ... --verify`).
pub fn verify_block(
    node: &Node,
    trust: &TrustRoot,
    which: BlockRef,
) -> Result<VerifyReport, LightError> {
    let client = LightClient::new(node, trust)?;
    Ok(client.verify(which)?.0)
}

/// Verify the skipblock of a query as a light client (`lemal verify ID`).
pub fn verify_query(
    node: &Node,
    trust: &TrustRoot,
    id: &QueryId,
) -> Result<VerifyReport, LightError> {
    verify_block(node, trust, BlockRef::Query(*id))
}

/// Prove that a block is an ancestor of the latest block, with a light client holding a
/// verified header: fetch the block proven, then follow forward links to the latest block
/// ([`walk_forward`]). Block 0 must also carry a genesis record that matches the proven chain
/// id, roster and parameters.
pub fn verify_ancestry_with(
    client: &LightClient<'_>,
    from: BlockRef,
) -> Result<AncestryReport, LightError> {
    let start = client.block(from)?;
    let params = client.params()?;
    if start.index == 0 {
        let BlockPayload::Genesis(record) = &start.payload else {
            return Err(LightError::Mismatch("block 0 is not a genesis block".into()));
        };
        let check = check_genesis_record(
            record,
            &client.header().chain_id,
            &client.genesis_roster()?,
            &params,
        );
        if !check.passed {
            return Err(LightError::Mismatch(format!("block 0: {}", check.detail)));
        }
    }
    let (hops, latest) = walk_forward(client, &start, params.skip_base)?;
    Ok(AncestryReport {
        header: client.header().clone(),
        from: BlockSummary::from(&start),
        latest: BlockSummary::from(&latest),
        hops,
    })
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

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
mod testkit;

#[cfg(test)]
mod tests {
    use super::testkit::{header, sign, validators, Validators, CHAIN};
    use super::trust::validator_set;
    use super::*;
    use tendermint::validator::Set as ValidatorSet;

    use lemal_contracts::group::to_borsh;
    use lemal_contracts::ids::ProofKind;
    use lemal_contracts::state::{Bitmap, Timestamp};
    use lemal_contracts::tx::TxBody;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tendermint::block::CommitSig;

    use crate::data::DataBounds;
    use crate::keyring::Keyring;
    use crate::pipeline::{self, PlanOptions, QueryPlan, Session};

    // ----- signed headers ------------------------------------------------------------------

    #[test]
    fn header_signed_by_every_validator_verifies_with_full_power() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
        let power = check_header(&signed, &vals.trusted, 5).expect("verifies");
        assert_eq!(power, SignedPower { signed: 40, total: 40 });
    }

    #[test]
    fn header_signed_by_more_than_two_thirds_of_the_power_verifies() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 2, 3]);
        assert_eq!(
            check_header(&signed, &vals.trusted, 5).expect("verifies"),
            SignedPower { signed: 30, total: 40 }
        );
    }

    #[test]
    fn header_signed_by_two_thirds_or_less_of_the_power_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1]);
        assert!(matches!(check_header(&signed, &vals.trusted, 5), Err(LightError::Header { .. })));
        // Power, not head count: one heavy validator of four holds 70 %.
        let vals = validators(1, &[70, 10, 10, 10]);
        let heavy = vals.trusted.set().validators().iter().position(|v| v.power() == 70);
        let heavy = heavy.expect("heavy validator");
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[heavy]);
        assert!(check_header(&signed, &vals.trusted, 5).is_ok());
        let light: Vec<usize> = (0..4).filter(|&i| i != heavy).collect();
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &light);
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    #[test]
    fn header_whose_app_hash_was_changed_after_signing_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let mut signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
        signed.header.app_hash = tendermint::AppHash::try_from(vec![4; 32]).expect("app hash");
        assert!(matches!(check_header(&signed, &vals.trusted, 5), Err(LightError::Header { .. })));
    }

    #[test]
    fn header_signed_by_another_validator_set_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let other = validators(50, &[10, 10, 10, 10]);
        let signed = sign(&other, header(&other, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
        assert!(matches!(check_header(&signed, &vals.trusted, 5), Err(LightError::Header { .. })));
        // Claiming the trusted set's hash does not help when the others signed.
        let mut forged = header(&other, CHAIN, 5, [3; 32]);
        forged.validators_hash = vals.trusted.set().hash();
        forged.next_validators_hash = vals.trusted.set().hash();
        let signed = sign(&other, forged, &[0, 1, 2, 3]);
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    #[test]
    fn header_of_another_chain_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, "other-chain", 5, [3; 32]), &[0, 1, 2, 3]);
        let err = check_header(&signed, &vals.trusted, 5).expect_err("other chain");
        assert!(err.to_string().contains("chain id"), "{err}");
    }

    #[test]
    fn header_at_another_height_than_asked_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 6, [3; 32]), &[0, 1, 2, 3]);
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    #[test]
    fn commit_with_a_forged_signature_is_refused_even_when_enough_others_signed() {
        let vals = validators(1, &[10, 10, 10, 10]);
        for victim in 0..4 {
            let mut signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
            let forged = tendermint::Signature::try_from([1u8; 64].as_slice()).ok();
            if let CommitSig::BlockIdFlagCommit { signature, .. } =
                &mut signed.commit.signatures[victim]
            {
                *signature = forged;
            }
            assert!(check_header(&signed, &vals.trusted, 5).is_err(), "victim {victim}");
        }
    }

    #[test]
    fn commit_that_counts_one_validator_twice_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let mut signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1]);
        signed.commit.signatures[2] = signed.commit.signatures[0].clone();
        signed.commit.signatures[3] = signed.commit.signatures[1].clone();
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    fn genesis_json(vals: &Validators, chain: &str, address: Option<String>) -> Vec<u8> {
        let validators: Vec<serde_json::Value> = vals
            .trusted
            .set()
            .validators()
            .iter()
            .map(|v| {
                serde_json::json!({
                    "address": address.clone().unwrap_or_else(|| hex::encode_upper(v.address.as_bytes())),
                    "pub_key": v.pub_key,
                    "power": v.power().to_string(),
                    "name": "",
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "genesis_time": "2024-01-01T00:00:00Z",
            "chain_id": chain,
            "initial_height": "1",
            "consensus_params": {},
            "validators": validators,
            "app_hash": "",
            "app_state": {"params": {}},
        }))
        .expect("json")
    }

    fn genesis_root(json: &[u8]) -> Result<TrustedValidators, LightError> {
        let genesis = GenesisInfo::from_json(json, "test")?;
        Ok(TrustedValidators {
            set: genesis.validators().clone(),
            chain_id: Some(genesis.chain_id().to_owned()),
            from: None,
            root: TrustRoot::Genesis { genesis, source: "test".into() }.report(),
        })
    }

    #[test]
    fn genesis_document_yields_its_validators_and_chain_id() {
        let vals = validators(1, &[10, 20, 30]);
        let trusted = genesis_root(&genesis_json(&vals, CHAIN, None)).expect("valid genesis");
        assert_eq!(trusted.hash(), vals.trusted.hash());
        assert_eq!(trusted.chain_id(), Some(CHAIN));
        assert_eq!(trusted.root().kind, TrustKind::Genesis);
        assert_eq!(trusted.root().fingerprint.len(), 64);
        let signed = sign(&vals, header(&vals, CHAIN, 2, [1; 32]), &[0, 1, 2]);
        assert_eq!(check_header(&signed, &trusted, 2).expect("verifies").total, 60);
    }

    #[test]
    fn genesis_validator_whose_address_is_not_its_key_is_refused() {
        let vals = validators(1, &[10, 10]);
        let json = genesis_json(&vals, CHAIN, Some("AB".repeat(20)));
        assert!(matches!(genesis_root(&json), Err(LightError::Trust(_))));
    }

    #[test]
    fn genesis_without_validators_or_not_json_is_refused() {
        let empty =
            br#"{"chain_id": "c", "genesis_time": "2024-01-01T00:00:00Z", "validators": []}"#;
        assert!(genesis_root(empty).is_err());
        assert!(genesis_root(b"{").is_err());
        assert!(genesis_root(b"").is_err());
    }

    #[test]
    fn validator_sets_with_zero_duplicate_or_excessive_power_are_refused() {
        let vals = validators(1, &[10, 10]);
        let infos = vals.trusted.set().validators().clone();
        let mut zero = infos.clone();
        zero[0].power = 0u32.into();
        assert!(validator_set(zero).is_err());
        let duplicate = vec![infos[0].clone(), infos[0].clone()];
        assert!(validator_set(duplicate).is_err());
        let mut huge = infos.clone();
        for v in &mut huge {
            v.power = tendermint::vote::Power::try_from(ValidatorSet::MAX_TOTAL_VOTING_POWER)
                .expect("power");
        }
        assert!(validator_set(huge).is_err());
        assert!(validator_set(Vec::new()).is_err());
        assert!(validator_set(infos).is_ok());
    }

    #[test]
    fn pinned_hash_accepts_only_the_set_it_names() {
        let vals = validators(1, &[10, 10, 10]);
        let infos = vals.trusted.set().validators().clone();
        let pinned = vals.trusted.hash();
        check_pinned_set(vals.trusted.set(), &pinned).expect("the pinned set");
        let mut other = pinned;
        other[0] ^= 1;
        assert!(check_pinned_set(vals.trusted.set(), &other).is_err());
        let fewer = validator_set(infos[..2].to_vec()).expect("set");
        assert!(check_pinned_set(&fewer, &pinned).is_err());
        assert!(TrustRoot::validators_hash_hex(&hex::encode(pinned), None).is_ok());
        assert!(TrustRoot::validators_hash_hex("abc", None).is_err());
    }

    #[test]
    fn pinned_header_accepts_only_that_header_and_the_sets_it_names() {
        let vals = validators(1, &[10, 10, 10]);
        let set = vals.trusted.set();
        let signed = sign(&vals, header(&vals, CHAIN, 7, [4; 32]), &[0, 1, 2]);
        let pin = hash_bytes(&signed.header.hash());
        let chain = check_pinned_header(&signed, set, set, 7, &pin).expect("pinned");
        assert_eq!(chain, CHAIN);
        // Another chain's header at that height (another app hash): a different chain.
        let other = sign(&vals, header(&vals, CHAIN, 7, [5; 32]), &[0, 1, 2]);
        assert!(matches!(
            check_pinned_header(&other, set, set, 7, &pin),
            Err(LightError::DifferentChain { .. })
        ));
        // The right header with another validator set, or next set, served beside it.
        let others = validators(50, &[10, 10, 10]);
        for (v, n) in [(others.trusted.set(), set), (set, others.trusted.set())] {
            assert!(matches!(
                check_pinned_header(&signed, v, n, 7, &pin),
                Err(LightError::Header { .. })
            ));
        }
        // The right header served for another height.
        assert!(check_pinned_header(&signed, set, set, 8, &pin).is_err());
    }

    // ----- state proofs ----------------------------------------------------------------------

    /// An in-memory Jellyfish Merkle tree, as the verifying nodes' store builds it.
    #[derive(Default)]
    struct MemTree {
        nodes: BTreeMap<jmt::storage::NodeKey, jmt::storage::Node>,
        values: BTreeMap<(jmt::Version, jmt::KeyHash), Option<Vec<u8>>>,
        preimages: BTreeMap<jmt::KeyHash, Vec<u8>>,
    }

    impl jmt::storage::HasPreimage for MemTree {
        fn preimage(&self, key_hash: jmt::KeyHash) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(self.preimages.get(&key_hash).cloned())
        }
    }

    impl jmt::storage::TreeReader for MemTree {
        fn get_node_option(
            &self,
            key: &jmt::storage::NodeKey,
        ) -> anyhow::Result<Option<jmt::storage::Node>> {
            Ok(self.nodes.get(key).cloned())
        }

        fn get_value_option(
            &self,
            max_version: jmt::Version,
            key_hash: jmt::KeyHash,
        ) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(self
                .values
                .iter()
                .filter(|((v, k), _)| *k == key_hash && *v <= max_version)
                .max_by_key(|((v, _), _)| *v)
                .and_then(|(_, value)| value.clone()))
        }

        fn get_rightmost_leaf(
            &self,
        ) -> anyhow::Result<Option<(jmt::storage::NodeKey, jmt::storage::LeafNode)>> {
            Ok(None)
        }
    }

    impl MemTree {
        fn with(entries: &[(Vec<u8>, Vec<u8>)]) -> (MemTree, [u8; 32]) {
            let mut tree = MemTree::default();
            let set = entries
                .iter()
                .map(|(k, v)| (jmt::KeyHash::with::<sha2::Sha256>(k), Some(v.clone())))
                .collect::<Vec<_>>();
            let (root, batch) =
                jmt::Sha256Jmt::new(&tree).put_value_set(set, 1).expect("tree update");
            tree.nodes.extend(batch.node_batch.nodes().clone());
            tree.values.extend(batch.node_batch.values().clone());
            for (k, _) in entries {
                tree.preimages.insert(jmt::KeyHash::with::<sha2::Sha256>(k), k.clone());
            }
            (tree, root.0)
        }

        fn answer(&self, key: &[u8]) -> Answer {
            let (value, proof) =
                jmt::Sha256Jmt::new(self).get_with_ics23_proof(key.to_vec(), 1).expect("proof");
            Answer { key: key.to_vec(), value, height: 1, proof: Some(proof) }
        }
    }

    fn state_with_blocks() -> (MemTree, [u8; 32], Vec<SkipBlock>) {
        let chain = MemChain::build(3, &params(2, 4));
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
            chain.blocks.iter().map(|b| (state_key::block(b.index), to_borsh(b))).collect();
        entries.push((state_key::ROSTER.to_vec(), vec![1, 2, 3]));
        let (tree, root) = MemTree::with(&entries);
        (tree, root, chain.blocks)
    }

    #[test]
    fn value_proven_under_its_key_is_accepted() {
        let (tree, root, blocks) = state_with_blocks();
        let key = state_key::block(2);
        let answer = tree.answer(&key);
        let value = check_answer(&root, "/skipchain/index/2", &key, &answer).expect("proven");
        assert_eq!(value, Some(to_borsh(&blocks[2]).as_slice()));
    }

    #[test]
    fn absence_proven_under_its_key_is_accepted() {
        let (tree, root, _) = state_with_blocks();
        let key = state_key::block(9);
        let answer = tree.answer(&key);
        assert_eq!(check_answer(&root, "/skipchain/index/9", &key, &answer).expect("proven"), None);
    }

    #[test]
    fn tampered_value_is_rejected() {
        let (tree, root, blocks) = state_with_blocks();
        let key = state_key::block(2);
        let mut answer = tree.answer(&key);
        let mut forged = blocks[2].clone();
        forged.ledger_height += 1;
        answer.value = Some(to_borsh(&forged));
        assert!(matches!(check_answer(&root, "p", &key, &answer), Err(LightError::Proof { .. })));
    }

    #[test]
    fn answer_proven_under_another_key_is_rejected() {
        let (tree, root, _) = state_with_blocks();
        // A valid proof of block 3, served for block 2.
        let answer = tree.answer(&state_key::block(3));
        assert!(check_answer(&root, "p", &state_key::block(2), &answer).is_err());
        // The same proof with the asked key written over the answer's key.
        let mut relabelled = answer.clone();
        relabelled.key = state_key::block(2);
        assert!(check_answer(&root, "p", &state_key::block(2), &relabelled).is_err());
    }

    #[test]
    fn proof_against_another_app_hash_is_rejected() {
        let (tree, mut root, _) = state_with_blocks();
        let key = state_key::block(1);
        let answer = tree.answer(&key);
        root[31] ^= 1;
        assert!(check_answer(&root, "p", &key, &answer).is_err());
    }

    #[test]
    fn answer_without_proof_is_rejected() {
        let (tree, root, _) = state_with_blocks();
        let key = state_key::block(1);
        let mut answer = tree.answer(&key);
        answer.proof = None;
        assert!(check_answer(&root, "p", &key, &answer).is_err());
    }

    #[test]
    fn claimed_absence_of_an_existing_value_is_rejected() {
        let (tree, root, _) = state_with_blocks();
        let key = state_key::block(1);
        let mut answer = tree.answer(&key);
        answer.value = None;
        assert!(check_answer(&root, "p", &key, &answer).is_err());
        // And a proof of absence of another key does not prove this one absent.
        let mut absent = tree.answer(&state_key::block(9));
        absent.key = key.clone();
        assert!(check_answer(&root, "p", &key, &absent).is_err());
    }

    // ----- skipchain links -------------------------------------------------------------------

    fn params(base: u32, max_height: u8) -> Params {
        Params { skip_base: base, skip_max_height: max_height, ..Params::default() }
    }

    /// A skipchain built the way the verifying nodes append blocks: back links to the latest
    /// earlier block taller than each level, and forward links filled level by level.
    #[derive(Clone)]
    struct MemChain {
        blocks: Vec<SkipBlock>,
        forward: Vec<Vec<[u8; 32]>>,
    }

    impl MemChain {
        fn build(n: u64, params: &Params) -> MemChain {
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

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn every_block_of_an_honest_chain_passes_height_and_link_checks() {
        for p in [params(2, 4), params(3, 3), params(2, 16), params(4, 2)] {
            let chain = MemChain::build(40, &p);
            for block in &chain.blocks {
                let checks = check_links(&chain, block, &p).expect("state available");
                assert!(failed(&checks).is_empty(), "block {}: {checks:?}", block.index);
                assert_eq!(checks.len(), 1 + block.back_links.len());
            }
        }
    }

    fn detail<'c>(checks: &'c [Check], name: &str) -> &'c str {
        checks.iter().find(|c| c.name == name).map_or("", |c| c.detail.as_str())
    }

    #[test]
    fn block_with_a_wrong_skip_height_is_caught() {
        let p = params(2, 4);
        let chain = MemChain::build(8, &p);
        let mut block = chain.blocks[4].clone();
        block.height = 2;
        assert_eq!(failed(&check_links(&chain, &block, &p).expect("checks"))[0], "skip height");
        let mut block = chain.blocks[0].clone();
        block.height = 3;
        assert_eq!(failed(&check_links(&chain, &block, &p).expect("checks")), ["skip height"]);
        // A dropped back link is a shape error too.
        let mut block = chain.blocks[4].clone();
        block.back_links.pop();
        assert_eq!(failed(&check_links(&chain, &block, &p).expect("checks"))[0], "skip height");
    }

    #[test]
    fn tampered_back_link_is_caught() {
        let p = params(2, 4);
        let chain = MemChain::build(8, &p);
        for level in 0..3 {
            let mut block = chain.blocks[4].clone();
            block.back_links[level][0] ^= 1;
            let checks = check_links(&chain, &block, &p).expect("checks");
            let name = format!("back link {level}");
            assert!(failed(&checks).contains(&name.as_str()), "{checks:?}");
            assert!(detail(&checks, &name).contains("hashes to"), "{checks:?}");
        }
        // A back link to a real block, but the wrong one.
        let mut block = chain.blocks[6].clone();
        block.back_links[1] = chain.blocks[3].hash();
        let checks = check_links(&chain, &block, &p).expect("checks");
        assert!(detail(&checks, "back link 1").contains("block 4 hashes to"), "{checks:?}");
    }

    #[test]
    fn altered_block_no_longer_matches_its_ancestors_forward_links() {
        let p = params(2, 4);
        let chain = MemChain::build(8, &p);
        let mut block = chain.blocks[4].clone();
        block.ledger_height += 1;
        let checks = check_links(&chain, &block, &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0", "back link 1", "back link 2"]);
        // ... and its successor's back link no longer matches it.
        let mut altered = chain.clone();
        altered.blocks[4] = block;
        let checks = check_links(&altered, &altered.blocks[5], &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0"]);
    }

    #[test]
    fn missing_forward_link_or_linked_block_is_caught() {
        let p = params(2, 4);
        let mut chain = MemChain::build(8, &p);
        chain.forward[2].clear();
        let checks = check_links(&chain, &chain.blocks[3], &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0"]);
        let mut chain = MemChain::build(8, &p);
        chain.blocks.truncate(4);
        let block = MemChain::build(8, &p).blocks[5].clone();
        let checks = check_links(&chain, &block, &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0"]);
        assert!(detail(&checks, "back link 0").contains("does not exist"));
    }

    #[test]
    fn walk_from_genesis_reaches_the_latest_block_in_logarithmic_hops() {
        let p = params(2, 16);
        for n in 0..=130u64 {
            let chain = MemChain::build(n, &p);
            let (hops, latest) = walk_forward(&chain, &chain.blocks[0], 2).expect("walk");
            assert_eq!(latest, chain.blocks[n as usize], "n = {n}");
            let bound = 2 * (64 - n.leading_zeros() as usize);
            assert!(hops.len() <= bound, "n = {n}: {} hops", hops.len());
            assert!(hops.windows(2).all(|w| w[0].to == w[1].from));
        }
        let chain = MemChain::build(1000, &p);
        let (hops, _) = walk_forward(&chain, &chain.blocks[0], 2).expect("walk");
        assert!(hops.len() <= 20, "{} hops to block 1000", hops.len());
        let p3 = params(3, 5);
        let chain = MemChain::build(500, &p3);
        let (hops, latest) = walk_forward(&chain, &chain.blocks[0], 3).expect("walk");
        assert_eq!(latest.index, 500);
        assert!(hops.len() <= 2 * 6 + 500 / 81, "{} hops", hops.len());
    }

    #[test]
    fn walk_from_any_block_reaches_the_latest_block() {
        let p = params(2, 4);
        let chain = MemChain::build(37, &p);
        for from in &chain.blocks {
            let (hops, latest) = walk_forward(&chain, from, 2).expect("walk");
            assert_eq!(latest.index, 37);
            assert_eq!(hops.first().map_or(from.index, |h| h.from), from.index);
        }
    }

    #[test]
    fn walk_refuses_a_forward_link_to_a_block_with_another_hash() {
        let p = params(2, 4);
        let mut chain = MemChain::build(20, &p);
        chain.blocks[16].ledger_height += 1;
        assert!(matches!(
            walk_forward(&chain, &chain.blocks[0].clone(), 2),
            Err(LightError::Mismatch(_))
        ));
    }

    #[test]
    fn walk_refuses_a_forward_link_answered_by_a_block_that_does_not_link_back() {
        let p = params(2, 4);
        let mut chain = MemChain::build(20, &p);
        // Block 8 re-hashed with a broken back link, and the forward link rewritten to match.
        let mut forged = chain.blocks[8].clone();
        forged.back_links[3] = [0; 32];
        chain.forward[0][3] = forged.hash();
        chain.blocks[8] = forged;
        assert!(walk_forward(&chain, &chain.blocks[0].clone(), 2).is_err());
    }

    #[test]
    fn walk_refuses_to_stop_before_the_latest_block() {
        let p = params(2, 4);
        let mut chain = MemChain::build(12, &p);
        for links in &mut chain.forward[..12] {
            links.clear();
        }
        assert!(walk_forward(&chain, &chain.blocks[0].clone(), 2).is_err());
        assert!(walk_forward(&chain, &chain.blocks[11].clone(), 2).is_err());
        assert!(walk_forward(&chain, &chain.blocks[12].clone(), 2).is_ok());
    }

    // ----- a query run in memory ---------------------------------------------------------------

    /// A query run entirely in memory with real proofs: its registration, the roster, the
    /// accepted proof records, the verifying nodes' commits and the block payload an honest
    /// chain appends for it.
    struct Run {
        roster: Roster,
        params: Params,
        plan: QueryPlan,
        records: Vec<ProofRecord>,
        commits: Vec<BitmapCommitRecord>,
        payload: QueryPayload,
    }

    fn run(cheat: Option<(EntityId, ProofKind)>, threshold_ppm: u32) -> Run {
        let mut rng = ChaCha20Rng::seed_from_u64(41);
        let keys = Keyring::generate(3, 2, 3, &mut rng);
        let addresses: Vec<[u8; 20]> = (0..3u8).map(|i| [i + 1; 20]).collect();
        let (params, roster) = keys
            .genesis(Params::default(), &addresses, &mut rng)
            .into_typed()
            .expect("valid genesis");
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
        let session = Session {
            chain_id: CHAIN,
            keys: &keys,
            roster: &roster,
            registration: &plan.registration,
        };
        let cheats = |who: EntityId, kind| cheat == Some((who, kind));
        let mut ledger: BTreeMap<ProofKey, ProofRecord> = BTreeMap::new();
        let accept = |tx: lemal_contracts::tx::Tx, ledger: &mut BTreeMap<_, _>| {
            let TxBody::SubmitProof(p) = tx.body else { panic!("not a proof") };
            let key = p.key(tx.signer);
            let record = ProofRecord {
                key,
                inputs: p.inputs,
                outputs: p.outputs,
                proof: p.proof,
                height: 3,
            };
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
                let (output, vrf) =
                    sampling::evaluate(&keys.vns[v as usize], CHAIN, &q, vn, &mut rng);
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
        let mut verdicts = Vec::new();
        for row in 0..expected.len() {
            for c in &commits {
                verdicts.push(c.verdicts[row]);
            }
        }
        let hashes: Vec<[u8; 32]> = records.iter().map(ProofRecord::hash).collect();
        let get = |k: &ProofKey| ledger.get(k).cloned();
        let payload = QueryPayload {
            query_id: q,
            bitmap: Bitmap { proofs: expected, verifiers: verifiers.clone(), verdicts },
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
        fn audit(&self) -> Findings {
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

        fn bitmap_check(&self) -> Check {
            check_bitmap(&self.payload, &self.plan.registration, &self.roster, &self.records)
        }

        /// Change the verdict of one VN on a proof it was (`selected`) or was not selected for
        /// (`proof`, or the first one found) to `verdict`, audit, and require that VN and only
        /// it to be named faulty. Returns the audit and that VN's first disagreement.
        fn blame(
            &mut self,
            selected: bool,
            proof: Option<ProofKey>,
            verdict: Verdict,
        ) -> (Findings, Disagreement) {
            let (row, vn) = self.find(selected, proof);
            self.set_verdict(row, vn, verdict);
            let findings = self.audit();
            let faulty: Vec<_> = findings.faulty_verifiers().map(|v| v.vn.clone()).collect();
            assert_eq!(faulty, [format!("vn-{vn}")]);
            let first = findings.faulty_verifiers().next().expect("one").disagreements[0].clone();
            (findings, first)
        }

        fn set_verdict(&mut self, row: usize, vn: u32, v: Verdict) {
            let cols = self.payload.bitmap.verifiers.len();
            self.payload.bitmap.verdicts[row * cols + vn as usize] = v;
        }

        fn row(&self, key: &ProofKey) -> usize {
            self.payload.bitmap.proofs.iter().position(|k| k == key).expect("expected proof")
        }

        /// A (row, verifier) pair whose VRF selects (or does not select) a received proof.
        fn find(&self, selected: bool, proof: Option<ProofKey>) -> (usize, u32) {
            for c in &self.commits {
                let key = self.roster.signing_key(c.vn).expect("vn key");
                let out = sampling::verify(key, CHAIN, &self.payload.query_id, c.vn, &c.vrf)
                    .expect("valid VRF");
                for r in &self.records {
                    if proof.is_some_and(|p| p != r.key) {
                        continue;
                    }
                    if sampling::is_selected(&out, &r.key, self.payload.threshold_ppm) == selected {
                        return (self.row(&r.key), c.vn.index);
                    }
                }
            }
            panic!("no verifier with that selection in this run")
        }
    }

    fn key_of(run: &Run, kind: ProofKind, creator: EntityId) -> ProofKey {
        ProofKey { query: run.payload.query_id, kind, creator, index: 0 }
    }

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

    // ----- proofs root, bitmap, genesis record -------------------------------------------------

    #[test]
    fn a_block_that_misstates_its_coverage_is_caught() {
        let mut run = run(None, 600_000);
        let reg = run.plan.registration.clone();
        assert!(check_coverage(&run.payload, &reg, &run.records).passed);
        assert_eq!(run.payload.covered.len(), reg.spec.dps.len(), "every data provider is in");
        let dropped = run.payload.covered.pop().expect("some data provider is covered");
        assert!(!check_coverage(&run.payload, &reg, &run.records).passed, "claims less");
        run.payload.uncovered.push(dropped);
        assert!(!check_coverage(&run.payload, &reg, &run.records).passed, "claims it missing");
    }

    #[test]
    fn omitted_proof_is_caught_by_the_proofs_root() {
        let run = run(None, 1_000_000);
        for i in 0..run.records.len() {
            let mut records = run.records.clone();
            records.remove(i);
            assert!(!check_proofs_root(&run.payload, &records).passed, "without record {i}");
        }
    }

    #[test]
    fn altered_proof_body_is_caught_by_the_proofs_root() {
        let run = run(None, 1_000_000);
        let mut records = run.records.clone();
        records[0].proof[10] ^= 1;
        assert!(!check_proofs_root(&run.payload, &records).passed);
        let mut records = run.records.clone();
        records[3].inputs.pop();
        assert!(!check_proofs_root(&run.payload, &records).passed);
        let mut records = run.records.clone();
        records[1].outputs[0] = records[2].outputs[0];
        assert!(!check_proofs_root(&run.payload, &records).passed);
        // The acceptance height is not part of the proof's hash.
        let mut records = run.records.clone();
        records[1].height += 5;
        assert!(check_proofs_root(&run.payload, &records).passed);
    }

    #[test]
    fn reordered_duplicated_or_foreign_proofs_are_caught() {
        let run = run(None, 1_000_000);
        let mut records = run.records.clone();
        records.swap(0, 1);
        assert!(!check_proofs_root(&run.payload, &records).passed);
        let mut records = run.records.clone();
        records.insert(1, records[0].clone());
        assert!(!check_proofs_root(&run.payload, &records).passed);
        // A proof of another query, even with the root recomputed over it.
        let mut payload = run.payload.clone();
        let mut records = run.records.clone();
        records[0].key.query = QueryId([0xee; 16]);
        payload.proofs_root =
            proofs_root(&records.iter().map(ProofRecord::hash).collect::<Vec<_>>());
        assert!(!check_proofs_root(&payload, &records).passed);
        // An unexpected proof of this query, root recomputed.
        let mut records = run.records.clone();
        records[0].key.index = 7;
        records.sort_by_key(|r| r.key);
        payload.proofs_root =
            proofs_root(&records.iter().map(ProofRecord::hash).collect::<Vec<_>>());
        let check = check_proofs_root(&payload, &records);
        assert!(!check.passed && check.detail.contains("not an expected proof"), "{check:?}");
    }

    #[test]
    fn bitmap_must_have_the_expected_rows_and_the_rosters_columns() {
        let mut r = run(None, 600_000);
        r.payload.bitmap.proofs.swap(0, 1);
        assert!(!r.bitmap_check().passed);
        r.payload.bitmap.proofs.swap(0, 1);
        r.payload.bitmap.verifiers.swap(0, 1);
        assert!(!r.bitmap_check().passed);
        r.payload.bitmap.verifiers.swap(0, 1);
        r.payload.bitmap.verdicts.pop();
        assert!(!r.bitmap_check().passed);
        r.payload.bitmap.verdicts.push(Verdict::NotSelected);
        assert!(r.bitmap_check().passed);
        r.payload.threshold_ppm += 1;
        assert!(!r.bitmap_check().passed);
        r.payload.threshold_ppm -= 1;
        r.payload.absent.push(EntityId::vn(0));
        assert!(!r.bitmap_check().passed);
        r.payload.absent.clear();
        r.payload.reported.pop();
        assert!(!r.bitmap_check().passed);
    }

    #[test]
    fn bitmap_must_mark_exactly_the_proofs_never_received_as_not_received() {
        let mut run = run(None, 600_000);
        let (row, vn) = run.find(false, None);
        run.set_verdict(row, vn, Verdict::NotReceived);
        assert!(!run.bitmap_check().passed);
        run.set_verdict(row, vn, Verdict::NotSelected);
        assert!(run.bitmap_check().passed);
        let gone = run.records.remove(row);
        assert!(!run.bitmap_check().passed, "{} still has verdicts 0..2", gone.key);
    }

    #[test]
    fn bitmap_of_another_registration_is_caught() {
        let mut run = run(None, 600_000);
        run.plan.registration.query_id = QueryId([1; 16]);
        assert!(!run.bitmap_check().passed);
    }

    #[test]
    fn genesis_record_must_match_chain_roster_and_parameters() {
        let run = run(None, 1_000_000);
        let record = GenesisRecord::new(CHAIN, &run.roster, &run.params);
        assert!(check_genesis_record(&record, CHAIN, &run.roster, &run.params).passed);
        assert!(!check_genesis_record(&record, "other", &run.roster, &run.params).passed);
        let mut roster = run.roster.clone();
        roster.dps.pop();
        assert!(!check_genesis_record(&record, CHAIN, &roster, &run.params).passed);
        let params = Params { skip_base: 3, ..run.params.clone() };
        assert!(!check_genesis_record(&record, CHAIN, &run.roster, &params).passed);
    }

    #[test]
    fn reports_serialize_to_json() {
        let check = Check::pass("header", "ok");
        let json = serde_json::to_value(&check).expect("json");
        assert_eq!(json["passed"], true);
        let block = MemChain::build(1, &params(2, 4)).blocks[1].clone();
        let summary = serde_json::to_value(BlockSummary::from(&block)).expect("json");
        assert_eq!(summary["index"], 1);
        assert_eq!(summary["hash"], hex::encode(block.hash()));
    }
}
