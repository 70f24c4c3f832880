//! Signing and sending one transaction for the commands that act as a party of the localnet
//! (`lemal challenge`, `lemal audit --challenge`, `lemal roster propose | approve`): the signer's
//! key from the keyring under `--home`, checked against the chain's roster; broadcast; the
//! outcome in its block; and the name of a rejection code.

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use lemal_contracts::ids::EntityId;
use lemal_contracts::sig::SigningKey;
use lemal_contracts::tx::{Tx, TxBody};
use serde::Serialize;

use super::Global;
use crate::localnet::{self, Layout};
use crate::rpc::{Node, RpcError};

/// Code 52: the challenged proof was settled by an earlier challenge.
pub(super) const ALREADY_SETTLED: u32 = 52;
/// Code 54: the block spent its challenge budget; the challenge fits a later block.
pub(super) const CHALLENGE_BUDGET: u32 = 54;

/// The name of a rejection code (`unknown` for a code this client does not know).
pub(super) fn code_name(code: u32) -> &'static str {
    lemal_contracts::codes::name(code)
}

/// A roster member acting with its key from the localnet's keyring.
pub(super) struct Signer {
    /// Who signs.
    pub(super) entity: EntityId,
    key: SigningKey,
    chain_id: String,
}

impl Signer {
    /// The key of `entity` from the keyring under `--home`, checked against the roster of the
    /// chain `node` serves (a keyring of another network would only earn bad signatures).
    pub(super) fn load(global: &Global, node: &Node, entity: EntityId) -> Result<Signer> {
        let layout = Layout::new(&global.home)?;
        let keys = localnet::keyring(&layout).context("reading the localnet's key files")?;
        let key = keys.signing_key(entity).cloned().ok_or_else(|| {
            anyhow!("the keyring under {} holds no key of {entity}", layout.home().display())
        })?;
        let status =
            node.status().with_context(|| format!("is a node running at {}?", node.url()))?;
        let roster = node.roster().context("reading the roster")?;
        let listed = roster
            .signing_key(entity)
            .ok_or_else(|| anyhow!("{entity} is not in the roster of {}", status.chain_id))?;
        ensure!(
            *listed == key.verifying_key(),
            "the key of {entity} under {} is not its key in the roster of {}: is --home the home \
             of the localnet behind --node?",
            layout.home().display(),
            status.chain_id
        );
        Ok(Signer { entity, key, chain_id: status.chain_id })
    }

    /// Sign `body`, broadcast it and wait up to `timeout` for its block: accepted, or refused
    /// (by CheckTx or in its block) with the application's code.
    pub(super) fn submit(&self, node: &Node, body: TxBody, timeout: Duration) -> Result<Submitted> {
        let what = format!("the {:?} transaction of {}", body.message_kind(), self.entity);
        let tx = Tx::sign(&self.chain_id, self.entity, body, &self.key, rand_core::OsRng);
        let hash = match node.broadcast(&tx) {
            Ok(hash) => hash,
            Err(RpcError::Rejected { code, log }) => {
                return Ok(Submitted::Rejected(Rejection::new(code, log, None)))
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("broadcasting {what} to {}", node.url())))
            }
        };
        let outcome = node.wait_tx(hash, timeout).with_context(|| format!("waiting for {what}"))?;
        Ok(if outcome.code == 0 {
            Submitted::Accepted { hash: hex::encode(hash), height: outcome.height }
        } else {
            Submitted::Rejected(Rejection::new(outcome.code, outcome.log, Some(outcome.height)))
        })
    }
}

/// What became of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Submitted {
    /// Accepted in the block at `height`.
    Accepted {
        /// The transaction hash (hex).
        hash: String,
        /// The CometBFT height of its block.
        height: u64,
    },
    /// Refused.
    Rejected(Rejection),
}

/// A transaction the application refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Rejection {
    /// The application's code.
    pub(super) code: u32,
    /// Its name in the code table.
    pub(super) name: &'static str,
    /// The application's reason.
    pub(super) log: String,
    /// The block that refused it; none when CheckTx did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) height: Option<u64>,
}

impl Rejection {
    pub(super) fn new(code: u32, log: String, height: Option<u64>) -> Self {
        Rejection { code, name: code_name(code), log, height }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused with code {} ({})", self.code, self.name)?;
        match self.height {
            Some(h) => write!(f, " in block {h}")?,
            None => write!(f, " by CheckTx")?,
        }
        write!(f, ": {}", self.log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_name_their_code_and_where_they_were_refused() {
        let r = Rejection::new(53, "vn-0 filed 3 unfounded challenges".into(), None);
        assert_eq!(
            r.to_string(),
            "refused with code 53 (challenge-quota) by CheckTx: vn-0 filed 3 unfounded challenges"
        );
        let r = Rejection::new(62, "roster proposal 1 is applied".into(), Some(40));
        assert!(r.to_string().starts_with("refused with code 62 (proposal-closed) in block 40"));
        assert_eq!(code_name(999), "unknown");
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["name"], "proposal-closed");
        assert_eq!(json["height"], 40);
    }

    #[test]
    fn the_code_table_is_sorted_without_duplicates() {
        assert_eq!(code_name(ALREADY_SETTLED), "already-settled");
        assert_eq!(code_name(CHALLENGE_BUDGET), "challenge-budget");
    }
}
