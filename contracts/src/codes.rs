//! The rejection codes of transactions, by number: what the application answers in CheckTx and
//! FinalizeBlock (codespace `lemal`), shared with clients so that both name them the same way.
//! The application's `TxError` maps each of its variants to one of these codes; its tests check
//! that this table lists exactly those codes.

/// Every code as (code, name, meaning), in increasing order.
pub const TABLE: &[(u32, &str, &str)] = &[
    (1, "decode", "malformed transaction (bad encoding, non-canonical point, bad length)"),
    (2, "too-large", "transaction larger than the chain's max_tx_bytes"),
    (3, "wrong-chain", "signed for another chain id"),
    (4, "unknown-signer", "signer not in the roster"),
    (5, "bad-signature", "signature does not verify"),
    (10, "query-exists", "query id already registered"),
    (11, "unknown-query", "no such query"),
    (12, "not-participant", "signer takes no part in the query in that role"),
    (13, "unknown-entity", "query names an entity that is not in the roster"),
    (14, "bad-querier-key", "querier's signature over the registration terms does not verify"),
    (15, "limit-exceeded", "query parameter beyond the chain's limits"),
    (16, "too-many-open-queries", "registrar already has max_open_queries_per_cn open queries"),
    (17, "threshold-too-low", "sampling threshold below the chain's min_threshold_ppm"),
    (18, "not-in-good-standing", "an entity of the transaction or query is faulty or removed"),
    (20, "proof-phase-over", "proof arrived after the query's proof phase"),
    (21, "unexpected-proof", "proof not in the query's expected set"),
    (22, "duplicate-proof", "proof key already used"),
    (23, "bad-outputs", "statement outputs of the wrong shape"),
    (24, "missing-input", "referenced input not on the ledger"),
    (25, "invalid-input", "referenced input not allowed for this proof"),
    (26, "bad-proof-length", "proof bytes not of the exact length the query fixes for the kind"),
    (
        27,
        "incomplete-aggregation",
        "aggregation leaves out an input on the ledger, or a missing one before the DP deadline",
    ),
    (30, "not-committing", "query not accepting bitmap commits"),
    (31, "duplicate-bitmap", "verifying node already committed for this query"),
    (32, "bad-vrf", "VRF proof does not verify"),
    (33, "bad-verdicts", "verdicts contradict the selection or the received set"),
    (34, "wrong-proof-set", "bitmap judged a different proof set"),
    (35, "not-a-verifier", "verifying node not among the query's verifiers"),
    (40, "not-ready", "the node has not initialised its chain yet; retry later"),
    (50, "unknown-proof", "challenged proof not on the ledger"),
    (51, "query-not-final", "challenged proof's query has no skipblock yet"),
    (52, "already-settled", "proof already settled by an earlier challenge"),
    (53, "challenge-quota", "signer filed max_unfounded_challenges unfounded challenges"),
    (54, "challenge-budget", "block spent its challenge budget; retry in a later block"),
    (60, "bad-roster-change", "roster change cannot apply to the current roster"),
    (61, "unknown-proposal", "no such roster proposal"),
    (62, "proposal-closed", "roster proposal applied, failed or expired"),
    (63, "already-approved", "verifying node already approved the proposal"),
    (64, "proposal-pending", "proposer's previous proposal is still open"),
];

/// The name of a code (`"unknown"` for a code not in the table).
pub fn name(code: u32) -> &'static str {
    TABLE.iter().find(|(c, _, _)| *c == code).map_or("unknown", |(_, name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_increase_and_have_names() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(name(52), "already-settled");
        assert_eq!(name(999), "unknown");
    }
}
