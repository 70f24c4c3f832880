//! A network made by `lemal network generate --hosts ...` and run from its start scripts, every
//! validator and every party on a host of its own: network namespaces this test creates and
//! removes (also when it fails, see [`super::netns`]).
//!
//! Layout (subnet 10.78.0.0/24, bridge in the hub at .254): validator i in `n{i}` at `.{i+1}`,
//! computing node k in `c{k}` at `.{11+k}`, data provider k in `d{k}` at `.{21+k}`. The test
//! re-runs itself inside the hub (the ignored `multihost_inside_the_hub`) and plays the querier
//! there. It checks the generated configs, runs a query whose data providers answer from the
//! `data.csv` beside their start scripts, reads the verified result on another node, checks the
//! exact sum, and that a start script stops both of a node's processes when terminated.

// Not consensus code: every wait is bounded by the wall clock.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lemal_client::metrics;
use lemal_client::network::{Network, NetworkNode};
use lemal_client::rpc::Node;
use serde_json::Value;

use super::end_to_end::{app_hashes_agree_on, bin_dir, cometbft, Localnet};
use super::netns::{pids_in, run_in_hub};

const VALIDATORS: usize = 4;
const CNS: usize = 2;
const DPS: usize = 4;
const SUBNET: &str = "10.78.0";
const TAG_ENV: &str = "LEMAL_MULTIHOST_TAG";
const PARTY_PORT: u16 = 27100;

fn members() -> Vec<(String, u8)> {
    let nodes = (0..VALIDATORS).map(|i| (format!("n{i}"), 1 + i as u8));
    let cns = (0..CNS).map(|k| (format!("c{k}"), 11 + k as u8));
    let dps = (0..DPS).map(|k| (format!("d{k}"), 21 + k as u8));
    nodes.chain(cns).chain(dps).collect()
}

fn address(n: u8) -> String {
    format!("{SUBNET}.{n}")
}

#[test]
fn a_generated_network_runs_with_every_validator_and_party_on_a_host_of_its_own() -> Result<()> {
    let _one_at_a_time = super::end_to_end::one_localnet_at_a_time();
    run_in_hub("lm", SUBNET, &members(), "multihost::multihost_inside_the_hub", TAG_ENV)
}

/// The processes the test started from start scripts; killed when dropped (the namespaces'
/// removal kills whatever they left).
struct Scripts {
    children: Vec<(String, Child)>,
    logs: PathBuf,
}

impl Scripts {
    /// Run `script` in the namespace `netns` with `vars`, its output in `LOGS/name.log`.
    fn start(
        &mut self,
        name: &str,
        netns: &str,
        script: &Path,
        vars: &[(&str, String)],
    ) -> Result<()> {
        let log = fs::File::create(self.logs.join(format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "sh"])
            .arg(script)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    fn show_logs(&self) {
        for (name, _) in &self.children {
            let text =
                fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("==> {name} <==\n{}", lines[lines.len().saturating_sub(20)..].join("\n"));
        }
    }
}

impl Drop for Scripts {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
#[ignore = "run by a_generated_network_runs_with_every_validator_and_party_on_a_host_of_its_own, inside its namespaces"]
fn multihost_inside_the_hub() -> Result<()> {
    let tag = std::env::var(TAG_ENV).context(
        "run a_generated_network_runs_with_every_validator_and_party_on_a_host_of_its_own instead",
    )?;
    // The querier's home; it runs no localnet (dropping it stops nothing).
    let lemal = Localnet {
        home: tempfile::Builder::new().prefix("lemal-multihost-").tempdir()?,
        bin: bin_dir()?,
    };
    let logs = lemal.home.path().join("logs");
    fs::create_dir_all(&logs)?;
    let mut scripts = Scripts { children: Vec::new(), logs };
    let begin = Instant::now();
    let outcome = scenario(&lemal, &tag, &mut scripts);
    if let Err(e) = &outcome {
        eprintln!("multihost: failed: {e:#}");
        scripts.show_logs();
    }
    eprintln!("multihost: took {:?}", begin.elapsed());
    outcome
}

/// Wait up to `limit` for `ready`, naming `what` on timeout.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let begin = Instant::now();
    while !ready() {
        if begin.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("multihost: {what} after {:?}", begin.elapsed());
    Ok(())
}

/// The generated configs: each node listens on its host, names it as its external address and
/// every other node as a persistent peer; each folder holds only its owner's key, mode 0600.
fn check_files(out: &Path, net: &Network) -> Result<()> {
    for (i, node) in net.nodes.iter().enumerate() {
        let config = fs::read_to_string(out.join(&node.name).join("config/config.toml"))?;
        let me = address(1 + i as u8);
        for want in
            [format!("external_address = \"{me}:26656\""), format!("laddr = \"tcp://{me}:26657\"")]
        {
            ensure!(config.contains(&want), "{}'s config lacks {want}", node.name);
        }
        let peers = config
            .lines()
            .find_map(|l| l.strip_prefix("persistent_peers = "))
            .context("no persistent_peers")?;
        for (j, other) in net.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            let want = format!("{}@{}:26656", other.node_id, address(1 + j as u8));
            ensure!(peers.contains(&want), "{}'s peers {peers} lack {want}", node.name);
        }
        ensure!(!peers.contains(&node.node_id), "{} is its own peer", node.name);
    }
    let mut folders: Vec<(PathBuf, String)> =
        net.nodes.iter().map(|n| (out.join(&n.name), n.vn.to_string())).collect();
    folders.extend(net.parties.iter().map(|p| (out.join(&p.dir), p.entity.to_string())));
    for (folder, owner) in folders {
        let keys: Vec<String> = fs::read_dir(&folder)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        ensure!(keys == [format!("{owner}.json")], "{} holds {keys:?}", folder.display());
        let mode = fs::metadata(folder.join(&keys[0]))?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{owner}'s key has mode {mode:03o}");
    }
    Ok(())
}

fn scenario(lemal: &Localnet, tag: &str, scripts: &mut Scripts) -> Result<()> {
    let out = lemal.home.path().join("network");
    let hosts: Vec<String> = (0..VALIDATORS).map(|i| address(1 + i as u8)).collect();
    let cometbft = cometbft()?;
    let text = lemal.ok(&[
        "--json",
        "network",
        "generate",
        "--hosts",
        &hosts.join(","),
        "--dps",
        &DPS.to_string(),
        "--cns",
        &CNS.to_string(),
        "--chain-id",
        "lemal-multihost",
        "--block-time",
        "300",
        "--out",
        &out.to_string_lossy(),
        "--cometbft",
        &cometbft.to_string_lossy(),
    ])?;
    let net: Network = serde_json::from_str(&text).with_context(|| format!("generate: {text}"))?;
    ensure!(net.nodes.len() == VALIDATORS && net.parties.len() == CNS + DPS, "{net:?}");
    check_files(&out, &net)?;
    let again =
        lemal.ok(&["network", "generate", "--hosts", "10.0.0.1", "--out", &out.to_string_lossy()]);
    let refused = again.err().map(|e| format!("{e:#}")).unwrap_or_default();
    ensure!(refused.contains("is not empty"), "generate into a used folder: {refused:?}");

    // Every validator on its host, from its start script alone.
    let bin = &lemal.bin;
    let binaries = [
        ("LEMAL_VN", bin.join("lemal-vn").to_string_lossy().into_owned()),
        ("COMETBFT", cometbft.to_string_lossy().into_owned()),
        ("LEMAL", bin.join("lemal").to_string_lossy().into_owned()),
    ];
    // lemal-vn's metrics face the host's address here, as an operator would set them for a
    // scraper on another machine (the script's default is loopback).
    let vn_metrics = |node: &NetworkNode| format!("{}:{}", node.host, node.ports.vn_metrics);
    for (i, node) in net.nodes.iter().enumerate() {
        let ns = format!("{tag}-n{i}");
        let mut vars = binaries.to_vec();
        vars.push(("LEMAL_VN_METRICS", vn_metrics(node)));
        scripts.start(&node.name, &ns, &out.join(&node.name).join("start.sh"), &vars)?;
    }
    let rpcs: Vec<String> = net.nodes.iter().map(|n| n.rpc.clone()).collect();
    wait_for("every node at height 3 with 3 peers", Duration::from_secs(90), || {
        rpcs.iter().all(|r| {
            Node::connect(r).is_ok_and(|n| {
                n.status().is_ok_and(|s| s.height >= 3) && n.peer_count().is_ok_and(|p| p == 3)
            })
        })
    })?;

    // The parties on hosts of their own; each provider answers from the table beside its script.
    let mut expected = 0i64;
    for (k, party) in net.parties.iter().enumerate() {
        let folder = out.join(&party.dir);
        let (ns, listen) = if k < CNS {
            (
                format!("{tag}-c{k}"),
                ("LEMAL_LISTEN", format!("{}:{PARTY_PORT}", address(11 + k as u8))),
            )
        } else {
            let d = k - CNS;
            let rows: Vec<i64> = (0..5).map(|r| 10 * (d as i64 + 1) + 7 * r).collect();
            expected += rows.iter().sum::<i64>();
            let csv: String = rows.iter().map(|v| format!("{v},{r}\n", r = v % 3)).collect();
            fs::write(folder.join("data.csv"), format!("x,z\n{csv}"))?;
            (
                format!("{tag}-d{d}"),
                ("LEMAL_METRICS", format!("{}:{}", address(21 + d as u8), PARTY_PORT + 100)),
            )
        };
        let mut vars = binaries.to_vec();
        vars.push((listen.0, listen.1));
        scripts.start(&party.entity.to_string(), &ns, &folder.join("start.sh"), &vars)?;
    }
    let endpoints: Vec<String> = (0..CNS)
        .map(|k| format!("{}:{PARTY_PORT}", address(11 + k as u8)))
        .chain((0..DPS).map(|d| format!("{}:{}", address(21 + d as u8), PARTY_PORT + 100)))
        .collect();
    wait_for("every party listening on its host", Duration::from_secs(30), || {
        endpoints.iter().all(|e| std::net::TcpStream::connect(e).is_ok())
    })?;

    // The querier, in the hub: registers through cn-1 on its host, reads the result on node 2.
    let genesis = out.join("genesis.json");
    let genesis = genesis.to_string_lossy();
    let via = format!("http://{}:{PARTY_PORT}", address(12));
    let submitted = lemal.ok(&[
        "--node",
        &rpcs[0],
        "--genesis",
        &genesis,
        "--json",
        "query",
        "submit",
        "--sql",
        "SELECT sum(x) FROM t",
        "--via",
        &via,
    ])?;
    let submitted: Value = serde_json::from_str(&submitted)?;
    let id = submitted["query_id"].as_str().context("query id")?.to_owned();
    let result = lemal.ok(&[
        "--node",
        &rpcs[2],
        "--genesis",
        &genesis,
        "--json",
        "query",
        "result",
        &id,
        "--timeout",
        "120",
    ])?;
    let result: Value = serde_json::from_str(&result)?;
    eprintln!(
        "multihost: result {} (expected {expected}), covers {}",
        result["result"], result["covered_dps"]
    );
    ensure!(result["verified"] == Value::Bool(true), "{}", result["verification"]);
    ensure!(result["result"].as_f64() == Some(expected as f64), "{result}");
    let all: Vec<String> = (0..DPS).map(|d| format!("dp-{d}")).collect();
    ensure!(result["covered_dps"] == serde_json::json!(all), "{result}");

    // Each provider sent its range proof from its own host: its metrics there say so, and its
    // namespace holds its daemon.
    for d in 0..DPS {
        let url = format!("http://{}:{}/metrics", address(21 + d as u8), PARTY_PORT + 100);
        let samples = metrics::scrape(&url)?;
        let sent = samples.get("lemal_party_submissions_total", &[("kind", "range")]);
        ensure!(sent == Some(1.0), "dp-{d} reports {sent:?} range proofs sent");
        ensure!(!pids_in(&format!("{tag}-d{d}"))?.is_empty(), "nothing runs in dp-{d}'s namespace");
    }
    let at = app_hashes_agree_on(&rpcs)?;
    eprintln!("multihost: the 4 nodes on 4 hosts agree at height {at}");

    // Each verifying node's own metrics, scraped across the bridge, follow the chain.
    for node in &net.nodes {
        let url = format!("http://{}/metrics", vn_metrics(node));
        let samples = metrics::scrape(&url)?;
        let height = samples.get("lemal_committed_height", &[]);
        ensure!(height.is_some_and(|h| h >= at as f64), "{} reports height {height:?}", node.name);
    }

    // A terminated start script stops both of its node's processes.
    let (_, script) = scripts.children.iter_mut().find(|(n, _)| n == "node3").context("node3")?;
    let term = Command::new("kill").args(["-TERM", &script.id().to_string()]).status()?;
    ensure!(term.success(), "kill -TERM node3's script: {term}");
    let ns3 = format!("{tag}-n3");
    wait_for("node3's processes to stop after SIGTERM", Duration::from_secs(20), || {
        pids_in(&ns3).is_ok_and(|p| p.is_empty())
    })?;
    Ok(())
}
