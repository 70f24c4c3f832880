//! Why a transaction is rejected: one enum, one stable numeric code per variant.
//!
//! The codes are part of the public interface (CheckTx/FinalizeBlock results, the README's table)
//! and never change meaning. 0 is success in ABCI.

use lemal_contracts::error::DecodeError;
use thiserror::Error;

/// A rejected transaction: stable code plus a readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// 1: the bytes are not a well-formed transaction.
    #[error("malformed transaction: {0}")]
    Decode(#[from] DecodeError),
    /// 2: larger than the chain's `max_tx_bytes`.
    #[error("transaction of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// 3: signed for another chain.
    #[error("transaction is for chain {got:?}, this is {expected:?}")]
    WrongChain {
        /// The chain id in the transaction.
        got: String,
        /// This chain's id.
        expected: String,
    },
    /// 4: the signer is not in the roster.
    #[error("signer {0} is not in the roster")]
    UnknownSigner(String),
    /// 5: the signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// 10: the query id is already registered.
    #[error("query {0} is already registered")]
    QueryExists(String),
    /// 11: no such query.
    #[error("unknown query {0}")]
    UnknownQuery(String),
    /// 12: the signer takes no part in the query in that role.
    #[error("{0}")]
    NotParticipant(String),
    /// 13: the query references an entity that is not in the roster.
    #[error("query references {0}, which is not in the roster")]
    UnknownEntity(String),
    /// 14: the querier's signature over the registration's terms does not verify.
    #[error("querier signature over the registration: {0}")]
    BadQuerierKey(String),
    /// 15: a query parameter exceeds the chain's limits.
    #[error("{0}")]
    LimitExceeded(String),
    /// 16: the registrar already has the chain's maximum of open queries.
    #[error("{registrar} already has {open} open queries, the chain's maximum")]
    TooManyOpenQueries {
        /// The registering computing node.
        registrar: String,
        /// Its open queries.
        open: u32,
    },
    /// 17: the sampling threshold is below the chain's `min_threshold_ppm`.
    #[error("threshold {got} ppm is below the chain's minimum {min} ppm")]
    ThresholdTooLow {
        /// The query's threshold.
        got: u32,
        /// The chain's minimum.
        min: u32,
    },
    /// 18: an entity is faulty or removed, and may take no part in new work.
    #[error("{entity} is {standing} and may take no part in new work")]
    NotInGoodStanding {
        /// The entity.
        entity: String,
        /// `faulty` or `removed`.
        standing: &'static str,
    },
    /// 20: the query's proof phase is over.
    #[error("query {0} no longer accepts proofs")]
    ProofPhaseOver(String),
    /// 21: the proof is not in the query's expected set (surplus or wrong index).
    #[error("proof {0} is not expected by its query")]
    UnexpectedProof(String),
    /// 22: the proof key is already used.
    #[error("proof {0} was already submitted")]
    DuplicateProof(String),
    /// 23: the statement outputs have the wrong shape.
    #[error("{0}")]
    BadOutputs(String),
    /// 24: a referenced input is not on the ledger.
    #[error("input {0} is not on the ledger")]
    MissingInput(String),
    /// 25: a referenced input is not one this proof may use.
    #[error("input {0} is not an input of this proof")]
    InvalidInput(String),
    /// 26: the proof bytes do not have the exact length the query fixes for its kind.
    #[error("proof {key} has {got} bytes, its statement fixes {expected}")]
    BadProofLength {
        /// The proof key.
        key: String,
        /// Its length.
        got: usize,
        /// The length the query's statement shape fixes.
        expected: usize,
    },
    /// 27: an aggregation leaves out an allowed input that is on the ledger, or a missing one
    /// before the data-provider deadline.
    #[error("incomplete aggregation: {0}")]
    IncompleteAggregation(String),
    /// 30: the query is not accepting bitmap commits (proof phase running, or finalized).
    #[error("query {0} is not accepting bitmap commits")]
    NotCommitting(String),
    /// 31: this verifying node already committed its bitmap for the query.
    #[error("{0} already committed a bitmap for this query")]
    DuplicateBitmap(String),
    /// 32: the VRF proof does not verify.
    #[error("VRF: {0}")]
    BadVrf(String),
    /// 33: the verdicts contradict the node's selection or the received set.
    #[error("verdicts: {0}")]
    BadVerdicts(String),
    /// 34: the bitmap judged another proof set.
    #[error("bitmap judged proof set {got}, the ledger's is {expected}")]
    WrongProofSet {
        /// The digest in the commit.
        got: String,
        /// The ledger's digest.
        expected: String,
    },
    /// 35: the verifying node is not among the query's verifiers (it was faulty, removed or
    /// added after the query's proof phase ended).
    #[error("{0} is not among this query's verifiers")]
    NotAVerifier(String),
    /// 50: the challenged proof is not on the ledger.
    #[error("proof {0} is not on the ledger")]
    UnknownProof(String),
    /// 51: the challenged proof's query has no skipblock yet.
    #[error("query {0} is not finalized yet; challenge its proofs once its block is appended")]
    QueryNotFinal(String),
    /// 52: the proof was settled by an earlier challenge.
    #[error("proof {key} was settled at skipblock {block}")]
    AlreadySettled {
        /// The proof key.
        key: String,
        /// The verdict's skipblock.
        block: u64,
    },
    /// 53: the signer filed its quota of unfounded challenges.
    #[error("{signer} filed {count} unfounded challenges, the chain's maximum")]
    ChallengeQuota {
        /// The challenger.
        signer: String,
        /// Its unfounded challenges.
        count: u32,
    },
    /// 54: this block spent its challenge budget; the challenge fits a later block.
    #[error("this block spent {spent} of its challenge budget {budget}; retry in a later block")]
    ChallengeBudget {
        /// Cost spent so far in the block.
        spent: u64,
        /// The chain's budget per block.
        budget: u64,
    },
    /// 60: the roster change cannot apply to the current roster.
    #[error("roster change: {0}")]
    BadRosterChange(String),
    /// 61: no such roster proposal.
    #[error("unknown roster proposal {0}")]
    UnknownProposal(u64),
    /// 62: the proposal is applied, failed or expired.
    #[error("roster proposal {id} is {state}")]
    ProposalClosed {
        /// The proposal's id.
        id: u64,
        /// `applied`, `failed` or `expired`.
        state: &'static str,
    },
    /// 63: this verifying node already approved the proposal.
    #[error("{signer} already approved roster proposal {id}")]
    AlreadyApproved {
        /// The approving node.
        signer: String,
        /// The proposal's id.
        id: u64,
    },
    /// 64: the proposer's previous proposal is still open.
    #[error("{signer}'s roster proposal {id} is still open")]
    ProposalPending {
        /// The proposer.
        signer: String,
        /// Its open proposal.
        id: u64,
    },
    /// 40: the node has not received its genesis yet (CheckTx before InitChain); retry later.
    #[error("the node has not initialised its chain yet")]
    NotReady,
}

impl TxError {
    /// The stable ABCI code.
    pub fn code(&self) -> u32 {
        match self {
            TxError::Decode(_) => 1,
            TxError::TooLarge { .. } => 2,
            TxError::WrongChain { .. } => 3,
            TxError::UnknownSigner(_) => 4,
            TxError::BadSignature(_) => 5,
            TxError::QueryExists(_) => 10,
            TxError::UnknownQuery(_) => 11,
            TxError::NotParticipant(_) => 12,
            TxError::UnknownEntity(_) => 13,
            TxError::BadQuerierKey(_) => 14,
            TxError::LimitExceeded(_) => 15,
            TxError::TooManyOpenQueries { .. } => 16,
            TxError::ThresholdTooLow { .. } => 17,
            TxError::NotInGoodStanding { .. } => 18,
            TxError::ProofPhaseOver(_) => 20,
            TxError::UnexpectedProof(_) => 21,
            TxError::DuplicateProof(_) => 22,
            TxError::BadOutputs(_) => 23,
            TxError::MissingInput(_) => 24,
            TxError::InvalidInput(_) => 25,
            TxError::BadProofLength { .. } => 26,
            TxError::IncompleteAggregation(_) => 27,
            TxError::NotCommitting(_) => 30,
            TxError::DuplicateBitmap(_) => 31,
            TxError::BadVrf(_) => 32,
            TxError::BadVerdicts(_) => 33,
            TxError::WrongProofSet { .. } => 34,
            TxError::NotAVerifier(_) => 35,
            TxError::NotReady => 40,
            TxError::UnknownProof(_) => 50,
            TxError::QueryNotFinal(_) => 51,
            TxError::AlreadySettled { .. } => 52,
            TxError::ChallengeQuota { .. } => 53,
            TxError::ChallengeBudget { .. } => 54,
            TxError::BadRosterChange(_) => 60,
            TxError::UnknownProposal(_) => 61,
            TxError::ProposalClosed { .. } => 62,
            TxError::AlreadyApproved { .. } => 63,
            TxError::ProposalPending { .. } => 64,
        }
    }

    /// The codespace reported with every code.
    pub const CODESPACE: &'static str = "lemal";
}

/// The code table as (code, name, meaning), for documentation and the CLI; it lives in
/// `lemal-contracts` so that clients name the codes the same way.
pub use lemal_contracts::codes::TABLE;

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<TxError> {
        let s = || "x".to_string();
        vec![
            TxError::Decode(DecodeError::InvalidPoint),
            TxError::TooLarge { size: 2, max: 1 },
            TxError::WrongChain { got: s(), expected: s() },
            TxError::UnknownSigner(s()),
            TxError::BadSignature(s()),
            TxError::QueryExists(s()),
            TxError::UnknownQuery(s()),
            TxError::NotParticipant(s()),
            TxError::UnknownEntity(s()),
            TxError::BadQuerierKey(s()),
            TxError::LimitExceeded(s()),
            TxError::TooManyOpenQueries { registrar: s(), open: 1 },
            TxError::ThresholdTooLow { got: 1, min: 2 },
            TxError::NotInGoodStanding { entity: s(), standing: "faulty" },
            TxError::ProofPhaseOver(s()),
            TxError::UnexpectedProof(s()),
            TxError::DuplicateProof(s()),
            TxError::BadOutputs(s()),
            TxError::MissingInput(s()),
            TxError::InvalidInput(s()),
            TxError::BadProofLength { key: s(), got: 2, expected: 1 },
            TxError::IncompleteAggregation(s()),
            TxError::NotCommitting(s()),
            TxError::DuplicateBitmap(s()),
            TxError::BadVrf(s()),
            TxError::BadVerdicts(s()),
            TxError::WrongProofSet { got: s(), expected: s() },
            TxError::NotAVerifier(s()),
            TxError::NotReady,
            TxError::UnknownProof(s()),
            TxError::QueryNotFinal(s()),
            TxError::AlreadySettled { key: s(), block: 1 },
            TxError::ChallengeQuota { signer: s(), count: 1 },
            TxError::ChallengeBudget { spent: 1, budget: 1 },
            TxError::BadRosterChange(s()),
            TxError::UnknownProposal(1),
            TxError::ProposalClosed { id: 1, state: "applied" },
            TxError::AlreadyApproved { signer: s(), id: 1 },
            TxError::ProposalPending { signer: s(), id: 1 },
        ]
    }

    #[test]
    fn codes_are_distinct_nonzero_and_tabled() {
        let codes: Vec<u32> = every_variant().iter().map(TxError::code).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len(), "two variants share a code");
        assert!(!codes.contains(&0), "0 is ABCI success");
        let tabled: Vec<u32> = TABLE.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(sorted, tabled, "TABLE lists exactly the variants' codes, in order");
    }

    #[test]
    fn the_readme_lists_the_same_codes_and_names() {
        let readme = include_str!("../../README.md");
        for (code, name, _) in TABLE {
            let row = format!("| {code} | {name} |");
            assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        }
    }
}
