//! `lemal-vn`: one verifying node's application process — the ABCI server CometBFT connects to,
//! the verifier worker and, with `--metrics`, a Prometheus endpoint.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};

use anyhow::{bail, Context, Result};
use clap::Parser;
use lemal_app::abci::LemalApp;
use lemal_app::metrics::Metrics;
use lemal_app::server::{Address, Listener};
use lemal_app::store::Store;
use lemal_app::worker::{RpcBroadcast, Worker};
use lemal_contracts::ids::Role;
use lemal_contracts::sig::KeyFile;
use prometheus_client::registry::Registry;
use tracing::{error, info};

/// The exit status of `lemal-vn` when its verifier worker dies.
const WORKER_DIED: i32 = 3;

/// A Lemal verifying node's application: serves ABCI to its CometBFT node and verifies the
/// proofs its VRF selects.
#[derive(Debug, Parser)]
#[command(name = "lemal-vn", version)]
struct Args {
    /// Folder of the node's database.
    #[arg(long, env = "LEMAL_VN_HOME")]
    home: PathBuf,
    /// Where the ABCI server listens: `127.0.0.1:PORT` or `tcp://127.0.0.1:PORT` (loopback
    /// only), or `unix:///path/to.sock` (a socket only this user can open; CometBFT's
    /// `proxy_app` takes the same `unix://` form).
    #[arg(long, env = "LEMAL_VN_ABCI", default_value = "127.0.0.1:26658")]
    abci: Address,
    /// RPC address of this node's CometBFT, where bitmap commits are broadcast.
    #[arg(long, env = "LEMAL_VN_RPC", default_value = "http://127.0.0.1:26657")]
    rpc: String,
    /// Key file of this verifying node (`{"entity": "vn-N", "sr25519_seed": "..."}`); it must
    /// be readable by its owner only (`chmod 600 FILE`).
    #[arg(long, env = "LEMAL_VN_KEY")]
    key: PathBuf,
    /// Threads that verify proofs.
    #[arg(long, env = "LEMAL_VN_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Test only: commit bitmaps that invert every verdict (a lying verifying node), to
    /// exercise challenges and exclusion. Never for a real node.
    #[arg(long, hide = true, env = "LEMAL_VN_TEST_ONLY_INVERT_VERDICTS")]
    test_only_invert_verdicts: bool,
    /// Serve Prometheus metrics (OpenMetrics text) at `http://ADDR/metrics`, e.g.
    /// `127.0.0.1:26661`; off unless given. Bind a loopback address unless a scraper on another
    /// host must reach it.
    #[arg(long, env = "LEMAL_VN_METRICS", value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Log lines as text, or as one JSON object per line (for log collectors).
    #[arg(long, env = "LEMAL_VN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line, without a backtrace: what an operator needs to read.
            error!("{e:#}");
            eprintln!("lemal-vn: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    check_key_permissions(&args.key)?;
    let key_file: KeyFile = serde_json::from_slice(
        &std::fs::read(&args.key).with_context(|| format!("reading {}", args.key.display()))?,
    )
    .with_context(|| format!("parsing key file {}", args.key.display()))?;
    if key_file.entity.role != Role::Vn {
        bail!(
            "{} holds the keys of {}, not of a verifying node",
            args.key.display(),
            key_file.entity
        );
    }
    let key = key_file.signing_key().context("key file")?;
    std::fs::create_dir_all(&args.home)
        .with_context(|| format!("creating {}", args.home.display()))?;
    let db = args.home.join("state.redb");
    let store = Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    info!(height = store.committed().height, db = %db.display(), "store opened");
    {
        let view = store.overlay().with_context(|| format!("reading {}", db.display()))?;
        lemal_app::machine::Machine::check_layout(&view).map_err(|why| {
            anyhow::anyhow!("the store at {} cannot be resumed: {why}", db.display())
        })?;
    }
    // Recorded always, exposed only when asked for.
    let metrics = match args.metrics {
        None => Arc::new(Metrics::default()),
        Some(addr) => {
            let mut registry = Registry::default();
            let metrics = Arc::new(Metrics::register(&mut registry));
            let bound = lemal_app::http::serve(addr, Arc::new(registry))
                .with_context(|| format!("serving metrics on {addr}"))?;
            info!(metrics = %format!("http://{bound}/metrics"), "serving metrics");
            metrics
        }
    };
    metrics.started_at(store.committed().height);
    let app = LemalApp::with_metrics(Arc::new(RwLock::new(store)), metrics.clone());

    let (tx, rx) = mpsc::channel();
    app.on_commit(tx);
    let broadcast = RpcBroadcast::new(&args.rpc).map_err(anyhow::Error::msg)?;
    let mut worker = Worker::new(key_file.entity, key, app.store(), broadcast, args.workers)
        .with_metrics(metrics);
    if args.test_only_invert_verdicts {
        tracing::warn!("test only: this node inverts its verdicts and will be found at fault");
        worker = worker.inverting_verdicts();
    }
    let worker = worker.spawn(rx);
    // A dead worker would stop this node's bitmaps without a sound: make it loud and fatal.
    std::thread::Builder::new()
        .name("worker-watch".into())
        .spawn(move || {
            let why = lemal_app::worker::wait(worker);
            error!("{why}; exiting with status {WORKER_DIED}");
            eprintln!("lemal-vn: {why}");
            std::process::exit(WORKER_DIED);
        })
        .context("spawning the worker's watcher")?;

    let listener = Listener::bind(&args.abci)
        .with_context(|| format!("binding the ABCI server to {}", args.abci))?;
    info!(abci = %args.abci, vn = %key_file.entity, "serving ABCI");
    lemal_app::server::serve(listener, app).context("ABCI server stopped")?;
    Ok(())
}

/// Refuse a key file that other users may read: the sr25519 seed in it signs this node's
/// bitmaps and VRF.
fn check_key_permissions(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:03o}); it holds this node's secret key. \
             Run `chmod 600 {}` and start again",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}
