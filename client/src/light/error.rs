//! The light client's errors: [`LightError`] says at which step verification stopped, and its
//! payloads name each case with the ids involved ([`TrustError`] for a root that cannot be used,
//! [`Missing`] for what the state proves absent, [`Mismatch`] for a served value that
//! contradicts what was asked for or what it links to).
//!
//! [`LightError::is_inconclusive`] splits them for the CLI's exit codes: a check that could not
//! run (exit 3) or one that ran and found a fault (exit 1).

use std::fmt;
use std::path::PathBuf;

use lemal_contracts::ids::{ProofKey, QueryId};

use super::trust::{GenesisError, TrustKind, ValidatorSetError};
use super::BlockRef;
use crate::rpc::RpcError;

/// Why light verification could not be carried out, or failed at a step everything after it
/// depends on.
#[derive(Debug, thiserror::Error)]
pub enum LightError {
    /// Talking to the node failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The trust root cannot be used.
    #[error("trust root: {0}")]
    Trust(TrustError),
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
    NotFound(Missing),
    /// A proven value does not decode.
    #[error("{what} does not decode: {reason}")]
    Decode {
        /// What was decoded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A served value contradicts what was asked for or what it links to.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
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

impl From<TrustError> for LightError {
    fn from(e: TrustError) -> Self {
        LightError::Trust(e)
    }
}

/// Why a trust root cannot be used: what it would anchor cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A genesis file cannot be read.
    #[error("cannot read genesis file {}: {error}", path.display())]
    UnreadableGenesis {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A genesis document is refused.
    #[error("{origin}: {error}")]
    Genesis {
        /// Where it came from (`genesis file PATH`, `the genesis served by URL`).
        origin: String,
        /// What is wrong with it.
        error: GenesisError,
    },
    /// A `--trusted-header` pin is not `HEIGHT:HASH`.
    #[error("trusted header {pin:?} is not HEIGHT:HASH")]
    HeaderPin {
        /// The pin as given.
        pin: String,
    },
    /// The height of a header pin is not a positive integer.
    #[error("trusted header height {height:?} is not a positive integer")]
    HeaderPinHeight {
        /// The height as given.
        height: String,
    },
    /// A pinned hash or fingerprint is not 64 hex digits.
    #[error("{kind} {text:?} is not 64 hex digits")]
    NotAHash {
        /// The root it pins.
        kind: TrustKind,
        /// The text as given.
        text: String,
    },
    /// The validator set the node serves, which a pinned hash or header is to be checked
    /// against, is not a usable set.
    #[error("the validator set served for height {height}: {error}")]
    ServedValidators {
        /// The height it was served for.
        height: u64,
        /// Why it is refused.
        error: ValidatorSetError,
    },
    /// The node's validator set is not the one a pinned hash names.
    #[error(
        "the node's validator set hashes to {}, not to the pinned {}",
        hex::encode(.served),
        hex::encode(.pinned)
    )]
    ValidatorsHashMismatch {
        /// The pinned hash.
        pinned: [u8; 32],
        /// The served set's hash.
        served: [u8; 32],
    },
    /// The trusted state is not before the header to verify, so nothing leads from it there.
    #[error(
        "the trusted state is at height {trusted}, not before the header {target} to verify; \
         pin an older header"
    )]
    StateNotBefore {
        /// The trusted height.
        trusted: u64,
        /// The height of the header to verify.
        target: u64,
    },
    /// The known-chains file cannot be read.
    #[error("cannot read known-chains file {}: {error}", path.display())]
    UnreadableKnownChains {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The known-chains file is not TOML of the expected shape.
    #[error("{} is not a known-chains file: {error}", path.display())]
    NotKnownChains {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        error: toml::de::Error,
    },
    /// A header root in the known-chains file has no height.
    #[error("{}: chain {chain_id}: a header root without a height", path.display())]
    KnownHeaderWithoutHeight {
        /// The file.
        path: PathBuf,
        /// The chain recorded so.
        chain_id: String,
    },
    /// The known-chains file cannot be written.
    #[error("cannot write {}: {error}", path.display())]
    UnwritableKnownChains {
        /// The file (or its folder).
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The known chains do not encode as TOML.
    #[error("cannot encode the known chains for {}: {error}", path.display())]
    KnownChainsEncoding {
        /// The file they were to be written to.
        path: PathBuf,
        /// Why.
        error: toml::ser::Error,
    },
}

/// What the state proves absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The chain parameters.
    Params,
    /// The roster.
    Roster,
    /// The roster as genesis set it.
    GenesisRoster,
    /// A query's registration.
    Query(QueryId),
    /// A skipblock.
    Block(BlockRef),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Params => f.write_str("the chain parameters"),
            Missing::Roster => f.write_str("the roster"),
            Missing::GenesisRoster => f.write_str("the genesis roster"),
            Missing::Query(id) => write!(f, "query {id}"),
            Missing::Block(which) => write!(f, "{which}"),
        }
    }
}

/// How a served value contradicts what was asked for or what it links to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The node proved another block than the one asked for.
    #[error("asked for {asked}, the node proved block {index} ({})", hex::encode(.hash))]
    OtherBlock {
        /// The block asked for.
        asked: BlockRef,
        /// The index of the block proven.
        index: u64,
        /// Its hash.
        hash: [u8; 32],
    },
    /// The block served as the latest has a successor.
    #[error("block {latest} was served as the latest, but block {next} exists")]
    NotLatest {
        /// The block served as the latest.
        latest: u64,
        /// Its successor, proven to exist.
        next: u64,
    },
    /// The latest block has the last representable index: no successor could be proven absent.
    #[error("the latest block has the last representable index")]
    LastIndex,
    /// A verdict the node lists for a query is not the one its skipblock records.
    #[error("the verdict on {proof} does not match skipblock {block}")]
    Verdict {
        /// The challenged proof the listed verdict is on.
        proof: ProofKey,
        /// The skipblock it names.
        block: u64,
    },
    /// The block of a query is not a query block.
    #[error("the block of query {query} records no query")]
    NotQueryBlock {
        /// The query.
        query: QueryId,
    },
    /// Block 0 is not a genesis block.
    #[error("block 0 is not a genesis block")]
    NotGenesis,
    /// Block 0's genesis record contradicts the proven chain id, roster or parameters.
    #[error("block 0: {detail}")]
    GenesisRecord {
        /// What differs, as the genesis-record check says it.
        detail: String,
    },
    /// A forward link leads to a block that is not later.
    #[error("forward link {level} of block {block} leads nowhere")]
    ForwardLinkBackward {
        /// The block holding the link.
        block: u64,
        /// The link's level.
        level: usize,
    },
    /// A forward link leads to a block that does not exist.
    #[error("forward link {level} of block {block} points to block {to}, which does not exist")]
    ForwardLinkDangling {
        /// The block holding the link.
        block: u64,
        /// The link's level.
        level: usize,
        /// The block it leads to.
        to: u64,
    },
    /// A forward link names another hash than the block it leads to has.
    #[error(
        "forward link {level} of block {block} is {}, but block {to} hashes to {}",
        hex::encode(.link),
        hex::encode(.found)
    )]
    ForwardLinkHash {
        /// The block holding the link.
        block: u64,
        /// The link's level.
        level: usize,
        /// The block it leads to.
        to: u64,
        /// The hash the link names.
        link: [u8; 32],
        /// The hash of the block served at `to`.
        found: [u8; 32],
    },
    /// The block a forward link leads to does not link back at the same level.
    #[error(
        "block {to} is reached by forward link {level} of block {block}, but its back link \
         {level} does not point there"
    )]
    NoBackLink {
        /// The block holding the forward link.
        block: u64,
        /// The link's level.
        level: usize,
        /// The block it leads to.
        to: u64,
    },
    /// The walk to the latest block stops at a block without forward links that has a
    /// successor.
    #[error("block {block} has no forward link, yet block {next} exists")]
    WalkStopsEarly {
        /// The block without forward links.
        block: u64,
        /// Its successor, proven to exist.
        next: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust_errors() -> Vec<TrustError> {
        let path = PathBuf::from("/nowhere/genesis.json");
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        vec![
            TrustError::UnreadableGenesis { path: path.clone(), error: io() },
            TrustError::Genesis { origin: "genesis file g".into(), error: GenesisError::NoChainId },
            TrustError::HeaderPin { pin: "42".into() },
            TrustError::HeaderPinHeight { height: "0".into() },
            TrustError::NotAHash { kind: TrustKind::ValidatorsHash, text: "abc".into() },
            TrustError::ServedValidators { height: 3, error: ValidatorSetError::Empty },
            TrustError::ValidatorsHashMismatch { pinned: [1; 32], served: [2; 32] },
            TrustError::StateNotBefore { trusted: 5, target: 5 },
            TrustError::UnreadableKnownChains { path: path.clone(), error: io() },
            TrustError::KnownHeaderWithoutHeight { path: path.clone(), chain_id: "c".into() },
            TrustError::UnwritableKnownChains { path, error: io() },
        ]
    }

    fn mismatches() -> Vec<Mismatch> {
        let query = QueryId([7; 16]);
        vec![
            Mismatch::OtherBlock { asked: BlockRef::Index(3), index: 4, hash: [4; 32] },
            Mismatch::NotLatest { latest: 3, next: 4 },
            Mismatch::LastIndex,
            Mismatch::NotQueryBlock { query },
            Mismatch::NotGenesis,
            Mismatch::GenesisRecord { detail: "chain id c, expected d".into() },
            Mismatch::ForwardLinkBackward { block: 4, level: 1 },
            Mismatch::ForwardLinkDangling { block: 4, level: 1, to: 6 },
            Mismatch::ForwardLinkHash { block: 4, level: 1, to: 6, link: [1; 32], found: [2; 32] },
            Mismatch::NoBackLink { block: 4, level: 1, to: 6 },
            Mismatch::WalkStopsEarly { block: 4, next: 5 },
        ]
    }

    #[test]
    fn an_unusable_trust_root_is_inconclusive() {
        for e in trust_errors() {
            let e = LightError::from(e);
            assert!(e.is_inconclusive(), "{e}");
            assert!(e.to_string().starts_with("trust root: "), "{e}");
        }
    }

    #[test]
    fn a_proven_absence_or_a_contradiction_is_a_fault() {
        let absent = [
            Missing::Params,
            Missing::Roster,
            Missing::GenesisRoster,
            Missing::Query(QueryId([7; 16])),
            Missing::Block(BlockRef::Index(9)),
        ];
        for m in absent {
            let e = LightError::NotFound(m);
            assert!(!e.is_inconclusive(), "{e}");
            assert!(e.to_string().ends_with("does not exist (absence proven)"), "{e}");
        }
        for m in mismatches() {
            let e = LightError::from(m);
            assert!(!e.is_inconclusive(), "{e}");
        }
    }

    #[test]
    fn messages_name_the_blocks_and_hashes_involved() {
        let e = LightError::from(Mismatch::ForwardLinkHash {
            block: 4,
            level: 1,
            to: 6,
            link: [0xaa; 32],
            found: [0xbb; 32],
        })
        .to_string();
        assert!(e.contains("forward link 1 of block 4") && e.contains("block 6 hashes to"), "{e}");
        assert!(e.contains(&"aa".repeat(32)) && e.contains(&"bb".repeat(32)), "{e}");
        let e = LightError::from(TrustError::ValidatorsHashMismatch {
            pinned: [0xaa; 32],
            served: [0xbb; 32],
        })
        .to_string();
        assert_eq!(
            e,
            format!(
                "trust root: the node's validator set hashes to {}, not to the pinned {}",
                "bb".repeat(32),
                "aa".repeat(32)
            )
        );
        let e = LightError::NotFound(Missing::Query(QueryId([0x11; 16]))).to_string();
        assert_eq!(e, format!("query {} does not exist (absence proven)", "11".repeat(16)));
    }
}
