//! The party daemons of a localnet: one `lemal dp serve` or `lemal cn serve` per data provider
//! and computing node, each with only its own key file, on ports after the nodes'.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lemal_contracts::ids::{EntityId, Role};
use serde::{Deserialize, Serialize};

use super::{
    died, io, processes, spawn, stop_records, Layout, LocalnetError, Manifest, NodeInfo,
    ProcessRecord, UpOptions, PORT_STRIDE,
};

/// One party daemon of the manifest (`lemal dp serve` or `lemal cn serve`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyInfo {
    /// The party.
    pub entity: EntityId,
    /// Its port on 127.0.0.1: a computing node's endpoint (registrations and metrics), a data
    /// provider's metrics.
    pub port: u16,
    /// A computing node's endpoint URL (`http://127.0.0.1:PORT`).
    pub endpoint: Option<String>,
    /// Its metrics URL.
    pub metrics: String,
    /// The RPC of the node it follows and sends to.
    pub rpc: String,
    /// Its state folder (journal, cheat orders).
    pub state: PathBuf,
}

/// The name of a party's process (and log): its entity name.
pub(super) fn party_process(entity: EntityId) -> String {
    entity.to_string()
}

/// The first port of the party daemons: after the last node's block of ports.
fn first_party_port(opts: &UpOptions) -> u32 {
    u32::from(opts.base_port) + u32::from(PORT_STRIDE) * opts.validators + 10
}

/// Every party's daemon: computing nodes first, then data providers, one port each from
/// [`first_party_port`] on; party `k` follows node `k mod validators`.
pub(super) fn party_infos(
    layout: &Layout,
    opts: &UpOptions,
    nodes: &[NodeInfo],
) -> Result<Vec<PartyInfo>, LocalnetError> {
    let entities = (0..opts.cns).map(EntityId::cn).chain((0..opts.dps).map(EntityId::dp));
    entities
        .enumerate()
        .map(|(k, entity)| {
            let port = u16::try_from(first_party_port(opts) + k as u32).map_err(|_| {
                LocalnetError::Config(format!(
                    "base port {} leaves no room for the party daemons' ports",
                    opts.base_port
                ))
            })?;
            let url = format!("http://127.0.0.1:{port}");
            Ok(PartyInfo {
                entity,
                port,
                endpoint: (entity.role == Role::Cn).then(|| url.clone()),
                metrics: format!("{url}/metrics"),
                rpc: nodes[k % nodes.len()].rpc.clone(),
                state: layout.net_dir().join("parties").join(entity.to_string()),
            })
        })
        .collect()
}

/// The command line of a party's daemon.
fn party_args(layout: &Layout, manifest: &Manifest, p: &PartyInfo) -> Vec<String> {
    let mut args = vec![
        "--node".into(),
        p.rpc.clone(),
        "--home".into(),
        layout.home.to_string_lossy().into_owned(),
    ];
    let common = |args: &mut Vec<String>| {
        args.extend([
            "serve".into(),
            "--key".into(),
            layout.key_file(p.entity).to_string_lossy().into_owned(),
            "--state".into(),
            p.state.to_string_lossy().into_owned(),
            "--test-only-cheat-orders".into(),
        ]);
    };
    match p.entity.role {
        Role::Cn => {
            args.push("cn".into());
            common(&mut args);
            args.extend(["--listen".into(), format!("127.0.0.1:{}", p.port)]);
        }
        _ => {
            args.push("dp".into());
            common(&mut args);
            args.extend([
                "--seed".into(),
                manifest.data_seed.to_string(),
                "--metrics".into(),
                format!("127.0.0.1:{}", p.port),
            ]);
        }
    }
    args
}

/// Start the party daemons of the localnet under `layout` that are not running (all, or only
/// `only`); returns their names once each listens on its port.
pub fn start_parties(
    layout: &Layout,
    only: Option<EntityId>,
    progress: &dyn Fn(&str),
) -> Result<Vec<String>, LocalnetError> {
    let manifest = Manifest::load(layout)?;
    if let Some(e) = only {
        if !manifest.parties.iter().any(|p| p.entity == e) {
            return Err(LocalnetError::Config(format!("the localnet runs no daemon for {e}")));
        }
    }
    let Some(lemal) = manifest.lemal.clone() else { return Ok(Vec::new()) };
    let live: Vec<String> =
        processes(layout)?.into_iter().filter(ProcessRecord::is_running).map(|p| p.name).collect();
    let mut started = Vec::new();
    for p in manifest.parties.iter().filter(|p| only.is_none_or(|e| e == p.entity)) {
        let name = party_process(p.entity);
        if live.contains(&name) {
            continue;
        }
        fs::create_dir_all(&p.state).map_err(io(format!("creating {}", p.state.display())))?;
        let record = spawn(layout, &name, None, &lemal, &party_args(layout, &manifest, p))?;
        started.push((record, p.port));
    }
    for (record, port) in &started {
        let begin = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if !record.is_running() {
                return Err(died(record));
            }
            if begin.elapsed() > Duration::from_secs(20) {
                return Err(LocalnetError::Timeout(
                    Duration::from_secs(20),
                    format!("{} to listen on port {port}", record.name),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if !started.is_empty() {
        progress(&format!("started {} party daemons", started.len()));
    }
    Ok(started.into_iter().map(|(r, _)| r.name).collect())
}

/// Stop the daemon of party `entity`; the rest keeps running and its journal stays for
/// [`start_parties`].
pub fn stop_party(
    layout: &Layout,
    entity: EntityId,
    grace: Duration,
) -> Result<Vec<String>, LocalnetError> {
    let manifest = Manifest::load(layout)?;
    if !manifest.parties.iter().any(|p| p.entity == entity) {
        return Err(LocalnetError::Config(format!("the localnet runs no daemon for {entity}")));
    }
    let name = party_process(entity);
    let records = processes(layout)?.into_iter().filter(|p| p.name == name).collect();
    stop_records(layout, records, grace)
}

/// One party daemon's state as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PartyStatus {
    /// The party.
    pub entity: EntityId,
    /// Whether its daemon runs.
    pub running: bool,
    /// A computing node's endpoint.
    pub endpoint: Option<String>,
    /// Its metrics URL.
    pub metrics: String,
}

/// The state of every party daemon of the localnet under `layout`.
pub fn party_status(layout: &Layout) -> Result<Vec<PartyStatus>, LocalnetError> {
    let manifest = Manifest::load(layout)?;
    let procs = processes(layout)?;
    Ok(manifest
        .parties
        .iter()
        .map(|p| PartyStatus {
            entity: p.entity,
            running: procs.iter().any(|r| r.name == party_process(p.entity) && r.is_running()),
            endpoint: p.endpoint.clone(),
            metrics: p.metrics.clone(),
        })
        .collect())
}

/// The log file of party `entity`'s daemon.
pub fn party_log(layout: &Layout, entity: EntityId) -> PathBuf {
    layout.log(&party_process(entity))
}
