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
use lemal_contracts::group::from_borsh;
use lemal_contracts::ids::{ProofKey, QueryId};
use lemal_contracts::query_path::{Lookup, QueryPath};
use lemal_contracts::state::{
    BlockPayload, ChallengeVerdict, Params, ProofRecord, QueryRecord, Roster, SkipBlock,
    VerdictRecord,
};

use crate::rpc::{Answer, Node};

mod audit;
mod checks;
mod error;
mod follow;
mod report;
mod trust;

pub use audit::{
    audit, audit_proofs, AuditReport, Disagreement, Findings, ProofFailure, ProofFinding,
    VerifierFinding, VrfProblem, VrfStatus,
};
pub use checks::{
    check_answer, check_bitmap, check_coverage, check_genesis_record, check_header, check_links,
    check_proofs_root, check_roster_change, walk_forward, SignedPower, SkipchainState,
};
pub use error::{LightError, Mismatch, Missing, TrustError};
pub use follow::{follow, FollowOptions, Followed, HeaderSource, TrustedState, MAX_STEPS};
pub use report::{
    AncestryReport, BlockSummary, Check, HeaderReport, Hop, VerdictSummary, VerifyReport,
};
use trust::hash_bytes;
pub use trust::{
    check_known_genesis, check_pinned_header, check_pinned_set, GenesisError, GenesisInfo,
    KnownChain, KnownChains, KnownRoot, RootReport, TrustKind, TrustRoot, TrustedValidators,
    ValidatorSetError,
};

/// The state keys values are proven under.
pub use lemal_contracts::keys as state_key;

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
    fn path(&self) -> QueryPath {
        match self {
            BlockRef::Latest => QueryPath::LatestBlock,
            BlockRef::Index(i) => QueryPath::Block(*i),
            BlockRef::Hash(h) => QueryPath::BlockByHash(*h),
            BlockRef::Query(q) => QueryPath::BlockOfQuery(*q),
        }
    }

    /// The key whose absence shows that the block does not exist: the block key itself, or the
    /// index key that would name it.
    fn lookup_key(&self) -> Vec<u8> {
        match self.path().lookup() {
            Lookup::Key(key) | Lookup::Indexed(key) | Lookup::List(key, _) => key,
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

    /// The proven value of a path stored under one state key, the key the path names.
    fn get_path<T: BorshDeserialize>(&self, path: QueryPath) -> Result<Option<T>, LightError> {
        let Lookup::Key(key) = path.lookup() else {
            return Err(LightError::Proof {
                path: path.to_string(),
                reason: "the path is not stored under one state key".into(),
            });
        };
        self.get(&path.to_string(), &key)
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
        self.get_path(QueryPath::Params)?.ok_or(LightError::NotFound(Missing::Params))
    }

    /// The proven roster.
    pub fn roster(&self) -> Result<Roster, LightError> {
        self.get_path(QueryPath::Roster)?.ok_or(LightError::NotFound(Missing::Roster))
    }

    /// The proven roster as genesis set it (block 0 records its hash).
    pub fn genesis_roster(&self) -> Result<Roster, LightError> {
        self.get_path(QueryPath::GenesisRoster)?.ok_or(LightError::NotFound(Missing::GenesisRoster))
    }

    /// A proven accepted proof.
    pub fn proof_record(&self, key: &ProofKey) -> Result<Option<ProofRecord>, LightError> {
        self.get_path(QueryPath::Proof(*key))
    }

    /// The verdicts of a query's challenged proofs, each proven by its own skipblock: the list
    /// comes unproven from the node, and every entry must equal the verdict block it names
    /// (a node can leave verdicts out of the list, not forge one).
    pub fn verdicts(&self, id: &QueryId) -> Result<Vec<VerdictRecord>, LightError> {
        let records: Vec<VerdictRecord> =
            self.node.list(&QueryPath::Verdicts(*id, 0).to_string())?;
        for r in &records {
            let block = self.block(BlockRef::Index(r.block))?;
            match &block.payload {
                BlockPayload::Verdict(v) if *v == r.verdict && v.proof.query == *id => {}
                _ => {
                    return Err(Mismatch::Verdict { proof: r.verdict.proof, block: r.block }.into())
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
            audit::reverify(&self.header.chain_id, roster, &registration, &record, &ledger);
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
        self.get_path(QueryPath::Query(*id))?.ok_or(LightError::NotFound(Missing::Query(*id)))
    }

    /// A proven skipblock: the value is proven under the block key of its own index, is the
    /// block asked for, and, for the latest block, its successor is proven absent.
    pub fn block(&self, which: BlockRef) -> Result<SkipBlock, LightError> {
        let path = which.path().to_string();
        let answer = self.query(&path)?;
        let Some(bytes) = &answer.value else {
            check_answer(&self.app_hash, &path, &which.lookup_key(), &answer)?;
            return Err(LightError::NotFound(Missing::Block(which)));
        };
        let block: SkipBlock = from_borsh(bytes)
            .map_err(|e| LightError::Decode { what: which.to_string(), reason: e.to_string() })?;
        check_answer(&self.app_hash, &path, &state_key::block(block.index), &answer)?;
        if !which.matches(&block) {
            let (index, hash) = (block.index, block.hash());
            return Err(Mismatch::OtherBlock { asked: which, index, hash }.into());
        }
        if which == BlockRef::Latest {
            let next = block.index.checked_add(1).ok_or(Mismatch::LastIndex)?;
            if SkipchainState::block(self, next)?.is_some() {
                return Err(Mismatch::NotLatest { latest: block.index, next }.into());
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
            Err(LightError::NotFound(Missing::Block(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn forward_links(&self, index: u64) -> Result<Vec<[u8; 32]>, LightError> {
        Ok(self.get_path(QueryPath::Forward(index))?.unwrap_or_default())
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
            return Err(Mismatch::NotGenesis.into());
        };
        let check = check_genesis_record(
            record,
            &client.header().chain_id,
            &client.genesis_roster()?,
            &params,
        );
        if !check.passed {
            return Err(Mismatch::GenesisRecord { detail: check.detail }.into());
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

#[cfg(test)]
mod testkit;
