//! End to end against a real CometBFT localnet: a fresh 4-validator network on 127.0.0.1 (base
//! port 21656 or `LEMAL_E2E_BASE_PORT`, a temporary home), the report's example query run
//! through the `lemal` CLI, the result checked against the plaintext answer, the skipblock read
//! from a node other than the one that received the transactions, equal app hashes on every
//! node, a cheating data provider caught by every verifying node, and a node that stops and
//! comes back: the others go on without it, and it catches up to their app hash. Along the way:
//! key files of mode 0600, ABCI over unix sockets, `lemal-vn` refusing a readable key, and the
//! trust-root checks of `trust_roots` (a lying proxy, and a second one-validator localnet on the
//! ports 1000 above that reuses the chain id), and the Prometheus metrics of every `lemal-vn`
//! and of a CometBFT.
//!
//! It needs the binaries `lemal` and `lemal-vn` of the same build profile as the test
//! (`cargo build --bins`, which `make test` runs first) or in the folder named by
//! `LEMAL_BIN_DIR`, and CometBFT v0.38.25: `LEMAL_COMETBFT`, else it is installed once into the
//! workspace's git-ignored `.lemal/bin` with `go install`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use lemal_client::localnet::{self, Layout};
use lemal_client::metrics;
use lemal_client::rpc::Node;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Verdict};
use lemal_contracts::state::BlockPayload;
use serde_json::Value;

/// The localnet's first port; `LEMAL_E2E_BASE_PORT` moves it (two checkouts testing at once).
fn base_port() -> u16 {
    std::env::var("LEMAL_E2E_BASE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(21656)
}
pub(crate) const VALIDATORS: usize = 4;
pub(crate) const QUERY: &str = "SELECT avg(x) FROM y WHERE z < 321";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Tests that start localnets run one at a time: on two cores, two localnets at once slow each
/// other's blocks enough to blur what the tests time.
static LOCALNETS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold this while a localnet of a test runs.
pub(crate) fn one_localnet_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    LOCALNETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn rpc(node: usize) -> String {
    format!("http://127.0.0.1:{}", base_port() as usize + 1 + 100 * node)
}

/// The binaries' folder: `LEMAL_BIN_DIR`, else the profile folder this test was built in
/// (`target/debug` under `cargo test`, the test itself being in its `deps/`).
pub(crate) fn bin_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("LEMAL_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("the test executable has no profile folder")?
            .to_path_buf(),
    };
    for bin in ["lemal", "lemal-vn"] {
        ensure!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (`cargo build --bins`, as `make test` \
             does) or point LEMAL_BIN_DIR at them",
            dir.join(bin).display()
        );
    }
    Ok(dir)
}

/// CometBFT v0.38.25, installed once into the workspace's `.lemal/bin` when not given.
pub(crate) fn cometbft() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LEMAL_COMETBFT") {
        return Ok(PathBuf::from(p));
    }
    let layout = Layout::new(&workspace().join(".lemal"))?;
    Ok(localnet::ensure_cometbft(&layout, None, &|m| eprintln!("e2e: {m}"))?)
}

/// A localnet in a temporary home, stopped (every process group it started killed) when
/// dropped, whether the test passed or not.
pub(crate) struct Localnet {
    pub(crate) home: tempfile::TempDir,
    pub(crate) bin: PathBuf,
}

impl Drop for Localnet {
    fn drop(&mut self) {
        match Layout::new(self.home.path()) {
            Ok(layout) => {
                if let Err(e) = localnet::down(&layout, Duration::from_secs(5)) {
                    eprintln!("e2e: stopping the localnet: {e}");
                }
            }
            Err(e) => eprintln!("e2e: stopping the localnet: {e}"),
        }
    }
}

impl Localnet {
    /// `lemal --home HOME ARGS...`, with none of the caller's `LEMAL_*` settings (they would
    /// change the network's defaults this test relies on) and known chains kept in the home.
    pub(crate) fn lemal(&self, args: &[&str]) -> Result<Output> {
        self.lemal_with_env(args, &[])
    }

    /// The arguments of `lemal localnet up` for this localnet without party daemons (`lemal
    /// run` plays every party, and the test may send any party's transactions itself): its
    /// `lemal-vn`, `cometbft`, base port and chain id, then `extra`.
    pub(crate) fn up_args(
        &self,
        cometbft: &Path,
        base_port: u16,
        chain_id: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args = self.up_args_with_parties(cometbft, base_port, chain_id, extra);
        args.push("--no-parties".into());
        args
    }

    /// The arguments of `lemal localnet up` for this localnet, with a daemon per party.
    pub(crate) fn up_args_with_parties(
        &self,
        cometbft: &Path,
        base_port: u16,
        chain_id: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = ["localnet", "up", "--base-port"].map(String::from).into();
        args.push(base_port.to_string());
        args.extend(["--chain-id".into(), chain_id.into(), "--cometbft".into()]);
        args.push(cometbft.to_string_lossy().into_owned());
        args.push("--lemal-vn".into());
        args.push(self.bin.join("lemal-vn").to_string_lossy().into_owned());
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    /// `lemal ARGS...` with the environment variables `vars` set.
    pub(crate) fn lemal_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Result<Output> {
        let mut command = Command::new(self.bin.join("lemal"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LEMAL_") {
                command.env_remove(name);
            }
        }
        let out = command
            .envs(vars.iter().copied())
            .env("LEMAL_KNOWN_CHAINS", self.home.path().join("known-chains.toml"))
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .output()
            .with_context(|| format!("running lemal {args:?}"))?;
        eprintln!("e2e: {vars:?} lemal {} -> {}", args.join(" "), out.status);
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok(out)
    }

    /// `lemal ARGS...` that must succeed; its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.lemal(args)?;
        if !out.status.success() {
            bail!("lemal {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `lemal --node RPC0 --json run ARGS...`, parsed.
    pub(crate) fn run(&self, args: &[&str]) -> Result<Value> {
        let node = rpc(0);
        let mut all = vec!["--node", node.as_str(), "--json", "run"];
        all.extend_from_slice(args);
        let text = self.ok(&all)?;
        serde_json::from_str(&text).with_context(|| format!("lemal run printed {text:?}"))
    }
}

/// `lemal verify` and `lemal audit` of a query against a node: whether each passed, and the
/// creators of the proofs the audit found wrong.
fn verify_and_audit(net: &Localnet, query: &str, node: &str) -> Result<([bool; 2], Vec<String>)> {
    let mut passed = [false; 2];
    let mut wrong = Vec::new();
    for (i, cmd) in ["verify", "audit"].into_iter().enumerate() {
        let out = net.lemal(&["--node", node, "--json", cmd, query])?;
        let doc: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("lemal {cmd} printed {:?}", String::from_utf8_lossy(&out.stdout))
        })?;
        eprintln!("e2e: lemal {cmd}: {doc}");
        passed[i] = out.status.success();
        if cmd == "audit" {
            let proofs = doc["findings"]["proofs"].as_array().context("audit lists no proofs")?;
            wrong = proofs
                .iter()
                .filter(|p| p["correct"] == Value::Bool(false))
                .map(|p| p["creator"].as_str().unwrap_or("?").to_owned())
                .collect();
        }
    }
    Ok((passed, wrong))
}

fn as_u64(v: &Value, what: &str) -> Result<u64> {
    v.as_u64().with_context(|| format!("{what} is not a number: {v}"))
}

/// Every node reports the same app hash in its header at one common height.
fn app_hashes_agree() -> Result<u64> {
    let rpcs: Vec<String> = (0..VALIDATORS).map(rpc).collect();
    app_hashes_agree_on(&rpcs)
}

/// Clients of the nodes at `rpcs`, and the lowest of their heights.
pub(crate) fn common_height(rpcs: &[String]) -> Result<(Vec<Node>, u64)> {
    let nodes: Vec<Node> = rpcs.iter().map(|r| Node::connect(r)).collect::<Result<_, _>>()?;
    let height = nodes
        .iter()
        .map(|n| n.status().map(|s| s.height))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .min()
        .context("no node")?;
    Ok((nodes, height))
}

/// Every node of `rpcs` reports the same app hash in its header at the lowest of their heights;
/// that height.
pub(crate) fn app_hashes_agree_on(rpcs: &[String]) -> Result<u64> {
    let (nodes, height) = common_height(rpcs)?;
    let mut hashes = Vec::new();
    for n in &nodes {
        hashes.push(n.block(height)?.header.app_hash.as_bytes().to_vec());
    }
    ensure!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "app hashes differ at height {height}: {:?}",
        hashes.iter().map(hex::encode).collect::<Vec<_>>()
    );
    Ok(height)
}

/// The localnet's key files are readable by their owner only, each CometBFT speaks ABCI to its
/// `lemal-vn` over a unix socket, and `lemal-vn` refuses a key file that others may read.
fn keys_and_the_abci_socket_are_private(net: &Localnet) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let layout = Layout::new(net.home.path())?;
    for entity in [EntityId::vn(0), EntityId::cn(0), EntityId::dp(0)] {
        let path = layout.key_file(entity);
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{} has mode {mode:03o}", path.display());
    }
    for i in 0..VALIDATORS {
        let config = std::fs::read_to_string(layout.node_dir(i).join("config/config.toml"))?;
        let want = format!("proxy_app = \"{}\"", layout.abci_socket(i));
        ensure!(config.contains(&want), "node {i}'s config lacks {want}");
    }
    let readable = net.home.path().join("vn-0-readable.json");
    std::fs::copy(layout.key_file(EntityId::vn(0)), &readable)?;
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644))?;
    let socket = format!("unix://{}", net.home.path().join("refused.sock").display());
    let home = net.home.path().join("refused");
    let out = Command::new(net.bin.join("lemal-vn"))
        .args(["--home".as_ref(), home.as_os_str()])
        .args(["--abci", &socket, "--key"])
        .arg(&readable)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("e2e: lemal-vn with a readable key -> {}: {stderr}", out.status);
    ensure!(!out.status.success(), "lemal-vn started with a key file of mode 644");
    ensure!(stderr.contains(&format!("chmod 600 {}", readable.display())), "{stderr}");
    Ok(())
}

/// The end of every log of the localnet, to tell why a step failed.
pub(crate) fn show_logs(net: &Localnet) {
    let Ok(layout) = Layout::new(net.home.path()) else { return };
    for file in localnet::log_files(&layout, None).unwrap_or_default() {
        if let Ok((text, _)) = localnet::tail(&file, 25) {
            eprintln!("==> {} <==\n{text}", file.display());
        }
    }
}

#[test]
fn a_fresh_localnet_runs_the_reports_query_catches_a_cheater_and_outlives_a_stopped_node(
) -> Result<()> {
    let _one_at_a_time = one_localnet_at_a_time();
    let bin = bin_dir()?;
    let cometbft = cometbft()?;
    let net = Localnet { home: tempfile::Builder::new().prefix("lemal-e2e-").tempdir()?, bin };
    let outcome = scenario(&net, &cometbft);
    if let Err(e) = &outcome {
        eprintln!("e2e: failed: {e:#}");
        show_logs(&net);
    }
    outcome
}

/// Every verifying node's metrics, after the cheating run (every node verified every proof):
/// range proofs counted correct and wrong and timed, bitmaps broadcast, blocks finalized and
/// committed, a worker lag; node 2, which refused the hostile transactions, counted CheckTx
/// rejections; and a CometBFT's own metrics report its consensus height.
fn metrics_count_what_the_nodes_did(net: &Localnet) -> Result<()> {
    let manifest = localnet::Manifest::load(&Layout::new(net.home.path())?)?;
    for (i, node) in manifest.nodes.iter().enumerate() {
        let url = node.vn_metrics_url();
        let m = metrics::scrape(&url).with_context(|| format!("scraping {url}"))?;
        let total = |name: &str, labels: &[(&str, &str)]| m.sum(name, labels).unwrap_or(0.0);
        let range = |verdict| [("kind", "range"), ("verdict", verdict)];
        let correct = total("lemal_proofs_verified_total", &range("correct"));
        let wrong = total("lemal_proofs_verified_total", &range("wrong"));
        let timed = total("lemal_verification_duration_seconds_count", &[("kind", "range")]);
        let bitmaps = total("lemal_bitmaps_broadcast_total", &[]);
        let blocks = total("lemal_finalize_block_duration_seconds_count", &[]);
        let commits = total("lemal_commit_duration_seconds_count", &[]);
        let lag = m.get("lemal_worker_lag_blocks", &[]).context("no lemal_worker_lag_blocks")?;
        let refused = total("lemal_checktx_rejections_total", &[]);
        eprintln!(
            "e2e: {url}: range proofs {correct} correct, {wrong} wrong, {timed} timed; \
             bitmaps {bitmaps}; blocks {blocks}, commits {commits}; worker lag {lag}; \
             CheckTx rejections {refused}"
        );
        ensure!(correct > 0.0 && wrong >= 1.0, "{url}: range proofs {correct}, {wrong}");
        ensure!(timed >= correct + wrong, "{url}: {timed} range verifications timed");
        ensure!(bitmaps >= 1.0, "{url}: no bitmap broadcast");
        ensure!(blocks > 0.0 && commits > 0.0, "{url}: blocks {blocks}, commits {commits}");
        ensure!(lag >= 0.0, "{url}: worker lag {lag}");
        if i == 2 {
            ensure!(refused > 0.0, "{url}: the hostile transactions left no CheckTx rejection");
        }
    }
    let url = manifest.nodes[0].cometbft_metrics_url();
    let m = metrics::scrape(&url).with_context(|| format!("scraping {url}"))?;
    let height = m.get("cometbft_consensus_height", &[]).context("no cometbft_consensus_height")?;
    eprintln!("e2e: {url}: cometbft_consensus_height {height}");
    ensure!(height > 0.0, "{url}: consensus height {height}");
    Ok(())
}

fn scenario(net: &Localnet, cometbft: &Path) -> Result<()> {
    let first_port = base_port();
    let up_args = net.up_args(cometbft, first_port, "lemal-e2e", &[]);
    let up: Vec<&str> = up_args.iter().map(String::as_str).collect();
    net.ok(&up)?;
    keys_and_the_abci_socket_are_private(net)?;

    // A second `up` on the running network refuses and leaves it running.
    let again = net.lemal(&up)?;
    ensure!(!again.status.success(), "a second `localnet up` succeeded");
    ensure!(String::from_utf8_lossy(&again.stderr).contains("already running"));
    let status: Value = serde_json::from_str(&net.ok(&["--json", "localnet", "status"])?)?;
    ensure!(status["healthy"] == Value::Bool(true), "status after a second up: {status}");
    for node in status["nodes"].as_array().context("nodes")? {
        ensure!(node["peers"] == (VALIDATORS - 1) as u64, "a node misses peers: {node}");
        ensure!(node["worker_lag"].is_u64(), "status reads no worker lag: {node}");
    }

    // The report's query, honest: the decrypted result is the plaintext answer.
    let honest = net.run(&["--query", QUERY])?;
    eprintln!("e2e: honest run: {honest:#}");
    ensure!(honest["problems"].as_array().is_some_and(Vec::is_empty), "{honest}");
    ensure!(honest["result"] == honest["expected"] && !honest["result"].is_null());
    ensure!(honest["result_components"] == honest["expected_components"]);
    ensure!(honest["noise"] == 0.0);
    let expected_entries = (12 + 2 * 6) * VALIDATORS as u64;
    let bitmap = &honest["bitmap"];
    ensure!(bitmap["0"] == 0 && bitmap["3"] == 0, "an honest run's bitmap: {bitmap}");
    ensure!(
        as_u64(&bitmap["1"], "bitmap 1")? + as_u64(&bitmap["2"], "bitmap 2")? == expected_entries
    );
    ensure!(honest["verified"] == Value::Bool(true), "{}", honest["verification"]);
    // The result covers every data provider, and the skipblock says so.
    let every_dp: Vec<String> = (0..12).map(|d| format!("dp-{d}")).collect();
    ensure!(honest["covered_dps"] == serde_json::json!(every_dp), "{}", honest["covered_dps"]);
    ensure!(honest["uncovered_dps"] == serde_json::json!([]), "{}", honest["uncovered_dps"]);
    ensure!(honest["skipblock"]["covered"] == honest["covered_dps"]);

    // The skipblock, read from another node than the one that received the transactions.
    let id: QueryId = honest["query_id"].as_str().context("query id")?.parse()?;
    let other = Node::connect(&rpc(2))?;
    let block = other.block_by_query(&id)?.context("node 2 has no skipblock for the query")?;
    ensure!(hex::encode(block.hash()) == honest["skipblock"]["hash"], "node 2's block differs");
    ensure!(block.index == as_u64(&honest["skipblock"]["index"], "index")?);
    let (passed, wrong) = verify_and_audit(net, &id.to_string(), &rpc(3))?;
    ensure!(passed == [true, true] && wrong.is_empty(), "honest query: {passed:?}, {wrong:?}");

    // Hostile transactions through RPC: each refused with its code, nothing reaches a block.
    let until = as_u64(&honest["skipblock"]["height"], "skipblock height")?;
    super::hostile::hostile_transactions_are_refused(net, &id, until)?;
    let height = app_hashes_agree()?;
    eprintln!("e2e: after the hostile transactions, app hashes agree at height {height}");

    // Trust roots: a lying node is caught, and another chain under the same chain id refused.
    super::trust_roots::lying_node_is_caught(net, &id.to_string())?;
    let other = Localnet {
        home: tempfile::Builder::new().prefix("lemal-e2e-other-").tempdir()?,
        bin: net.bin.clone(),
    };
    super::trust_roots::second_chain_is_refused(net, &other, first_port + 1000)?;

    // A cheating data provider with every verifying node checking every proof, and noise: the
    // chain derives the noise list from the signed scale and rows.
    let cheat = net.run(&[
        "--query",
        QUERY,
        "--cheat",
        "dp-1",
        "--threshold",
        "1000000",
        "--noise",
        "3",
        "--noise-rows",
        "8",
    ])?;
    eprintln!("e2e: cheating run: {cheat:#}");
    ensure!(cheat["cheat_detected"] == Value::Bool(true), "{cheat}");
    let bitmap = &cheat["bitmap"];
    ensure!(
        bitmap["0"] == VALIDATORS as u64 && bitmap["2"] == 0 && bitmap["3"] == 0,
        "with threshold 1000000 exactly the cheater's row is wrong: {bitmap}"
    );
    let id: QueryId = cheat["query_id"].as_str().context("query id")?.parse()?;
    let block = Node::connect(&rpc(1))?.block_by_query(&id)?.context("no skipblock on node 1")?;
    let BlockPayload::Query(payload) = &block.payload else { bail!("not a query block") };
    ensure!(cheat["verified"] == Value::Bool(true), "{}", cheat["verification"]);
    // The block verifies, and the audit names the cheater: it fails.
    let (passed, wrong) = verify_and_audit(net, &id.to_string(), &rpc(2))?;
    ensure!(passed == [true, false] && wrong == ["dp-1"], "cheating query: {passed:?}, {wrong:?}");
    let key = ProofKey { query: id, kind: ProofKind::Range, creator: EntityId::dp(1), index: 0 };
    for vn in 0..VALIDATORS as u32 {
        ensure!(
            payload.bitmap.get(&key, EntityId::vn(vn)) == Some(Verdict::Wrong),
            "vn-{vn} did not mark the cheater's range proof wrong"
        );
    }

    let height = app_hashes_agree()?;
    eprintln!("e2e: app hashes agree at height {height}");
    metrics_count_what_the_nodes_did(net)?;

    // Node 3 fails; the other three hold 3/4 of the voting power and go on. A query run
    // meanwhile closes when its commit window ends, with vn-3 absent (3 for each of its
    // entries), and still verifies.
    let bad = net.lemal(&["localnet", "stop", "9"])?;
    ensure!(!bad.status.success(), "`localnet stop 9` succeeded on a 4-node localnet");
    ensure!(String::from_utf8_lossy(&bad.stderr).contains("nodes 0 to 3, not 9"));
    let stopped: Value = serde_json::from_str(&net.ok(&["--json", "localnet", "stop", "3"])?)?;
    ensure!(stopped["stopped"] == serde_json::json!(["cometbft-3", "lemal-vn-3"]), "{stopped}");
    let degraded = net.run(&["--query", QUERY, "--commit-window", "8"])?;
    eprintln!("e2e: run with node 3 down: {degraded:#}");
    ensure!(degraded["result"] == degraded["expected"], "{degraded}");
    ensure!(degraded["skipblock"]["absent"] == serde_json::json!(["vn-3"]), "{degraded}");
    ensure!(degraded["bitmap"]["3"] == 12 + 2 * 6, "vn-3's entries: {}", degraded["bitmap"]);
    ensure!(degraded["verified"] == Value::Bool(true), "{}", degraded["verification"]);

    // Node 3 comes back with its state: its CometBFT replays the blocks it missed to its
    // application, which ends at the app hash of the others.
    let started: Value = serde_json::from_str(&net.ok(&["--json", "localnet", "start", "3"])?)?;
    ensure!(started["started"] == serde_json::json!(["node3"]), "{started}");
    let again: Value = serde_json::from_str(&net.ok(&["--json", "localnet", "start"])?)?;
    ensure!(again["started"] == serde_json::json!([]), "a second start started {again}");
    let height = app_hashes_agree()?;
    eprintln!("e2e: after node 3's restart, app hashes agree at height {height}");
    // Consequences for cheaters, on the running network.
    super::accountability_e2e::an_aggregation_that_leaves_out_a_dp_is_refused(net)?;
    super::accountability_e2e::cheaters_face_consequences(net)?;

    let id: QueryId = degraded["query_id"].as_str().context("query id")?.parse()?;
    let degraded_block =
        Node::connect(&rpc(3))?.block_by_query(&id)?.context("no skipblock on node 3")?;
    ensure!(hex::encode(degraded_block.hash()) == degraded["skipblock"]["hash"]);
    let (passed, wrong) = verify_and_audit(net, &id.to_string(), &rpc(3))?;
    ensure!(passed == [true, true] && wrong.is_empty(), "from node 3: {passed:?}, {wrong:?}");

    // `down` stops every process; `status` then fails.
    let stopped: Value = serde_json::from_str(&net.ok(&["--json", "localnet", "down"])?)?;
    ensure!(stopped["stopped"].as_array().map(Vec::len) == Some(2 * VALIDATORS), "{stopped}");
    ensure!(!net.lemal(&["localnet", "status"])?.status.success());
    ensure!(localnet::running(&Layout::new(net.home.path())?)? == 0);

    // `start` resumes the whole stopped network from its state: the chain goes on from where it
    // stopped, with the same skipblocks.
    let started: Value = serde_json::from_str(&net.ok(&["--json", "localnet", "start"])?)?;
    ensure!(started["started"].as_array().map(Vec::len) == Some(VALIDATORS), "{started}");
    let resumed_at = app_hashes_agree()?;
    ensure!(resumed_at > height, "the resumed chain is at {resumed_at}, it stopped at {height}");
    let again = Node::connect(&rpc(0))?.block_by_query(&id)?.context("skipblock lost")?;
    ensure!(again.hash() == degraded_block.hash(), "the resumed chain has another skipblock");
    net.ok(&["localnet", "down"])?;
    Ok(())
}
