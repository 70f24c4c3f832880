//! The querier: plans a query with a fresh ElGamal key, keeps the key in its own file, asks a
//! computing node to register the query, and later reads the query's skipblock and decrypts
//! the result.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lemal_contracts::elgamal::SecretKey;
use lemal_contracts::ids::QueryId;
use lemal_contracts::state::{QueryStatus, SkipBlock};
use lemal_contracts::tx::RegisterQuery;
use serde::{Deserialize, Serialize};

use super::{follow::Follower, io, PartyError};
use crate::data::DataBounds;
use crate::pipeline::QueryPlan;
use crate::rpc::Node;

/// What the querier keeps of a query it submitted (its file is readable by its owner only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerierRecord {
    /// The chain.
    pub chain_id: String,
    /// The query id.
    pub query_id: String,
    /// The query.
    pub sql: String,
    /// The querier's ElGamal secret key, hex.
    pub secret: String,
    /// The data bounds the query was planned with.
    pub min: i64,
    /// The data bounds' maximum.
    pub max: i64,
    /// The data bounds' row count.
    pub rows: u32,
    /// The endpoint of the computing node that registered it.
    pub registrar: String,
    /// The registration transaction's hash, hex.
    pub tx: String,
}

impl QuerierRecord {
    /// The record of `plan`, registered through `registrar` by transaction `tx`.
    pub fn of(chain_id: &str, plan: &QueryPlan, registrar: &str, tx: &str) -> Self {
        QuerierRecord {
            chain_id: chain_id.to_owned(),
            query_id: plan.registration.query_id.to_string(),
            sql: plan.query.to_string(),
            secret: hex::encode(plan.querier.scalar().as_bytes()),
            min: plan.bounds.min,
            max: plan.bounds.max,
            rows: plan.bounds.rows,
            registrar: registrar.to_owned(),
            tx: tx.to_owned(),
        }
    }

    /// The querier's secret key.
    pub fn secret(&self) -> Result<SecretKey, PartyError> {
        let bytes: [u8; 32] =
            hex::decode(&self.secret).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
                PartyError::Config(format!("query {}: bad secret key", self.query_id))
            })?;
        Option::<curve25519_dalek::Scalar>::from(curve25519_dalek::Scalar::from_canonical_bytes(
            bytes,
        ))
        .map(SecretKey::from_scalar)
        .ok_or_else(|| PartyError::Config(format!("query {}: bad secret key", self.query_id)))
    }

    /// The data bounds.
    pub fn bounds(&self) -> DataBounds {
        DataBounds { min: self.min, max: self.max, rows: self.rows }
    }

    /// The record's file in the querier's folder `dir`.
    pub fn path(dir: &Path, id: &QueryId) -> PathBuf {
        dir.join(format!("{id}.json"))
    }

    /// Write the record to `dir` (created with mode 0700), mode 0600 from creation on.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, PartyError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        let id: QueryId = self
            .query_id
            .parse()
            .map_err(|e| PartyError::Config(format!("query id {}: {e}", self.query_id)))?;
        let path = Self::path(dir, &id);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| PartyError::Config(format!("encoding {}: {e}", path.display())))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("writing {}", path.display())))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("restricting {}", path.display())))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(io(format!("writing {}", path.display())))?;
        f.sync_all().map_err(io(format!("syncing {}", path.display())))?;
        Ok(path)
    }

    /// Read the record of query `id` from `dir`.
    pub fn load(dir: &Path, id: &QueryId) -> Result<Self, PartyError> {
        let path = Self::path(dir, id);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                PartyError::Config(format!(
                    "no key for query {id} in {}: it was submitted from another folder (--home)",
                    dir.display()
                ))
            } else {
                io(format!("reading {}", path.display()))(e)
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| PartyError::Config(format!("{}: {e}", path.display())))
    }
}

/// How long [`register_via`] waits in all for a computing node that answers `429`.
const REGISTER_RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Ask the computing node whose endpoint is `endpoint` (`http://HOST:PORT`) to register
/// `registration`; the registration transaction's hash (hex) once CheckTx accepted it. A node
/// that answers `429` (this source is over its registration rate) is asked again after the
/// `Retry-After` it names, for at most 60 s in all.
pub fn register_via(endpoint: &str, registration: &RegisterQuery) -> Result<String, PartyError> {
    let body = borsh::to_vec(registration)
        .map_err(|e| PartyError::Config(format!("encoding the registration: {e}")))?;
    let url = format!("{}/register", endpoint.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting a runtime"))?;
    let unreachable = |e: String| PartyError::Config(format!("computing node at {endpoint}: {e}"));
    let client = reqwest::Client::new();
    let mut waited = Duration::ZERO;
    let (status, text) = loop {
        let (status, retry_after, text) = runtime.block_on(async {
            let response = client
                .post(&url)
                .timeout(Duration::from_secs(30))
                .body(body.clone())
                .send()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
            let text = response.text().await.map_err(|e| unreachable(e.to_string()))?;
            Ok::<_, PartyError>((status, retry_after, text))
        })?;
        let wait = Duration::from_secs(retry_after.unwrap_or(1).max(1));
        if status != 429 || waited + wait > REGISTER_RETRY_BUDGET {
            break (status, text);
        }
        tracing::info!(endpoint, wait_s = wait.as_secs(), "registration rate-limited; retrying");
        std::thread::sleep(wait);
        waited += wait;
    };
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| unreachable(format!("answered {status} with {text:?}")))?;
    if status != 200 {
        let code = doc["code"].as_u64().map(|c| format!(" (code {c})")).unwrap_or_default();
        return Err(PartyError::Config(format!(
            "the computing node at {endpoint} did not register the query{code}: {}",
            doc["error"].as_str().unwrap_or(&text)
        )));
    }
    doc["tx"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| unreachable(format!("answered without a transaction: {text}")))
}

/// Wait until query `q` is finalized on the node at `rpc` and return its skipblock, following
/// the chain's `lemal.skipblock` events.
pub fn wait_skipblock(rpc: &str, q: &QueryId, timeout: Duration) -> Result<SkipBlock, PartyError> {
    let node = Node::connect(rpc)?;
    let fetch = |node: &Node| -> Result<Option<SkipBlock>, PartyError> {
        match node.progress(q)? {
            None => Err(PartyError::Config(format!("query {q} is not registered on {rpc}"))),
            Some(p) if matches!(p.status, QueryStatus::Finalized { .. }) => {
                Ok(Some(node.block_by_query(q)?.ok_or_else(|| {
                    PartyError::Config(format!("query {q} is finalized but has no skipblock"))
                })?))
            }
            Some(_) => Ok(None),
        }
    };
    let from = node.status()?.height + 1;
    if let Some(b) = fetch(&node)? {
        return Ok(b);
    }
    let mut follower = Follower::start(rpc, from)?;
    let start = Instant::now();
    let qs = q.to_string();
    loop {
        let left = timeout.checked_sub(start.elapsed()).ok_or_else(|| {
            PartyError::Config(format!("timed out after {timeout:?} waiting for query {q}"))
        })?;
        let Some(block) = follower.next_block(left)? else { continue };
        if block.of_kind("lemal.skipblock").any(|e| e.get("query") == Some(qs.as_str())) {
            if let Some(b) = fetch(&node)? {
                return Ok(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{serve_with, Endpoint, Refused, Reply};
    use crate::party::tests::sample_registration;

    /// Refuses its first `refusals` registrations with `429` and `Retry-After: retry_after`,
    /// then registers.
    struct Busy {
        seen: Arc<AtomicUsize>,
        refusals: usize,
        retry_after: u64,
    }

    impl Endpoint for Busy {
        fn admit(&self, _method: &str, _path: &str, _peer: IpAddr) -> Result<(), Refused> {
            if self.seen.fetch_add(1, Ordering::SeqCst) < self.refusals {
                return Err(Refused {
                    status: 429,
                    body: serde_json::json!({ "error": "too many registrations" }),
                    retry_after: Some(self.retry_after),
                });
            }
            Ok(())
        }

        fn handle(&self, _method: &str, _path: &str, _body: &[u8]) -> Reply {
            (200, serde_json::json!({ "query": "q", "tx": "ab12" }))
        }
    }

    fn busy(refusals: usize, retry_after: u64) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let endpoint = Busy { seen: Arc::clone(&seen), refusals, retry_after };
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let addr = serve_with(any, Arc::default(), endpoint).expect("serving");
        (format!("http://{addr}"), seen)
    }

    #[test]
    fn a_rate_limited_registration_is_sent_again_after_retry_after() {
        let (endpoint, seen) = busy(2, 1);
        let started = Instant::now();
        let tx = register_via(&endpoint, &sample_registration(vec![0])).expect("registered");
        assert_eq!(tx, "ab12");
        assert_eq!(seen.load(Ordering::SeqCst), 3, "two refusals, then the registration");
        assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn a_wait_beyond_the_budget_is_reported_at_once() {
        let (endpoint, seen) = busy(usize::MAX, 3600);
        let e = register_via(&endpoint, &sample_registration(vec![0])).expect_err("refused");
        assert!(e.to_string().contains("too many registrations"), "{e}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
