//! A blocking client of one verifying node's CometBFT RPC (CometBFT 0.38 dialect).
//!
//! It carries the report's client API: send a query registration or any of the four proofs
//! ([`Node::broadcast`]), get the latest skipblock, a skipblock by index, hash or query id, and
//! the proofs of a query. ABCI answers are decoded into the ledger's types; with `prove` set,
//! [`Answer::proof`] holds the ICS23 proof against the app hash of the next header, which
//! the light-client verification checks.

use std::time::{Duration, Instant};

use borsh::BorshDeserialize;
use lemal_contracts::group::from_borsh;
use lemal_contracts::ids::{ProofKey, QueryId};
use lemal_contracts::page::{page_path, Page};
use lemal_contracts::proofs::Ledger;
use lemal_contracts::query_path::QueryPath;
use lemal_contracts::state::{
    BitmapCommitRecord, ProofRecord, ProposalRecord, QueryProgress, QueryRecord, Roster, SkipBlock,
    StandingRecord, ValidatorRecord, VerdictRecord,
};
use lemal_contracts::tx::Tx;
use tendermint::block::signed_header::SignedHeader;
use tendermint::validator::Info as ValidatorInfo;
use tendermint_rpc::{Client, HttpClient, Paging};

/// Most validators a served validator set may have (CometBFT itself allows 10 000).
pub const MAX_VALIDATORS: usize = 10_000;
/// Validators per page when fetching a validator set.
const VALIDATORS_PER_PAGE: u8 = 100;
/// Most genesis chunks accepted from a node (CometBFT serves 16 MiB per chunk).
const MAX_GENESIS_CHUNKS: u64 = 16;

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Transport or protocol failure.
    #[error("node {url}: {message}")]
    Transport {
        /// The node.
        url: String,
        /// What failed.
        message: String,
    },
    /// The transaction was refused by CheckTx.
    #[error("transaction refused with code {code}: {log}")]
    Rejected {
        /// The app's rejection code.
        code: u32,
        /// The app's reason.
        log: String,
    },
    /// An ABCI query failed.
    #[error("query {path}: code {code}: {log}")]
    Query {
        /// The path.
        path: String,
        /// The app's query code.
        code: u32,
        /// The app's reason.
        log: String,
    },
    /// An answer did not decode.
    #[error("answer to {path} does not decode: {message}")]
    Decode {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// Waiting ran out of time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

impl RpcError {
    /// Whether the node could not be asked (unreachable, timed out, or without the state of
    /// the height asked for), as opposed to having answered something wrong or refused.
    pub fn is_inconclusive(&self) -> bool {
        match self {
            RpcError::Transport { .. } | RpcError::Timeout(..) => true,
            RpcError::Query { code, .. } => *code == QUERY_HEIGHT_UNAVAILABLE,
            RpcError::Rejected { .. } | RpcError::Decode { .. } => false,
        }
    }
}

/// The app's query code for a height whose state it no longer (or not yet) has.
const QUERY_HEIGHT_UNAVAILABLE: u32 = 3;

/// A node's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The chain id.
    pub chain_id: String,
    /// Latest committed height.
    pub height: u64,
    /// App hash in the latest header.
    pub app_hash: Vec<u8>,
}

/// An ABCI query answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The state key the value is stored under.
    pub key: Vec<u8>,
    /// The value, `None` when absent.
    pub value: Option<Vec<u8>>,
    /// The height whose state answered.
    pub height: u64,
    /// The ICS23 proof, when requested.
    pub proof: Option<ics23::CommitmentProof>,
}

/// The final result of a transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxOutcome {
    /// Block height.
    pub height: u64,
    /// The app's code (0 = accepted).
    pub code: u32,
    /// The app's log.
    pub log: String,
}

/// A transaction in a block, as the node's index holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedTx {
    /// The transaction bytes.
    pub bytes: Vec<u8>,
    /// Block height.
    pub height: u64,
    /// The app's code (0 = accepted).
    pub code: u32,
    /// The app's log.
    pub log: String,
    /// Its events: type and (key, value) attributes.
    pub events: Vec<(String, Vec<(String, String)>)>,
}

/// A blocking client of one node.
pub struct Node {
    url: String,
    client: HttpClient,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Node {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:26657`).
    pub fn connect(url: &str) -> Result<Node, RpcError> {
        let err = |message: String| RpcError::Transport { url: url.to_owned(), message };
        let parsed: tendermint_rpc::HttpClientUrl =
            url.parse().map_err(|e| err(format!("bad url: {e}")))?;
        // CometBFT's RPC server closes a connection idle for 10 s; a pooled connection must be
        // dropped before that, or the next request on it fails ("error sending request").
        let http = reqwest::Client::builder()
            .user_agent(concat!("lemal/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| err(e.to_string()))?;
        let client = HttpClient::builder(parsed)
            .compat_mode(tendermint_rpc::client::CompatMode::V0_38)
            .client(http)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(e.to_string()))?;
        Ok(Node { url: url.to_owned(), client, runtime })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn height(&self, height: u64) -> Result<tendermint::block::Height, RpcError> {
        tendermint::block::Height::try_from(height).map_err(|e| self.transport(e))
    }

    /// The signed header (header and commit) of block `height`, unverified.
    pub fn signed_header(&self, height: u64) -> Result<SignedHeader, RpcError> {
        let h = self.height(height)?;
        let r = self.runtime.block_on(self.client.commit(h)).map_err(|e| self.transport(e))?;
        Ok(r.signed_header)
    }

    /// The validator set of block `height`, unverified, page by page; a node that pages
    /// without end or counts inconsistently is refused.
    pub fn validators(&self, height: u64) -> Result<Vec<ValidatorInfo>, RpcError> {
        let h = self.height(height)?;
        let bad = |message: String| RpcError::Decode { path: "validators".into(), message };
        let mut out: Vec<ValidatorInfo> = Vec::new();
        for page in 1..=MAX_VALIDATORS.div_ceil(usize::from(VALIDATORS_PER_PAGE)) {
            let paging =
                Paging::Specific { page_number: page.into(), per_page: VALIDATORS_PER_PAGE.into() };
            let r = self
                .runtime
                .block_on(self.client.validators(h, paging))
                .map_err(|e| self.transport(e))?;
            let total = usize::try_from(r.total)
                .map_err(|_| bad(format!("negative validator count {}", r.total)))?;
            if r.validators.is_empty() || total > MAX_VALIDATORS {
                return Err(bad(format!("inconsistent paging (total {total})")));
            }
            out.extend(r.validators);
            if out.len() >= total {
                if out.len() > total {
                    return Err(bad("more validators served than counted".into()));
                }
                return Ok(out);
            }
        }
        Err(bad(format!("more than {MAX_VALIDATORS} validators")))
    }

    /// The node's genesis document (JSON), chunk by chunk, unverified.
    pub fn genesis(&self) -> Result<Vec<u8>, RpcError> {
        let chunk = |i: u64| {
            self.runtime.block_on(self.client.genesis_chunked(i)).map_err(|e| self.transport(e))
        };
        let first = chunk(0)?;
        if first.total == 0 || first.total > MAX_GENESIS_CHUNKS {
            return Err(RpcError::Decode {
                path: "genesis_chunked".into(),
                message: format!("{} chunks (1 to {MAX_GENESIS_CHUNKS} accepted)", first.total),
            });
        }
        let mut data = first.data;
        for i in 1..first.total {
            data.extend_from_slice(&chunk(i)?.data);
        }
        Ok(data)
    }

    /// A transport error of this node. The RPC library's errors may carry a multi-line trace:
    /// the message keeps the first line.
    pub(crate) fn transport(&self, e: impl std::fmt::Display) -> RpcError {
        // The library's errors may span several lines (a kind, then its detail): keep every
        // non-empty line, on one.
        let text = e.to_string();
        let message = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join(": ");
        RpcError::Transport { url: self.url.clone(), message }
    }

    /// The node's status.
    pub fn status(&self) -> Result<Status, RpcError> {
        let s = self.runtime.block_on(self.client.status()).map_err(|e| self.transport(e))?;
        Ok(Status {
            chain_id: s.node_info.network.to_string(),
            height: s.sync_info.latest_block_height.value(),
            app_hash: s.sync_info.latest_app_hash.as_bytes().to_vec(),
        })
    }

    /// How many peers the node is connected to.
    pub fn peer_count(&self) -> Result<u64, RpcError> {
        let info = self.runtime.block_on(self.client.net_info()).map_err(|e| self.transport(e))?;
        Ok(info.n_peers)
    }

    /// Broadcast a transaction (`broadcast_tx_sync`); returns its hash once CheckTx accepted it.
    pub fn broadcast(&self, tx: &Tx) -> Result<[u8; 32], RpcError> {
        let bytes = tx.encode();
        let hash = Tx::hash(&bytes);
        let r = self
            .runtime
            .block_on(self.client.broadcast_tx_sync(bytes))
            .map_err(|e| self.transport(e))?;
        if r.code.is_err() {
            return Err(RpcError::Rejected { code: r.code.value(), log: r.log });
        }
        Ok(hash)
    }

    /// Wait until the transaction with `hash` is in a block; its outcome. The node answers
    /// "not found" until then, so every error is retried until `timeout`.
    pub fn wait_tx(&self, hash: [u8; 32], timeout: Duration) -> Result<TxOutcome, RpcError> {
        let h = tendermint::Hash::Sha256(hash);
        let what = format!("transaction {}", hex::encode(hash));
        self.wait_for(&what, timeout, Duration::from_millis(50), |node| {
            Ok(node.runtime.block_on(node.client.tx(h, false)).ok().map(|r| TxOutcome {
                height: r.height.value(),
                code: r.tx_result.code.value(),
                log: r.tx_result.log,
            }))
        })
    }

    /// A committed transaction by hash: its bytes, height, result code, log and events (`None`
    /// when the node does not know it).
    pub fn committed_tx(&self, hash: [u8; 32]) -> Result<Option<CommittedTx>, RpcError> {
        let h = tendermint::Hash::Sha256(hash);
        match self.runtime.block_on(self.client.tx(h, false)) {
            Ok(r) => Ok(Some(CommittedTx {
                bytes: r.tx,
                height: r.height.value(),
                code: r.tx_result.code.value(),
                log: r.tx_result.log,
                events: r
                    .tx_result
                    .events
                    .into_iter()
                    .map(|e| {
                        let attributes = e
                            .attributes
                            .iter()
                            .map(|a| {
                                (
                                    a.key_str().unwrap_or("?").to_owned(),
                                    a.value_str().unwrap_or("?").to_owned(),
                                )
                            })
                            .collect();
                        (e.kind, attributes)
                    })
                    .collect(),
            })),
            // CometBFT answers an unknown hash with an error whose text says so.
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(self.transport(e)),
        }
    }

    /// Raw ABCI query at `height` (latest when `None`).
    pub fn query(&self, path: &str, height: Option<u64>, prove: bool) -> Result<Answer, RpcError> {
        let height = match height {
            Some(h) => Some(tendermint::block::Height::try_from(h).map_err(|e| self.transport(e))?),
            None => None,
        };
        let r = self
            .runtime
            .block_on(self.client.abci_query(
                Some(path.to_owned()),
                Vec::<u8>::new(),
                height,
                prove,
            ))
            .map_err(|e| self.transport(e))?;
        let proof = match r.proof.as_ref().and_then(|ops| ops.ops.first()) {
            Some(op) => Some(
                <ics23::CommitmentProof as prost::Message>::decode(op.data.as_slice()).map_err(
                    |e| RpcError::Decode {
                        path: path.to_owned(),
                        message: format!("ICS23 proof: {e}"),
                    },
                )?,
            ),
            None => None,
        };
        let value = match r.code.value() {
            0 => Some(r.value),
            2 => None, // not found (with a non-existence proof when proven)
            code => return Err(RpcError::Query { path: path.to_owned(), code, log: r.log }),
        };
        Ok(Answer { key: r.key, value, height: r.height.value(), proof })
    }

    /// A typed value at the latest height, `None` when absent.
    pub fn get<T: BorshDeserialize>(&self, path: &str) -> Result<Option<T>, RpcError> {
        let a = self.query(path, None, false)?;
        a.value
            .map(|v| from_borsh(&v))
            .transpose()
            .map_err(|e| RpcError::Decode { path: path.to_owned(), message: e.to_string() })
    }

    /// The roster.
    pub fn roster(&self) -> Result<Roster, RpcError> {
        let path = QueryPath::Roster.to_string();
        self.get(&path)?.ok_or_else(|| RpcError::Query { path, code: 2, log: "no roster".into() })
    }

    /// A query's registration.
    pub fn query_record(&self, id: &QueryId) -> Result<Option<QueryRecord>, RpcError> {
        self.get(&QueryPath::Query(*id).to_string())
    }

    /// A query's progress.
    pub fn progress(&self, id: &QueryId) -> Result<Option<QueryProgress>, RpcError> {
        self.get(&QueryPath::Progress(*id).to_string())
    }

    /// The bitmap commits of a query so far (every page).
    pub fn bitmaps(&self, id: &QueryId) -> Result<Vec<BitmapCommitRecord>, RpcError> {
        self.list(&QueryPath::Bitmaps(*id, 0).to_string())
    }

    /// Every accepted proof of a query (every page).
    pub fn proofs(&self, id: &QueryId) -> Result<Vec<ProofRecord>, RpcError> {
        self.list(&QueryPath::Proofs(*id, 0).to_string())
    }

    /// Every entry of the list path `list`, page by page ([`lemal_contracts::page`]), all pages
    /// from one height: when a block is committed between two pages, the walk starts again (a
    /// few times, then gives up with the last error).
    pub fn list<T: BorshDeserialize>(&self, list: &str) -> Result<Vec<T>, RpcError> {
        const ATTEMPTS: usize = 5;
        let mut moved = None;
        for _ in 0..ATTEMPTS {
            let mut items = Vec::new();
            let mut from = 0u32;
            let mut height = None;
            let complete = loop {
                let path = page_path(list, from);
                let a = self.query(&path, None, false)?;
                if *height.get_or_insert(a.height) != a.height {
                    moved = Some(RpcError::Query {
                        path: path.clone(),
                        code: 3,
                        log: format!("the chain moved on while paging {list}"),
                    });
                    break false;
                }
                let page: Page<T> = from_borsh(&a.value.unwrap_or_default())
                    .map_err(|e| RpcError::Decode { path, message: e.to_string() })?;
                let next = page.next(from);
                items.extend(page.items);
                match next {
                    Some(n) => from = n,
                    None => break true,
                }
            };
            if complete {
                return Ok(items);
            }
        }
        Err(moved.unwrap_or_else(|| RpcError::Timeout(Duration::ZERO, list.to_owned())))
    }

    /// One accepted proof.
    pub fn proof(&self, key: &ProofKey) -> Result<Option<ProofRecord>, RpcError> {
        self.get(&QueryPath::Proof(*key).to_string())
    }

    /// The verdict of the challenge that settled a proof, `None` while it is unchallenged.
    pub fn verdict(&self, key: &ProofKey) -> Result<Option<VerdictRecord>, RpcError> {
        self.get(&QueryPath::Verdict(*key).to_string())
    }

    /// Every entity out of good standing (every page); an entity not listed is in good standing.
    pub fn standings(&self) -> Result<Vec<StandingRecord>, RpcError> {
        self.list(&QueryPath::Standings(0).to_string())
    }

    /// The validator record of verifying node `vn-{vn}`.
    pub fn validator_record(&self, vn: u32) -> Result<Option<ValidatorRecord>, RpcError> {
        self.get(&QueryPath::Validator(vn).to_string())
    }

    /// The verifying nodes' validator records, in verifying-node order (every page).
    pub fn validator_records(&self) -> Result<Vec<ValidatorRecord>, RpcError> {
        self.list(&QueryPath::Validators(0).to_string())
    }

    /// A roster proposal.
    pub fn proposal(&self, id: u64) -> Result<Option<ProposalRecord>, RpcError> {
        self.get(&QueryPath::Proposal(id).to_string())
    }

    /// Every roster proposal, open or closed (every page).
    pub fn proposals(&self) -> Result<Vec<ProposalRecord>, RpcError> {
        self.list(&QueryPath::Proposals(0).to_string())
    }

    /// The latest skipblock.
    pub fn block_latest(&self) -> Result<SkipBlock, RpcError> {
        let path = QueryPath::LatestBlock.to_string();
        self.get(&path)?.ok_or_else(|| RpcError::Query {
            path,
            code: 2,
            log: "empty skipchain".into(),
        })
    }

    /// A skipblock by index.
    pub fn block_by_index(&self, index: u64) -> Result<Option<SkipBlock>, RpcError> {
        self.get(&QueryPath::Block(index).to_string())
    }

    /// A skipblock by hash.
    pub fn block_by_hash(&self, hash: &[u8; 32]) -> Result<Option<SkipBlock>, RpcError> {
        self.get(&QueryPath::BlockByHash(*hash).to_string())
    }

    /// The skipblock of a query.
    pub fn block_by_query(&self, id: &QueryId) -> Result<Option<SkipBlock>, RpcError> {
        self.get(&QueryPath::BlockOfQuery(*id).to_string())
    }

    /// A skipblock's forward links.
    pub fn forward_links(&self, index: u64) -> Result<Vec<[u8; 32]>, RpcError> {
        Ok(self.get(&QueryPath::Forward(index).to_string())?.unwrap_or_default())
    }

    /// Poll until `f` returns `Some`, every `every`, at most `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut f: impl FnMut(&Node) -> Result<Option<T>, RpcError>,
    ) -> Result<T, RpcError> {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self)? {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                return Err(RpcError::Timeout(timeout, what.to_owned()));
            }
            std::thread::sleep(every);
        }
    }
}

/// One event a block's FinalizeBlock emitted: its type and attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event type (`lemal.register`, `lemal.proof`, ...).
    pub kind: String,
    /// Its attributes, by key.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Event {
    /// The attribute `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// What a committed block did: the events of its accepted transactions, in order, then its
/// end-of-block events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEvents {
    /// The block's height.
    pub height: u64,
    /// The events, in the order FinalizeBlock emitted them.
    pub events: Vec<Event>,
}

impl BlockEvents {
    /// The events of type `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| e.kind == kind)
    }
}

fn event_of(e: &tendermint::abci::Event) -> Event {
    Event {
        kind: e.kind.clone(),
        attributes: e
            .attributes
            .iter()
            .filter_map(|a| Some((a.key_str().ok()?.to_owned(), a.value_str().ok()?.to_owned())))
            .collect(),
    }
}

/// The outcome of one transaction of a batch ([`Node::broadcast_all`]): its hash once CheckTx
/// accepted it, or why it was refused.
pub type Broadcast = Result<[u8; 32], RpcError>;

impl Node {
    /// The events block `height` emitted (`block_results`): those of its accepted transactions
    /// (a refused transaction changed nothing) and its end-of-block events.
    pub fn block_events(&self, height: u64) -> Result<BlockEvents, RpcError> {
        let h = self.height(height)?;
        let r =
            self.runtime.block_on(self.client.block_results(h)).map_err(|e| self.transport(e))?;
        let mut events = Vec::new();
        for tx in r.txs_results.iter().flatten().filter(|t| t.code.is_ok()) {
            events.extend(tx.events.iter().map(event_of));
        }
        events.extend(r.finalize_block_events.iter().map(event_of));
        Ok(BlockEvents { height, events })
    }

    /// The hashes of the transactions in block `height`, in block order.
    pub fn block_tx_hashes(&self, height: u64) -> Result<Vec<[u8; 32]>, RpcError> {
        Ok(self.block(height)?.data.iter().map(|b| Tx::hash(b)).collect())
    }

    /// The outcome (hash, code, log) of every transaction of block `height` that the node's
    /// transaction index holds, in one search per 100 transactions.
    pub fn block_tx_outcomes(&self, height: u64) -> Result<Vec<([u8; 32], u32, String)>, RpcError> {
        let query = tendermint_rpc::query::Query::eq("tx.height", height);
        let mut out = Vec::new();
        for page in 1.. {
            let r = self
                .runtime
                .block_on(self.client.tx_search(
                    query.clone(),
                    false,
                    page,
                    100,
                    tendermint_rpc::Order::Ascending,
                ))
                .map_err(|e| self.transport(e))?;
            let got = r.txs.len();
            for t in r.txs {
                let hash: [u8; 32] =
                    t.hash.as_bytes().try_into().map_err(|_| RpcError::Decode {
                        path: "tx_search".into(),
                        message: format!("block {height}: a transaction hash is not 32 bytes"),
                    })?;
                out.push((hash, t.tx_result.code.value(), t.tx_result.log));
            }
            if got == 0 || out.len() >= r.total_count as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Broadcast encoded transactions (`broadcast_tx_sync`, all at once); for each, in order,
    /// its hash once CheckTx accepted it, or why not.
    pub fn broadcast_all(&self, encoded: &[Vec<u8>]) -> Vec<Broadcast> {
        let results = self.runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, bytes) in encoded.iter().enumerate() {
                let client = self.client.clone();
                let bytes = bytes.clone();
                set.spawn(async move { (i, client.broadcast_tx_sync(bytes).await) });
            }
            let mut out = Vec::with_capacity(encoded.len());
            while let Some(joined) = set.join_next().await {
                out.push(joined);
            }
            out
        });
        let mut outcomes: Vec<Broadcast> = encoded
            .iter()
            .map(|_| Err(self.transport("a broadcast task did not finish")))
            .collect();
        for (i, r) in results.into_iter().flatten() {
            outcomes[i] = match r {
                Ok(r) if r.code.is_ok() => Ok(Tx::hash(&encoded[i])),
                Ok(r) => Err(RpcError::Rejected { code: r.code.value(), log: r.log }),
                Err(e) => Err(self.transport(e)),
            };
        }
        outcomes
    }

    /// Block `height` as the node serves it, unverified.
    pub fn block(&self, height: u64) -> Result<tendermint::Block, RpcError> {
        let h = self.height(height)?;
        let r = self.runtime.block_on(self.client.block(h)).map_err(|e| self.transport(e))?;
        Ok(r.block)
    }

    /// Broadcast bytes (`broadcast_tx_sync`) and return CheckTx's code and log as they are,
    /// whatever the code; an error only when the node refused them before CheckTx or could not
    /// be reached.
    pub fn check_tx(&self, bytes: Vec<u8>) -> Result<(u32, String), RpcError> {
        let r = self
            .runtime
            .block_on(self.client.broadcast_tx_sync(bytes))
            .map_err(|e| self.transport(e))?;
        Ok((r.code.value(), r.log))
    }

    /// Broadcast encoded transaction bytes (`broadcast_tx_sync`); its hash once CheckTx
    /// accepted it.
    pub fn broadcast_bytes(&self, bytes: &[u8]) -> Result<[u8; 32], RpcError> {
        let hash = Tx::hash(bytes);
        let r = self
            .runtime
            .block_on(self.client.broadcast_tx_sync(bytes.to_vec()))
            .map_err(|e| self.transport(e))?;
        if r.code.is_err() {
            return Err(RpcError::Rejected { code: r.code.value(), log: r.log });
        }
        Ok(hash)
    }
}

/// Proof lookups through a node, for the pipeline roles and the auditor.
impl Ledger for Node {
    fn proof(&self, key: &ProofKey) -> Option<ProofRecord> {
        Node::proof(self, key).ok().flatten()
    }
}
