//! What the light client reports: each check with its outcome, the verified header, the
//! skipblocks and hops it went through. Every report serializes to the `--json` output.

use lemal_contracts::state::{SkipBlock, VerdictRecord};
use serde::Serialize;

use super::trust::RootReport;

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
    pub(super) fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Self {
        Check { name: name.into(), passed, detail: detail.into() }
    }

    pub(super) fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, true, detail)
    }

    pub(super) fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::light::testkit::{params, MemChain};

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
