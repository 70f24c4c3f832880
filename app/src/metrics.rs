//! Prometheus metrics of a verifying node: what its verifier worker verified and broadcast,
//! how far it is behind the chain, what CheckTx refused, and how long FinalizeBlock and Commit
//! took.
//!
//! Recording only. The ABCI adapter and the worker write to [`Metrics`]; the state machine
//! never reads it, so a metric cannot change a verdict, a code or an app hash. Recording cannot
//! fail, and [`crate::http::serve`] answers scrapes on a thread of its own: a failed scrape is
//! the scraper's problem, never the node's.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `lemal_proofs_verified_total` | counter | `kind`, `verdict` (`correct`, `wrong`) |
//! | `lemal_verification_duration_seconds` | histogram | `kind` |
//! | `lemal_committed_height` | gauge | |
//! | `lemal_worker_height` | gauge | |
//! | `lemal_worker_lag_blocks` | gauge | |
//! | `lemal_bitmaps_broadcast_total` | counter | |
//! | `lemal_bitmap_broadcasts_failed_total` | counter | |
//! | `lemal_checktx_rejections_total` | counter | `code`, `name`, `check` (`new`, `recheck`) |
//! | `lemal_finalize_block_duration_seconds` | histogram | |
//! | `lemal_commit_duration_seconds` | histogram | |
//!
//! The worker's lag is the committed height minus the height of the last block after which
//! the worker finished its step (verified every proof its VRF selected among those committed
//! up to that block, and broadcast the bitmaps then due). The worker skips to the newest block
//! when several were committed during one step, so the lag falls back at once after a long
//! step; it grows while a step runs and blocks keep coming.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use lemal_contracts::ids::ProofKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The labels of a verified proof.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProofLabels {
    /// The proof kind (`range`, `aggregation`, `shuffle`, `keyswitch`).
    kind: &'static str,
    /// `correct` or `wrong`.
    verdict: &'static str,
}

/// The label of a proof kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    /// The proof kind.
    kind: &'static str,
}

/// The labels of a CheckTx rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    /// The ABCI code.
    code: u32,
    /// The code's name (`decode`, `bad-signature`, ...).
    name: &'static str,
    /// `new` for a transaction's first check, `recheck` after a block.
    check: &'static str,
}

/// Verifications take from a millisecond (a range proof) to seconds (a shuffle of thousands of
/// rows): 1 ms to 33 s.
fn verification_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// FinalizeBlock and Commit: 0.25 ms to 8 s.
fn block_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The metrics of one `lemal-vn`; cheap to share (`Arc`). A default value records into metrics
/// that no registry exposes.
#[derive(Debug)]
pub struct Metrics {
    proofs_verified: Family<ProofLabels, Counter>,
    verification_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    committed_height: Gauge,
    worker_height: Gauge,
    worker_lag: Gauge,
    bitmaps_broadcast: Counter,
    bitmap_broadcasts_failed: Counter,
    checktx_rejections: Family<RejectionLabels, Counter>,
    finalize_block_seconds: Histogram,
    commit_seconds: Histogram,
    /// (committed height, worker height), updated together so that the lag is their difference.
    heights: Mutex<(u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            proofs_verified: Family::default(),
            verification_seconds: Family::new_with_constructor(verification_histogram),
            committed_height: Gauge::default(),
            worker_height: Gauge::default(),
            worker_lag: Gauge::default(),
            bitmaps_broadcast: Counter::default(),
            bitmap_broadcasts_failed: Counter::default(),
            checktx_rejections: Family::default(),
            finalize_block_seconds: block_histogram(),
            commit_seconds: block_histogram(),
            heights: Mutex::new((0, 0)),
        }
    }
}

impl Metrics {
    /// New metrics, registered in `registry` under the names of the module's table.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "lemal_proofs_verified",
            "Proofs this node's worker verified, by kind and outcome",
            m.proofs_verified.clone(),
        );
        registry.register_with_unit(
            "lemal_verification_duration",
            "Time to verify one proof against its statement, by kind",
            Unit::Seconds,
            m.verification_seconds.clone(),
        );
        registry.register(
            "lemal_committed_height",
            "Height of the last block this node committed",
            m.committed_height.clone(),
        );
        registry.register(
            "lemal_worker_height",
            "Height of the last block after which the worker finished its step",
            m.worker_height.clone(),
        );
        registry.register(
            "lemal_worker_lag_blocks",
            "Committed height minus the worker's height",
            m.worker_lag.clone(),
        );
        registry.register(
            "lemal_bitmaps_broadcast",
            "Bitmap commits the worker broadcast and its node's CheckTx accepted",
            m.bitmaps_broadcast.clone(),
        );
        registry.register(
            "lemal_bitmap_broadcasts_failed",
            "Bitmap broadcasts that failed (retried a few blocks later)",
            m.bitmap_broadcasts_failed.clone(),
        );
        registry.register(
            "lemal_checktx_rejections",
            "Transactions CheckTx refused, by code",
            m.checktx_rejections.clone(),
        );
        registry.register_with_unit(
            "lemal_finalize_block_duration",
            "Time to execute a block (FinalizeBlock)",
            Unit::Seconds,
            m.finalize_block_seconds.clone(),
        );
        registry.register_with_unit(
            "lemal_commit_duration",
            "Time to make a block durable (Commit)",
            Unit::Seconds,
            m.commit_seconds.clone(),
        );
        m
    }

    /// The worker verified a proof of `kind` in `seconds`.
    pub fn proof_verified(&self, kind: ProofKind, correct: bool, seconds: f64) {
        let verdict = if correct { "correct" } else { "wrong" };
        self.proofs_verified.get_or_create(&ProofLabels { kind: kind.as_str(), verdict }).inc();
        self.verification_seconds
            .get_or_create(&KindLabel { kind: kind.as_str() })
            .observe(seconds);
    }

    /// The worker broadcast a bitmap commit (`ok`), or failed to.
    pub fn bitmap_broadcast(&self, ok: bool) {
        if ok { &self.bitmaps_broadcast } else { &self.bitmap_broadcasts_failed }.inc();
    }

    /// CheckTx refused a transaction with `code`.
    pub fn check_tx_rejected(&self, code: u32, recheck: bool) {
        let name = lemal_contracts::codes::name(code);
        let check = if recheck { "recheck" } else { "new" };
        self.checktx_rejections.get_or_create(&RejectionLabels { code, name, check }).inc();
    }

    /// FinalizeBlock took `seconds`.
    pub fn finalize_block_took(&self, seconds: f64) {
        self.finalize_block_seconds.observe(seconds);
    }

    /// Commit took `seconds`.
    pub fn commit_took(&self, seconds: f64) {
        self.commit_seconds.observe(seconds);
    }

    /// The node committed the block at `height`.
    pub fn block_committed(&self, height: u64) {
        self.set_heights(|h| h.0 = height);
    }

    /// The worker finished its step after the block at `height`.
    pub fn worker_reached(&self, height: u64) {
        self.set_heights(|h| h.1 = height);
    }

    /// A node that starts with its store at `height` has nothing to catch up on until the next
    /// block: its worker reads every open query at its first step.
    pub fn started_at(&self, height: u64) {
        self.set_heights(|h| *h = (height, height));
    }

    fn set_heights(&self, update: impl FnOnce(&mut (u64, u64))) {
        let mut heights = self.heights.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut heights);
        let (committed, worker) = *heights;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.committed_height.set(gauge(committed));
        self.worker_height.set(gauge(worker));
        self.worker_lag.set(gauge(committed.saturating_sub(worker)));
    }
}

/// The wall time something takes, for a histogram. What it measures is recorded and never read
/// back by the state machine.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Start measuring.
    // Not consensus: the reading goes to a histogram only.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Stopwatch(Instant::now())
    }

    /// Seconds since [`Stopwatch::start`].
    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::{serve, CONTENT_TYPE};
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn recorded_metrics_are_served_under_their_documented_names() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.proof_verified(ProofKind::Range, true, 0.002);
        m.proof_verified(ProofKind::Shuffle, false, 1.5);
        m.bitmap_broadcast(true);
        m.bitmap_broadcast(false);
        m.check_tx_rejected(5, false);
        m.finalize_block_took(0.01);
        m.commit_took(0.001);
        m.started_at(7);
        m.block_committed(10);
        m.worker_reached(8);
        let addr = serve("127.0.0.1:0".parse().unwrap(), Arc::new(registry)).unwrap();
        let page = get(addr, "/metrics");
        assert!(page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains(CONTENT_TYPE));
        for line in [
            "lemal_proofs_verified_total{kind=\"range\",verdict=\"correct\"} 1",
            "lemal_proofs_verified_total{kind=\"shuffle\",verdict=\"wrong\"} 1",
            "lemal_verification_duration_seconds_count{kind=\"range\"} 1",
            "lemal_committed_height 10",
            "lemal_worker_height 8",
            "lemal_worker_lag_blocks 2",
            "lemal_bitmaps_broadcast_total 1",
            "lemal_bitmap_broadcasts_failed_total 1",
            "lemal_checktx_rejections_total{code=\"5\",name=\"bad-signature\",check=\"new\"} 1",
            "lemal_finalize_block_duration_seconds_count 1",
            "lemal_commit_duration_seconds_count 1",
            "# EOF",
        ] {
            assert!(page.contains(line), "{line:?} missing from\n{page}");
        }
        assert!(get(addr, "/other").contains(" 404 "));
    }

    #[test]
    fn the_lag_never_goes_below_zero() {
        let m = Metrics::default();
        m.worker_reached(12);
        m.block_committed(10);
        assert_eq!(m.worker_lag.get(), 0);
    }
}
