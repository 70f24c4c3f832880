//! `lemal dp serve`, `lemal cn serve` (the party daemons) and `lemal query submit|result` (the
//! querier).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use lemal_contracts::ids::{ProofKind, QueryId, Role};
use lemal_contracts::sig::KeyFile;
use lemal_contracts::state::BlockPayload;
use serde_json::json;

use super::query_options::{QueryOptions, DATA_MAX, DATA_MIN};
use super::run::verify_skipblock;
use super::{exit_code_of, Global, EXIT_FAULT};
use crate::data;
use crate::localnet::{Layout, Manifest};
use crate::party::admission::{Admission, Cidr, RateLimit};
use crate::party::cn::{CnConfig, ComputingNode, Registrar};
use crate::party::dp::{DataProvider, DataSource, DpConfig, Policy};
use crate::party::querier::{self, QuerierRecord};
use crate::party::{follow_forever, Daemon, Metrics};
use crate::pipeline::{self, PartyKeys};
use crate::rpc::Node;
use crate::sql;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Send the daemon's logs to stderr in `format` (level from `RUST_LOG`, default info).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Read a party's key file, refusing one that others may read.
fn read_key(path: &Path, role: Role) -> Result<PartyKeys> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        meta.permissions().mode() & 0o077 == 0,
        "{} may be read by others; run `chmod 600 {}`",
        path.display(),
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: KeyFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a key file", path.display()))?;
    ensure!(
        file.entity.role == role,
        "{} is the key file of {}, not of a {}",
        path.display(),
        file.entity,
        role.as_str()
    );
    Ok(PartyKeys::from_key_file(&file)?)
}

/// An `IP:PORT` address to listen on.
fn socket_addr(addr: &str) -> Result<std::net::SocketAddr> {
    addr.parse().with_context(|| format!("{addr:?} is not an IP:PORT address to listen on"))
}

/// Options every daemon takes.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The party's key file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Folder of the daemon's journal [default: HOME/parties/ENTITY].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Read per-query cheat orders from STATE/cheat/QUERY_ID (demonstrations and tests).
    #[arg(long, hide = true)]
    pub test_only_cheat_orders: bool,
}

impl DaemonArgs {
    fn state_dir(&self, global: &Global, keys: &PartyKeys) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| global.home.join("parties").join(keys.entity.to_string()))
    }
}

/// `lemal dp ...`.
#[derive(Debug, Subcommand)]
pub enum DpAction {
    /// Run a data provider: answer every registered query that names it from its own data.
    #[command(after_help = "Examples:\n  lemal dp serve --key .lemal/keys/dp-0.json --seed 0\n  \
                            lemal dp serve --key dp-3.json --csv hospital.csv --min-dps 5 \
                            --columns x,z --metrics 127.0.0.1:27001")]
    Serve(DpServeArgs),
}

/// Options of `lemal dp serve`.
#[derive(Debug, Args)]
pub struct DpServeArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// The provider's table: a CSV file with a header of column names, then integer rows.
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    csv: Option<PathBuf>,
    /// Synthetic data instead: provider i draws its rows from seed·1000003 + i.
    #[arg(long)]
    seed: Option<u64>,
    /// Smallest value of the aggregated column (the public bound its range proof proves).
    #[arg(long, default_value_t = DATA_MIN, allow_negative_numbers = true)]
    min: i64,
    /// Largest value of the aggregated column.
    #[arg(long, default_value_t = DATA_MAX, allow_negative_numbers = true)]
    max: i64,
    /// Decline queries naming fewer data providers.
    #[arg(long, default_value_t = 1)]
    min_dps: usize,
    /// Columns it shares, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Serve Prometheus metrics at this address (`GET /metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Submit a false range proof for every query (a cheating provider, for demonstrations).
    #[arg(long)]
    cheat: bool,
}

/// `lemal cn ...`.
#[derive(Debug, Subcommand)]
pub enum CnAction {
    /// Run a computing node: register queriers' queries, then aggregate, shuffle and
    /// key-switch each query that names it as soon as its inputs are on the ledger.
    #[command(
        after_help = "Examples:\n  lemal cn serve --key .lemal/keys/cn-0.json --listen 127.0.0.1:27100\n  \
                            lemal cn serve --key cn-1.json --listen 0.0.0.0:27100 \
                            --register-allow 10.0.0.0/8,fd00::/8 --register-rate 10 \
                            --register-burst 5\n\
                            Queriers register through POST http://ADDR/register; \
                            metrics at GET http://ADDR/metrics.\n\
                            Before a registration is read, its source must be on \
                            --register-allow (else 403) and within its rate (else 429 with \
                            Retry-After); a source is an IPv4 address or an IPv6 /64. Refusals \
                            are counted in lemal_cn_registrations_total{outcome=\"not_allowed\"|\
                            \"rate_limited\"}."
    )]
    Serve(CnServeArgs),
}

/// Options of `lemal cn serve`.
#[derive(Debug, Args)]
pub struct CnServeArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Address of its endpoint: registrations (`POST /register`) and metrics (`GET /metrics`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:27100")]
    listen: String,
    /// Registrations each source may send per minute, on average (a source is an IPv4 address
    /// or an IPv6 /64); more are answered 429 with Retry-After before they are read.
    #[arg(long, value_name = "N", env = "LEMAL_CN_REGISTER_RATE", default_value = "30")]
    register_rate: NonZeroU32,
    /// Registrations a source may send at once after a quiet spell.
    #[arg(long, value_name = "B", env = "LEMAL_CN_REGISTER_BURST", default_value = "10")]
    register_burst: NonZeroU32,
    /// Networks allowed to register, comma-separated CIDR blocks or addresses (e.g.
    /// 10.0.0.0/8,fd00::/8,127.0.0.1); registrations from elsewhere are answered 403 [default:
    /// every source].
    #[arg(long, value_name = "CIDR,...", env = "LEMAL_CN_REGISTER_ALLOW", value_delimiter = ',')]
    register_allow: Vec<Cidr>,
    /// Falsify these proofs in every query (a cheating node, for demonstrations).
    #[arg(long, value_delimiter = ',', value_name = "KIND")]
    cheat: Vec<ProofKind>,
}

fn serve_common(
    global: &Global,
    daemon_args: &DaemonArgs,
    keys: &PartyKeys,
    metrics: Metrics,
) -> Result<Daemon> {
    init_logs(daemon_args.log_format);
    let dir = daemon_args.state_dir(global, keys);
    let daemon = Daemon::open(&global.node, &dir, metrics)
        .with_context(|| format!("starting {} against {}", keys.entity, global.node))?;
    tracing::info!(
        entity = %keys.entity,
        chain = daemon.chain_id,
        node = global.node,
        state = %dir.display(),
        "started"
    );
    Ok(daemon)
}

/// `lemal dp serve`.
pub fn dp(action: DpAction, global: &Global) -> Result<ExitCode> {
    let DpAction::Serve(args) = action;
    let keys = read_key(&args.daemon.key, Role::Dp)?;
    ensure!(args.min <= args.max, "--min {} is above --max {}", args.min, args.max);
    let data = match (&args.csv, args.seed) {
        (Some(path), _) => {
            // Refuse an unreadable table now rather than at the first query.
            crate::data::Dataset::from_csv(path).map_err(|e| anyhow!("{e}"))?;
            DataSource::Csv(path.clone())
        }
        (None, Some(seed)) => DataSource::Synthetic { seed },
        (None, None) => bail!("give the provider's data: --csv FILE or --seed N"),
    };
    let (metrics, registry) = Metrics::new();
    let mut daemon = serve_common(global, &args.daemon, &keys, metrics)?;
    if let Some(addr) = &args.metrics {
        let bound = crate::metrics::serve(socket_addr(addr)?, Arc::new(registry))
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!(metrics = %bound, "serving metrics");
    }
    let roster = daemon.node.roster()?;
    let config = DpConfig {
        keys,
        data,
        min: args.min,
        max: args.max,
        policy: Policy { min_dps: args.min_dps, columns: args.columns.clone() },
        cheat: args.cheat,
        cheat_orders: args.daemon.test_only_cheat_orders,
    };
    let mut provider = DataProvider::new(config, roster);
    follow_forever(&mut daemon, &global.node, |d, block| provider.on_block(d, block))?;
    Ok(ExitCode::SUCCESS)
}

/// `lemal cn serve`.
pub fn cn(action: CnAction, global: &Global) -> Result<ExitCode> {
    let CnAction::Serve(args) = action;
    let keys = read_key(&args.daemon.key, Role::Cn)?;
    ensure!(
        !args.cheat.contains(&ProofKind::Range),
        "--cheat range: a computing node makes no range proof"
    );
    let (metrics, registry) = Metrics::new();
    let mut daemon = serve_common(global, &args.daemon, &keys, metrics.clone())?;
    let limit = RateLimit { per_minute: args.register_rate, burst: args.register_burst };
    let allowed: Vec<String> = args.register_allow.iter().map(Cidr::to_string).collect();
    let admission = Admission::new(args.register_allow.clone(), limit);
    let registrar =
        Registrar::new(daemon.chain_id.clone(), keys.clone(), &global.node, metrics, admission)?;
    let bound =
        crate::metrics::serve_with(socket_addr(&args.listen)?, Arc::new(registry), registrar)
            .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        endpoint = %bound,
        register_rate = limit.per_minute.get(),
        register_burst = limit.burst.get(),
        register_allow = if allowed.is_empty() { "every source".to_owned() } else { allowed.join(",") },
        "serving registrations and metrics"
    );
    let roster = daemon.node.roster()?;
    let config = CnConfig {
        keys,
        cheat: args.cheat.clone(),
        cheat_orders: args.daemon.test_only_cheat_orders,
    };
    let mut node = ComputingNode::resume(config, roster, &daemon)?;
    follow_forever(&mut daemon, &global.node, |d, block| node.on_block(d, block))?;
    Ok(ExitCode::SUCCESS)
}

/// `lemal query ...`: the querier's commands.
#[derive(Debug, Subcommand)]
pub enum QueryAction {
    /// Plan a query with a fresh querier key, have a computing node register it, print its id.
    #[command(
        after_help = "Example:\n  lemal query submit --sql 'SELECT avg(x) FROM y WHERE z < 321' --noise 2\n  \
                            lemal query result <ID>"
    )]
    Submit(SubmitArgs),
    /// Wait for a query's skipblock, decrypt the result with the querier key and verify the
    /// block as a light client.
    Result {
        /// The query id.
        id: String,
        /// Seconds to wait for the skipblock.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

/// Options of `lemal query submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The query.
    #[arg(long, default_value = "SELECT avg(x) FROM y WHERE z < 321")]
    pub sql: String,
    /// Data providers asked (the first N of the roster) [default: all].
    #[arg(long)]
    pub dps: Option<u32>,
    /// Computing nodes, in order (the first N of the roster) [default: all].
    #[arg(long)]
    pub cns: Option<u32>,
    /// Bounds, noise, threshold and deadlines.
    #[command(flatten)]
    pub options: QueryOptions,
    /// Endpoint of the computing node that registers it [default: the localnet's first
    /// computing node of the query].
    #[arg(long, value_name = "URL")]
    pub via: Option<String>,
}

/// The querier's folder under `home`.
pub fn querier_dir(home: &Path) -> PathBuf {
    home.join("queries")
}

/// The endpoint of computing node `cn` in the localnet under `home`.
pub fn localnet_endpoint(home: &Path, cn: u32) -> Result<String> {
    let manifest = Manifest::load(&Layout::new(home)?)
        .context("no --via given and no localnet to find a computing node's endpoint in")?;
    manifest
        .parties
        .iter()
        .find(|p| p.entity == lemal_contracts::ids::EntityId::cn(cn))
        .and_then(|p| p.endpoint.clone())
        .ok_or_else(|| anyhow!("the localnet runs no daemon for cn-{cn}; give --via URL"))
}

/// Plan and register a query; its id, the plan and the registration's transaction hash.
pub fn submit(args: &SubmitArgs, global: &Global) -> Result<(pipeline::QueryPlan, String, String)> {
    let query = sql::parse(&args.sql)?;
    let node = Node::connect(&global.node)?;
    let status = node.status().with_context(|| format!("is a node running at {}?", global.node))?;
    let roster = node.roster()?;
    let dps = args.dps.unwrap_or(roster.dps.len() as u32);
    let cns = args.cns.unwrap_or(roster.cns.len() as u32);
    ensure!(
        (1..=roster.dps.len() as u32).contains(&dps)
            && (1..=roster.cns.len() as u32).contains(&cns),
        "the roster has {} data providers and {} computing nodes; asked for {dps} and {cns}",
        roster.dps.len(),
        roster.cns.len()
    );
    ensure!(
        dps >= cns,
        "--dps {dps} is below --cns {cns}: every computing node needs a data provider"
    );
    let opts = args.options.plan_options(dps, cns);
    let plan = pipeline::plan(&status.chain_id, query, &opts, &mut rand_core::OsRng);
    plan.registration.spec.check().context("the query's parameters")?;
    let via = match &args.via {
        Some(v) => v.clone(),
        None => localnet_endpoint(&global.home, plan.registration.spec.cns[0])?,
    };
    // The key is kept before the query exists: a registered query is never without it.
    let record = QuerierRecord::of(&status.chain_id, &plan, &via, "");
    record.save(&querier_dir(&global.home))?;
    let tx = querier::register_via(&via, &plan.registration)?;
    QuerierRecord { tx: tx.clone(), ..record }.save(&querier_dir(&global.home))?;
    let q = plan.registration.query_id.to_string();
    Ok((plan, q, tx))
}

/// `lemal query ...`.
pub fn query(action: QueryAction, global: &Global) -> Result<ExitCode> {
    match action {
        QueryAction::Submit(args) => {
            let (plan, q, tx) = submit(&args, global)?;
            let doc = json!({
                "query_id": q,
                "sql": plan.query.to_string(),
                "tx": tx,
                "dps": plan.registration.spec.dps.len(),
                "cns": plan.registration.spec.cns.len(),
            });
            super::emit(global, &doc, || format!("{q}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
        QueryAction::Result { id, timeout } => result(&id, Duration::from_secs(timeout), global),
    }
}

fn result(id: &str, timeout: Duration, global: &Global) -> Result<ExitCode> {
    let q: QueryId = id.parse().map_err(|e| anyhow!("query id {id}: {e}"))?;
    let record = QuerierRecord::load(&querier_dir(&global.home), &q)?;
    let secret = record.secret()?;
    let node = Node::connect(&global.node)?;
    // A query just submitted may not be in a block yet: its registration says when it is.
    if let Ok(hash) = <[u8; 32]>::try_from(hex::decode(&record.tx).unwrap_or_default()) {
        let outcome = node.wait_tx(hash, timeout).context("waiting for the registration")?;
        ensure!(
            outcome.code == 0,
            "the registration of query {q} was refused in block {} with code {}: {}",
            outcome.height,
            outcome.code,
            outcome.log
        );
    }
    let block = querier::wait_skipblock(&global.node, &q, timeout)?;
    let BlockPayload::Query(payload) = &block.payload else {
        bail!("the skipblock of query {q} is not a query block");
    };
    let spec = node
        .query_record(&q)?
        .ok_or_else(|| anyhow!("query {q} is not registered"))?
        .registration
        .spec;
    let table = pipeline::decryption_table(&spec);
    let components: Option<Vec<i64>> = if payload.result.is_empty() {
        None
    } else {
        Some(
            payload
                .result
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    table
                        .decrypt(&secret, c)
                        .ok_or_else(|| anyhow!("result component {i} does not decrypt"))
                })
                .collect::<Result<_>>()?,
        )
    };
    let answer = components.as_ref().and_then(|c| data::answer(spec.operation, c));
    let verification = verify_skipblock(&node, &block, &q, global, timeout);
    let names = |ids: &[lemal_contracts::ids::EntityId]| {
        ids.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let doc = json!({
        "query_id": q.to_string(),
        "sql": record.sql,
        "result": answer,
        "result_components": components,
        "covered_dps": names(&payload.covered),
        "uncovered_dps": names(&payload.uncovered),
        "skipblock": { "index": block.index, "hash": hex::encode(block.hash()), "height": block.ledger_height },
        "verified": verification.verified,
        "verification": verification.report,
    });
    let list = |v: Vec<String>| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    super::emit(global, &doc, || {
        format!(
            "query     {q}  {}\nresult    {}\ncovers    {}  (not covered: {})\nskipblock #{}  at height {}\nverified  {}\n",
            record.sql,
            answer.map_or("-".to_owned(), |a| a.to_string()),
            list(names(&payload.covered)),
            list(names(&payload.uncovered)),
            block.index,
            block.ledger_height,
            if verification.verified { "yes" } else { "NO" },
        )
    })?;
    if verification.verified {
        Ok(ExitCode::SUCCESS)
    } else {
        let code = verification.error.as_ref().map_or(EXIT_FAULT, exit_code_of);
        Ok(ExitCode::from(code))
    }
}
