//! Every party its own process: a 4-validator localnet with a daemon per data provider and
//! computing node (127.0.0.1, ports 25656+ or `LEMAL_PARTIES_BASE_PORT`), queried through
//! `lemal run` and `lemal query submit|result`. Daemons are stopped and started again in the
//! middle of a query (they resume from the chain and their journal, and sign nothing twice), a
//! data provider declines a query its policy forbids, metrics are scraped, a computing node's
//! registration endpoint refuses a source past its rate, and the exit codes 1 (fault found) and
//! 3 (could not check) are provoked.

// Waiting for daemons and blocks takes the wall clock.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lemal_client::localnet::{self, Layout, Manifest};
use lemal_client::metrics::scrape;
use lemal_client::rpc::Node;
use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
use serde_json::Value;

use super::end_to_end::{app_hashes_agree_on, bin_dir, cometbft, one_localnet_at_a_time, Localnet};

const QUERY: &str = "SELECT avg(x) FROM y WHERE z < 321";

fn base_port() -> u16 {
    std::env::var("LEMAL_PARTIES_BASE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(25656)
}

fn rpc(node: usize) -> String {
    format!("http://127.0.0.1:{}", base_port() as usize + 1 + 100 * node)
}

/// A daemon started by the test, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of `entity`'s daemon log that say it submitted a proof of query `q`.
fn submissions(layout: &Layout, entity: EntityId, q: &str) -> Result<usize> {
    let log = std::fs::read_to_string(localnet::party_log(layout, entity))?;
    Ok(log.lines().filter(|l| l.contains("submitted") && l.contains(&format!("{q}/"))).count())
}

#[test]
fn every_party_runs_as_its_own_daemon_and_resumes_from_the_chain() -> Result<()> {
    let _one_at_a_time = one_localnet_at_a_time();
    let net = Localnet {
        home: tempfile::Builder::new().prefix("lemal-parties-").tempdir()?,
        bin: bin_dir()?,
    };
    let outcome = scenario(&net, &cometbft()?);
    if let Err(e) = &outcome {
        eprintln!("parties: failed: {e:#}");
        super::end_to_end::show_logs(&net);
        if let Ok(files) = localnet::log_files(&Layout::new(net.home.path())?, None) {
            for f in files.iter().filter(|f| {
                f.file_name().is_some_and(|n| n.to_string_lossy().starts_with(['d', 'c']))
                    && !f.to_string_lossy().contains("cometbft")
            }) {
                if let Ok((text, _)) = localnet::tail(f, 15) {
                    eprintln!("--- {} ---\n{text}", f.display());
                }
            }
        }
    }
    outcome
}

/// Send `request` as is to `authority` (`HOST:PORT`) and read the answer until the server
/// closes the connection (or 10 s pass).
fn exchange(authority: &str, request: &str) -> Result<String> {
    let mut s = TcpStream::connect(authority)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    // A server that refuses a body unread may reset the connection after its answer.
    let _ = s.read_to_end(&mut answer);
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `HOST:PORT` of `http://HOST:PORT/...`.
fn authority(url: &str) -> &str {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap_or(rest)
}

/// POST a body that is not a registration to `/register` at `endpoint` (`http://HOST:PORT`):
/// the answer's status and `Retry-After` header.
fn post_garbage(endpoint: &str) -> Result<(u16, Option<String>)> {
    let authority = authority(endpoint);
    let answer = exchange(
        authority,
        &format!(
            "POST /register HTTP/1.0\r\nHost: {authority}\r\nContent-Length: 9\r\n\r\nnot borsh"
        ),
    )?;
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let retry = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after").then(|| v.trim().to_owned())
    });
    Ok((status.with_context(|| format!("{endpoint} answered {answer:?}"))?, retry))
}

/// Declare a body of 2^60 bytes to `POST path` at `authority` (`HOST:PORT`), send none of
/// it, and return the answer's status line.
fn declare_huge_body(authority: &str, path: &str) -> Result<String> {
    let answer = exchange(
        authority,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\n\
             Content-Length: 1152921504606846976\r\n\r\n"
        ),
    )?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

fn json(net: &Localnet, args: &[&str]) -> Result<Value> {
    let text = net.ok(args)?;
    serde_json::from_str(&text).with_context(|| format!("lemal {args:?} printed {text:?}"))
}

/// Wait until `f` holds, checking every 200 ms, at most `secs` seconds.
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !f()? {
        if start.elapsed() > Duration::from_secs(secs) {
            bail!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn scenario(net: &Localnet, cometbft: &Path) -> Result<()> {
    let up = net.up_args_with_parties(cometbft, base_port(), "lemal-parties", &[]);
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    net.ok(&up)?;
    let layout = Layout::new(net.home.path())?;
    let manifest = Manifest::load(&layout)?;
    let node0 = rpc(0);
    let node = node0.as_str();

    // Every data provider and computing node runs as its own process, with its own key file.
    let status = json(net, &["--json", "localnet", "status"])?;
    ensure!(status["healthy"] == Value::Bool(true), "{status}");
    let parties = status["parties"].as_array().context("no parties in status")?;
    ensure!(parties.len() == 18 && parties.iter().all(|p| p["running"] == true), "{status}");
    for p in &manifest.parties {
        let pid: u32 =
            std::fs::read_to_string(net.home.path().join(format!("net/run/{}.json", p.entity)))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["pid"].as_u64())
                .and_then(|p| u32::try_from(p).ok())
                .with_context(|| format!("no pid record for {}", p.entity))?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let key = layout.key_file(p.entity).to_string_lossy().into_owned();
        ensure!(args.contains(&key), "{} runs without its own key file: {args:?}", p.entity);
        let others = args.iter().filter(|a| a.ends_with(".json") && a.contains("/keys/")).count();
        ensure!(others == 1, "{} is given {others} key files", p.entity);
    }

    // The report's query with noise: every proof kind, sent by the daemons.
    let noisy = json(net, &["--node", node, "--json", "run", "--query", QUERY, "--noise", "2"])?;
    eprintln!("parties: noisy run: {noisy:#}");
    ensure!(noisy["parties"] == "daemons", "{noisy}");
    ensure!(
        noisy["proofs_by_kind"]
            == serde_json::json!({ "range": 12, "aggregation": 6, "shuffle": 6, "keyswitch": 6 }),
        "{}",
        noisy["proofs_by_kind"]
    );
    ensure!(noisy["problems"].as_array().is_some_and(Vec::is_empty), "{noisy}");
    ensure!(noisy["verified"] == true && noisy["uncovered_dps"] == serde_json::json!([]));

    // The querier on its own: submit, then read the result; the same data gives the same answer
    // as an exact run.
    let exact = json(net, &["--node", node, "--json", "run", "--query", QUERY])?;
    ensure!(exact["result"] == exact["expected"] && !exact["result"].is_null(), "{exact}");
    let submitted = json(net, &["--node", &rpc(1), "--json", "query", "submit", "--sql", QUERY])?;
    let q = submitted["query_id"].as_str().context("no query id")?.to_owned();
    let result = json(net, &["--node", &rpc(2), "--json", "query", "result", &q])?;
    eprintln!("parties: query result: {result:#}");
    ensure!(result["result"] == exact["expected"], "{result} vs {}", exact["expected"]);
    ensure!(
        result["verified"] == true && result["covered_dps"].as_array().map(Vec::len) == Some(12)
    );
    let key_file = net.home.path().join(format!("queries/{q}.json"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file)?.permissions());
    ensure!(mode & 0o077 == 0, "the querier's key file has mode {mode:o}");

    // Restarts mid-query: cn-0 (root aggregator, first shuffler, key switcher) and dp-3 are down
    // when the query is registered through cn-1; they come back once the other providers have
    // answered, catch up from the chain and finish the query, each proof signed once.
    for p in ["cn-0", "dp-3"] {
        net.ok(&["localnet", "stop", p])?;
    }
    let via = manifest
        .parties
        .iter()
        .find(|p| p.entity == EntityId::cn(1))
        .and_then(|p| p.endpoint.clone())
        .context("no endpoint for cn-1")?;
    let submitted =
        json(net, &["--node", node, "--json", "query", "submit", "--noise", "1", "--via", &via])?;
    let q2 = submitted["query_id"].as_str().context("no query id")?.to_owned();
    let id: QueryId = q2.parse()?;
    let reader = Node::connect(node)?;
    let ranges = |reader: &Node| -> Result<usize> {
        Ok(reader.proofs(&id)?.iter().filter(|p| p.key.kind == ProofKind::Range).count())
    };
    wait_until("the other providers' range proofs", 60, || Ok(ranges(&reader)? >= 11))?;
    ensure!(ranges(&reader)? == 11, "dp-3 answered while it was down");
    ensure!(
        !reader.proofs(&id)?.iter().any(|p| p.key.creator == EntityId::cn(0)),
        "cn-0 sent a proof while it was down"
    );
    for p in ["dp-3", "cn-0"] {
        net.ok(&["localnet", "start", p])?;
    }
    let result = json(net, &["--node", node, "--json", "query", "result", &q2])?;
    eprintln!("parties: result after the restarts: {result:#}");
    ensure!(result["verified"] == true, "{result}");
    ensure!(result["uncovered_dps"] == serde_json::json!([]), "{result}");
    ensure!(
        submissions(&layout, EntityId::dp(3), &q2)? == 1,
        "dp-3 signed its proof more than once"
    );
    // cn-0 owes an aggregation, a shuffle and a key switch.
    ensure!(submissions(&layout, EntityId::cn(0), &q2)? == 3, "cn-0's submissions of {q2}");

    // A data provider whose policy asks for more providers than the query names declines it;
    // the computing nodes aggregate without it once the provider deadline has passed.
    net.ok(&["localnet", "stop", "dp-11"])?;
    let dp11 = manifest.parties.iter().find(|p| p.entity == EntityId::dp(11)).context("dp-11")?;
    let metrics_port = dp11.port;
    let mut strict = Command::new(net.bin.join("lemal"));
    strict
        .args(["--node", node, "--home"])
        .arg(net.home.path())
        .args(["dp", "serve", "--seed", "0", "--min-dps", "13", "--key"])
        .arg(layout.key_file(EntityId::dp(11)))
        .arg("--state")
        .arg(&dp11.state)
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let strict = Daemon(strict.spawn()?);
    wait_until("the strict provider's metrics", 20, || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok())
    })?;
    let submitted = json(
        net,
        &[
            "--node",
            node,
            "--json",
            "query",
            "submit",
            "--dp-deadline",
            "8",
            "--proof-deadline",
            "40",
        ],
    )?;
    let q3 = submitted["query_id"].as_str().context("no query id")?.to_owned();
    let result = json(net, &["--node", node, "--json", "query", "result", &q3])?;
    eprintln!("parties: result without dp-11: {result:#}");
    ensure!(result["uncovered_dps"] == serde_json::json!(["dp-11"]), "{result}");
    ensure!(result["verified"] == true, "{result}");
    let m = scrape(&format!("http://127.0.0.1:{metrics_port}/metrics"))?;
    ensure!(
        m.get("lemal_party_declined_total", &[("reason", "min_dps")]) == Some(1.0),
        "the strict provider's metrics: {m:?}"
    );
    drop(strict);
    net.ok(&["localnet", "start", "dp-11"])?;

    // Metrics of a computing node: the registrations it broadcast and the proofs it sent.
    let cn0 = manifest.parties.iter().find(|p| p.entity == EntityId::cn(0)).context("cn-0")?;
    let m = scrape(&cn0.metrics)?;
    ensure!(m.get("lemal_party_subscribed", &[]) == Some(1.0), "{m:?}");
    ensure!(
        m.get("lemal_cn_registrations_total", &[("outcome", "broadcast")])
            .is_some_and(|n| n >= 1.0),
        "{m:?}"
    );
    ensure!(
        m.get("lemal_party_submissions_total", &[("kind", "keyswitch")]).is_some_and(|n| n >= 1.0),
        "{m:?}"
    );

    // A request declaring a body of 2^60 bytes, none of which is sent, is answered from its
    // headers by every long-running process, which goes on serving: a computing node's
    // registration endpoint (413, the body is too large), a data provider's and a verifying
    // node's metrics (404, the path is not served; nothing is read).
    let dp0 = manifest.parties.iter().find(|p| p.entity == EntityId::dp(0)).context("dp-0")?;
    let vn0 = manifest.nodes.first().context("node0")?.vn_metrics_url();
    for (url, path, expected) in
        [(&via, "/register", "413"), (&dp0.metrics, "/upload", "404"), (&vn0, "/upload", "404")]
    {
        let authority = authority(url);
        let status = declare_huge_body(authority, path)?;
        ensure!(status.starts_with(&format!("HTTP/1.1 {expected}")), "{url} answered {status:?}");
        scrape(&format!("http://{authority}/metrics"))
            .with_context(|| format!("{url} after a declared body of 2^60 bytes"))?;
    }

    // cn-1 bounds each source before it reads a registration: past the default burst of 10,
    // garbage from one address is answered 429 with Retry-After (and never decoded), and
    // counted.
    let answers = (0..12).map(|_| post_garbage(&via)).collect::<Result<Vec<_>>>()?;
    ensure!(answers.first().is_some_and(|(status, _)| *status == 400), "{answers:?}");
    ensure!(
        answers.last().is_some_and(|(status, retry)| *status == 429 && retry.is_some()),
        "{answers:?}"
    );
    let cn1 = manifest.parties.iter().find(|p| p.entity == EntityId::cn(1)).context("cn-1")?;
    let m = scrape(&cn1.metrics)?;
    let limited = m.get("lemal_cn_registrations_total", &[("outcome", "rate_limited")]);
    ensure!(limited.is_some_and(|n| n >= 1.0), "{m:?}");

    // Exit codes: a cheat found by the audit is 1; a node that cannot be reached is 3.
    let cheat = json(
        net,
        &[
            "--node",
            node,
            "--json",
            "run",
            "--query",
            QUERY,
            "--cheat",
            "dp-2",
            "--threshold",
            "1000000",
        ],
    )?;
    ensure!(cheat["cheat_detected"] == true && cheat["parties"] == "daemons", "{cheat}");
    let cheat_id = cheat["query_id"].as_str().context("query id")?;
    let audit = net.lemal(&["--node", node, "audit", cheat_id])?;
    ensure!(audit.status.code() == Some(1), "audit of a cheat exited {:?}", audit.status);
    let unreachable = net.lemal(&["--node", "http://127.0.0.1:1", "verify", cheat_id])?;
    ensure!(
        unreachable.status.code() == Some(3),
        "verify without a node exited {:?}",
        unreachable.status
    );
    // `lemal run` keeps the querier key of its queries: `query result` reads them too.
    let again = json(net, &["--node", node, "--json", "query", "result", cheat_id])?;
    ensure!(again["result"] == cheat["result"], "{again} vs {cheat}");
    let unknown = "00000000000000000000000000000000";
    let no_key = net.lemal(&["--node", node, "query", "result", unknown])?;
    ensure!(
        no_key.status.code() == Some(1),
        "a result without the querier's key: {:?}",
        no_key.status
    );
    ensure!(String::from_utf8_lossy(&no_key.stderr).contains("no key for query"));

    let rpcs: Vec<String> = (0..4).map(rpc).collect();
    let height = app_hashes_agree_on(&rpcs)?;
    eprintln!("parties: app hashes agree at height {height}");
    let stopped = json(net, &["--json", "localnet", "down"])?;
    ensure!(stopped["stopped"].as_array().map(Vec::len) == Some(8 + 18), "{stopped}");
    Ok(())
}
