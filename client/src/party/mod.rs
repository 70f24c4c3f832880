//! The Lemal parties as long-running daemons, each with only its own keys: a data provider
//! ([`dp`]) answers the queries that name it from its own data, a computing node ([`cn`])
//! registers queriers' queries and aggregates, shuffles and key-switches as soon as its inputs
//! are on the ledger; the querier ([`querier`]) submits a query through a computing node and
//! reads its result.
//!
//! A daemon follows the chain block by block ([`follow`]) and keeps a journal in its state
//! folder ([`Journal`]): the last block it handled and every transaction it signed, written
//! before the transaction is broadcast. After a restart it reads the blocks it missed and
//! re-broadcasts a signed transaction that is not on the ledger byte for byte (one hash: the
//! mempool and the ledger hold it once); it never signs a second submission for a proof.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lemal_contracts::ids::{ProofKey, QueryId};
use lemal_contracts::tx::Tx;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::rpc::{Node, RpcError};

pub mod admission;
pub mod cn;
pub mod dp;
pub mod follow;
pub mod querier;

/// Blocks after which a signed transaction that is not on the ledger is broadcast again.
pub const RESEND_AFTER: u64 = 5;

/// Refusal code: an input is not on the ledger (yet).
const OUTDATED_MISSING_INPUT: u32 = 24;
/// Refusal code: an aggregation leaves out an input that is now on the ledger.
const OUTDATED_INCOMPLETE: u32 = 27;

/// What a daemon can fail on.
#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    /// The node could not be asked.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The state folder could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// `std::io::Error` → [`PartyError::Io`] naming `what`.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PartyError {
    let what = what.into();
    move |source| PartyError::Io { what, source }
}

/// One signed transaction, as journaled before it is broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The encoded transaction, hex.
    pub tx: String,
    /// Its hash, hex.
    pub hash: String,
    /// The height after which it was (last) broadcast.
    pub at: u64,
    /// CheckTx's refusal, if it refused it (then it is not broadcast again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The refusal's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_code: Option<u32>,
}

/// A daemon's durable memory: the last block handled and what it signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The chain it belongs to (a journal of another chain is refused).
    pub chain_id: String,
    /// The last block whose events were handled (0: none yet).
    pub height: u64,
    /// Signed submissions by proof key (`query/kind/creator/index`).
    pub sent: BTreeMap<String, Sent>,
    /// Queries declined, with the reason.
    pub declined: BTreeMap<String, String>,
    /// Open queries being worked on (a computing node's).
    #[serde(default)]
    pub watching: std::collections::BTreeSet<String>,
}

impl Journal {
    /// The journal's file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("journal.json")
    }

    /// Read the journal in `dir` (a fresh one when there is none); refuses one of another chain.
    pub fn load(dir: &Path, chain_id: &str) -> Result<Journal, PartyError> {
        let path = Self::path(dir);
        let journal = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Journal>(&bytes)
                .map_err(|e| PartyError::Config(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Journal { chain_id: chain_id.to_owned(), ..Journal::default() }
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        if journal.chain_id != chain_id {
            return Err(PartyError::Config(format!(
                "{} belongs to chain {:?}, the node serves {chain_id:?}: use another --state folder",
                path.display(),
                journal.chain_id
            )));
        }
        Ok(journal)
    }

    /// Write the journal to `dir` atomically (a temporary file renamed over the old one, both
    /// synced), so a crash leaves the old or the new journal, never half of one.
    pub fn save(&self, dir: &Path) -> Result<(), PartyError> {
        let path = Self::path(dir);
        let tmp = dir.join("journal.json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| PartyError::Config(format!("encoding the journal: {e}")))?;
        let mut f =
            std::fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
        f.write_all(text.as_bytes()).map_err(io(format!("writing {}", tmp.display())))?;
        f.sync_all().map_err(io(format!("syncing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("replacing {}", path.display())))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: the rename is durable once the folder is synced.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Forget what was signed for `query` (its proof phase is over).
    pub fn forget(&mut self, query: &QueryId) {
        let prefix = format!("{query}/");
        self.sent.retain(|k, _| !k.starts_with(&prefix));
    }
}

/// A daemon's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Blocks handled.
    pub blocks: Counter,
    /// Height of the last block handled.
    pub height: Gauge,
    /// Whether the websocket subscription is up (1) or not (0).
    pub subscribed: Gauge,
    /// Submissions signed and broadcast, by proof kind.
    pub submitted: Family<Vec<(String, String)>, Counter>,
    /// Submissions CheckTx refused, by code.
    pub refused: Family<Vec<(String, String)>, Counter>,
    /// Journaled transactions broadcast again.
    pub resent: Counter,
    /// Queries declined, by reason.
    pub declined: Family<Vec<(String, String)>, Counter>,
    /// Registrations asked for through the endpoint, by outcome.
    pub registrations: Family<Vec<(String, String)>, Counter>,
    /// Time to build a submission, by proof kind.
    pub proving: Family<Vec<(String, String)>, Histogram>,
}

fn proving_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Metrics {
    /// Fresh metrics registered in a new registry.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics {
            blocks: Counter::default(),
            height: Gauge::default(),
            subscribed: Gauge::default(),
            submitted: Family::default(),
            refused: Family::default(),
            resent: Counter::default(),
            declined: Family::default(),
            registrations: Family::default(),
            proving: Family::new_with_constructor(proving_histogram),
        };
        let mut r = Registry::default();
        r.register("lemal_party_blocks", "Blocks handled", m.blocks.clone());
        r.register("lemal_party_height", "Height of the last block handled", m.height.clone());
        r.register(
            "lemal_party_subscribed",
            "Whether the websocket subscription is up (1) or not (0)",
            m.subscribed.clone(),
        );
        r.register(
            "lemal_party_submissions",
            "Submissions signed and broadcast, by proof kind",
            m.submitted.clone(),
        );
        r.register(
            "lemal_party_submissions_refused",
            "Submissions CheckTx refused, by code",
            m.refused.clone(),
        );
        r.register(
            "lemal_party_resent",
            "Journaled transactions broadcast again",
            m.resent.clone(),
        );
        r.register("lemal_party_declined", "Queries declined, by reason", m.declined.clone());
        r.register(
            "lemal_cn_registrations",
            "Registrations asked for through the endpoint, by outcome",
            m.registrations.clone(),
        );
        r.register(
            "lemal_party_proving_seconds",
            "Time to build a submission, by proof kind",
            m.proving.clone(),
        );
        (m, r)
    }
}

impl Metrics {
    /// Record that a `kind` submission took from `start` until now to build.
    pub fn proved(&self, kind: lemal_contracts::ids::ProofKind, start: Instant) {
        self.proving.get_or_create(&label("kind", kind)).observe(start.elapsed().as_secs_f64());
    }
}

/// One label.
pub(crate) fn label(k: &str, v: impl ToString) -> Vec<(String, String)> {
    vec![(k.to_owned(), v.to_string())]
}

/// A daemon's connection to the chain, its journal and its metrics.
#[derive(Debug)]
pub struct Daemon {
    /// The chain id.
    pub chain_id: String,
    /// The node broadcast to and read from.
    pub node: Node,
    /// The state folder.
    pub dir: PathBuf,
    /// The journal.
    pub journal: Journal,
    /// The metrics.
    pub metrics: Metrics,
}

impl Daemon {
    /// Connect to the node at `rpc`, open (or create, mode 0700) the state folder `dir` and its
    /// journal.
    pub fn open(rpc: &str, dir: &Path, metrics: Metrics) -> Result<Daemon, PartyError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        let node = Node::connect(rpc)?;
        let chain_id = node.status()?.chain_id;
        let journal = Journal::load(dir, &chain_id)?;
        Ok(Daemon { chain_id, node, dir: dir.to_owned(), journal, metrics })
    }

    /// Whether `key` has a journaled transaction.
    pub fn signed(&self, key: &ProofKey) -> bool {
        self.journal.sent.contains_key(&key.to_string())
    }

    /// Forget the journaled transaction of `key` if CheckTx refused it because the ledger
    /// moved under it (an input arrived or is missing: codes 24 and 27), so that it is built
    /// again from the ledger as it is now. The refused transaction never reached a block.
    pub fn retry_if_outdated(&mut self, key: &ProofKey) -> Result<(), PartyError> {
        let k = key.to_string();
        let outdated = self.journal.sent.get(&k).is_some_and(|s| {
            matches!(s.refused_code, Some(OUTDATED_MISSING_INPUT | OUTDATED_INCOMPLETE))
        });
        if outdated {
            tracing::info!(proof = %key, "the ledger moved under the refused proof; building it again");
            self.journal.sent.remove(&k);
            self.journal.save(&self.dir)?;
        }
        Ok(())
    }

    /// Journal `tx` for `key`, then broadcast it. A refusal is journaled and logged (the proof
    /// is not signed again); a transport failure leaves it for [`Daemon::resend_due`].
    pub fn submit(&mut self, key: &ProofKey, tx: &Tx, height: u64) -> Result<(), PartyError> {
        let bytes = tx.encode();
        let hash = hex::encode(Tx::hash(&bytes));
        self.journal.sent.insert(
            key.to_string(),
            Sent {
                tx: hex::encode(&bytes),
                hash: hash.clone(),
                at: height,
                refused: None,
                refused_code: None,
            },
        );
        self.journal.save(&self.dir)?;
        self.metrics.submitted.get_or_create(&label("kind", key.kind)).inc();
        self.broadcast(key, &bytes, &hash);
        self.journal.save(&self.dir)
    }

    fn broadcast(&mut self, key: &ProofKey, bytes: &[u8], hash: &str) {
        match self.node.broadcast_bytes(bytes) {
            Ok(_) => tracing::info!(proof = %key, tx = hash, "submitted"),
            Err(RpcError::Rejected { code, log }) => {
                tracing::warn!(proof = %key, tx = hash, code, %log, "submission refused by CheckTx");
                self.metrics.refused.get_or_create(&label("code", code)).inc();
                if let Some(s) = self.journal.sent.get_mut(&key.to_string()) {
                    s.refused = Some(format!("code {code}: {log}"));
                    s.refused_code = Some(code);
                }
            }
            Err(e) => {
                tracing::warn!(proof = %key, tx = hash, error = %e, "broadcast failed; will retry")
            }
        }
    }

    /// Broadcast again, byte for byte, each journaled transaction that is not refused, not on
    /// the ledger, and was last broadcast [`RESEND_AFTER`] or more blocks before `height`; one
    /// found on the ledger leaves the journal (so the journal, and this check, stay as small as
    /// the submissions still in flight).
    pub fn resend_due(&mut self, height: u64) -> Result<(), PartyError> {
        let due: Vec<(String, Sent)> = self
            .journal
            .sent
            .iter()
            .filter(|(_, s)| s.refused.is_none() && s.at + RESEND_AFTER <= height)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for (k, s) in due {
            let Ok(key) = k.parse::<ProofKey>() else { continue };
            if self.node.proof(&key)?.is_some() {
                // Landed: nothing left to resend, and the ledger now answers "already sent".
                self.journal.sent.remove(&k);
                continue;
            }
            let Ok(bytes) = hex::decode(&s.tx) else { continue };
            tracing::info!(proof = %key, tx = s.hash, "not on the ledger yet; broadcasting it again");
            self.metrics.resent.inc();
            if let Some(e) = self.journal.sent.get_mut(&k) {
                e.at = height;
            }
            self.broadcast(&key, &bytes, &s.hash);
        }
        self.journal.save(&self.dir)
    }

    /// Record that the block at `height` is handled.
    pub fn handled(&mut self, height: u64) -> Result<(), PartyError> {
        self.journal.height = height;
        self.metrics.blocks.inc();
        self.metrics.height.set(i64::try_from(height).unwrap_or(i64::MAX));
        self.journal.save(&self.dir)
    }

    /// The height to follow from: after the journal's last block, or the next block for a
    /// fresh journal (queries registered before it are not this daemon's).
    pub fn follow_from(&self) -> Result<u64, PartyError> {
        if self.journal.height > 0 {
            return Ok(self.journal.height + 1);
        }
        Ok(self.node.status()?.height + 1)
    }
}

/// Run `step` on every committed block from `daemon.follow_from()` on, forever; the
/// subscription state goes to the metrics. Node errors are logged and retried (the block is
/// handled again: each step is idempotent against the ledger and the journal).
pub fn follow_forever(
    daemon: &mut Daemon,
    rpc: &str,
    mut step: impl FnMut(&mut Daemon, &crate::rpc::BlockEvents) -> Result<(), PartyError>,
) -> Result<(), PartyError> {
    let from = daemon.follow_from()?;
    let mut follower = follow::Follower::start(rpc, from)?;
    tracing::info!(from, node = rpc, "following the chain");
    let mut last_error: Option<Instant> = None;
    loop {
        let block = match follower.next_block(follow::HEARTBEAT) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                    tracing::warn!(error = %e, "the node did not answer; retrying");
                    last_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        daemon.metrics.subscribed.set(i64::from(follower.connected()));
        let height = block.height;
        loop {
            match step(daemon, &block).and_then(|()| daemon.resend_due(height)) {
                Ok(()) => break,
                Err(PartyError::Rpc(e)) => {
                    tracing::warn!(height, error = %e, "handling the block failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
        daemon.handled(height)?;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lemal_contracts::elgamal::PossessionProof;
    use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
    use lemal_contracts::tx::{NoiseParams, Operation, QuerySpec, RegisterQuery};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A querier-signed registration of query `09..09` on chain `chain`, naming `cns`.
    pub(crate) fn sample_registration(cns: Vec<u32>) -> RegisterQuery {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let querier = lemal_contracts::elgamal::SecretKey::random(&mut rng);
        RegisterQuery {
            query_id: QueryId([9; 16]),
            querier_key: querier.public(),
            querier_sig: PossessionProof::default(),
            spec: QuerySpec {
                sql: "SELECT sum(x) FROM t".into(),
                operation: Operation::Sum,
                range_bits: 32,
                bounds: vec![lemal_contracts::proofs::range::Bounds { lo: 0, hi: 1000 }],
                dps: vec![0, 1],
                cns,
                noise: NoiseParams::NONE,
            },
            threshold_ppm: 400_000,
            dp_deadline: 10,
            proof_deadline: 20,
            commit_window: 5,
        }
        .sign_as_querier("chain", &querier, &mut rng)
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lemal-journal-{}-{}",
            std::process::id(),
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn key(q: u8, kind: ProofKind) -> ProofKey {
        ProofKey { query: QueryId([q; 16]), kind, creator: EntityId::cn(1), index: 0 }
    }

    fn sent(at: u64) -> Sent {
        Sent { tx: "00".into(), hash: "aa".into(), at, refused: None, refused_code: None }
    }

    #[test]
    fn a_journal_survives_a_restart_and_belongs_to_one_chain() {
        let dir = temp_dir();
        let fresh = Journal::load(&dir, "chain-a").expect("fresh");
        assert_eq!(fresh, Journal { chain_id: "chain-a".into(), ..Journal::default() });
        let mut j = fresh;
        j.height = 42;
        j.sent.insert(key(1, ProofKind::Aggregation).to_string(), sent(40));
        j.declined.insert(QueryId([2; 16]).to_string(), "too few".into());
        j.watching.insert(QueryId([1; 16]).to_string());
        j.save(&dir).expect("save");
        assert!(!dir.join("journal.json.tmp").exists(), "the temporary file is renamed away");
        assert_eq!(Journal::load(&dir, "chain-a").expect("load"), j);
        let other = Journal::load(&dir, "chain-b").expect_err("another chain");
        assert!(other.to_string().contains("belongs to chain \"chain-a\""), "{other}");
        std::fs::write(Journal::path(&dir), "{ not json").expect("write");
        assert!(matches!(Journal::load(&dir, "chain-a"), Err(PartyError::Config(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn forgetting_a_query_keeps_the_others() {
        let mut j = Journal::default();
        for (q, kind) in
            [(1, ProofKind::Aggregation), (1, ProofKind::KeySwitch), (3, ProofKind::Shuffle)]
        {
            j.sent.insert(key(q, kind).to_string(), sent(1));
        }
        j.forget(&QueryId([1; 16]));
        assert_eq!(
            j.sent.keys().cloned().collect::<Vec<_>>(),
            vec![key(3, ProofKind::Shuffle).to_string()]
        );
    }
}
