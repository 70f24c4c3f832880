//! Trust roots end to end (part of the end-to-end scenario, on its localnet): every verifying
//! command through a lying node fails with a message naming what did not check, and a second
//! chain that reuses the chain id is refused — exit 3 while no root is pinned, exit 1 once the
//! first chain is known.

use std::net::SocketAddr;
use std::process::Output;

use anyhow::{ensure, Context, Result};
use lemal_client::rpc::Node;
use serde_json::Value;

use super::end_to_end::{rpc, Localnet, QUERY};
use super::lying_proxy::{LyingProxy, Tamper};

/// The verifying commands, for a query.
fn commands(query: &str) -> [Vec<String>; 3] {
    [
        vec!["verify".into(), query.into()],
        vec!["audit".into(), query.into()],
        vec!["block".into(), "latest".into(), "--verify".into()],
    ]
}

/// What a command must do under a lie: its exit code and a phrase of its error.
fn expected(tamper: Tamper, known: bool) -> (i32, &'static [&'static str]) {
    match tamper {
        Tamper::Nothing => (0, &[]),
        Tamper::QueryValue => (1, &["state proof", "does not decode"]),
        Tamper::ProofOps => (1, &["proof"]),
        Tamper::AnswerHeight => (1, &["answered at height"]),
        Tamper::HeaderAppHash | Tamper::CommitSignatures => (1, &["header"]),
        Tamper::Validators => (1, &["validator set"]),
        Tamper::Genesis if known => (1, &["a different chain answers as lemal-e2e"]),
        Tamper::Genesis => (3, &["no trust root", "not the one of the localnet"]),
    }
}

fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Run every verifying command through `proxy` lying about `tamper`, with the trust options
/// `root`, and check each exit code and message. Returns one table row per command.
fn through_lie(
    net: &Localnet,
    proxy: &LyingProxy,
    query: &str,
    tamper: Tamper,
    root: &[&str],
    known: bool,
) -> Result<Vec<String>> {
    proxy.set(tamper);
    let url = proxy.url();
    let (code, phrases) = expected(tamper, known);
    let mut rows = Vec::new();
    for command in commands(query) {
        let mut args = vec!["--node", url.as_str()];
        args.extend_from_slice(root);
        args.extend(command.iter().map(String::as_str));
        let out = net.lemal(&args)?;
        let text = output_text(&out);
        let lower = text.to_lowercase();
        ensure!(
            out.status.code() == Some(code),
            "{tamper:?}: lemal {} exited {:?}, expected {code}: {text}",
            command.join(" "),
            out.status.code()
        );
        ensure!(
            phrases.is_empty() || phrases.iter().any(|p| lower.contains(p)),
            "{tamper:?}: lemal {} does not say any of {phrases:?}: {text}",
            command.join(" ")
        );
        let message = text
            .lines()
            .find(|l| l.starts_with("lemal: "))
            .or_else(|| text.lines().find(|l| l.contains("VERIFIED") || l.contains("AUDIT")))
            .unwrap_or_default()
            .chars()
            .take(150)
            .collect::<String>();
        rows.push(format!(
            "| {tamper:?} | {} | {} | {code} | {message} |",
            match (root.first(), known) {
                (Some(flag), _) => flag,
                (None, true) => "known chain",
                (None, false) => "localnet genesis under --home",
            },
            command.join(" ")
        ));
    }
    Ok(rows)
}

/// A lying proxy in front of node 1 tampers with one thing at a time; every verifying command
/// fails naming what did not check, and the honest relay passes. Then the chain is recorded as
/// known, and a lying genesis is refused as a different chain.
pub(crate) fn lying_node_is_caught(net: &Localnet, query: &str) -> Result<()> {
    let upstream: SocketAddr = rpc(1).trim_start_matches("http://").parse()?;
    let proxy = LyingProxy::start(upstream)?;
    let honest = Node::connect(&rpc(1))?;
    // A header the user could have pinned: height 2, as the honest node serves it.
    let pinned = honest.signed_header(2)?;
    let pin = format!("2:{}", hex::encode(pinned.header.hash().as_bytes()));
    let by_header = ["--trusted-header", pin.as_str()];

    let mut rows = through_lie(net, &proxy, query, Tamper::Nothing, &[], false)?;
    rows.extend(through_lie(net, &proxy, query, Tamper::Nothing, &by_header, false)?);
    for tamper in Tamper::LIES {
        let root: &[&str] = if tamper == Tamper::Validators { &by_header } else { &[] };
        rows.extend(through_lie(net, &proxy, query, tamper, root, false)?);
    }
    // Known chain: the genesis the honest node serves, recorded (trust on first use, with --yes).
    let shown = net.lemal(&["--node", &rpc(0), "trust", "add"])?;
    ensure!(shown.status.success(), "trust add: {}", output_text(&shown));
    ensure!(output_text(&shown).contains("not recorded"), "{}", output_text(&shown));
    let added: Value =
        serde_json::from_str(&net.ok(&["--node", &rpc(0), "--json", "trust", "add", "--yes"])?)?;
    ensure!(added["recorded"] == Value::Bool(true) && added["chain_id"] == "lemal-e2e", "{added}");
    rows.extend(through_lie(net, &proxy, query, Tamper::Nothing, &[], true)?);
    rows.extend(through_lie(net, &proxy, query, Tamper::Genesis, &[], true)?);
    eprintln!(
        "e2e: lying node\n| tamper | root | command | exit | message |\n|---|---|---|---|---|\n{}",
        rows.join("\n")
    );
    // The honest report names the root and the validator set that signed.
    proxy.set(Tamper::Nothing);
    let report: Value =
        serde_json::from_str(&net.ok(&["--node", &proxy.url(), "--json", "verify", query])?)?;
    let header = &report["header"];
    ensure!(header["trust"]["kind"] == "known-genesis", "{header}");
    ensure!(header["trust"]["fingerprint"] == added["fingerprint"], "{header}");
    ensure!(header["validators"] == 4 && header["validators_hash"].is_string(), "{header}");
    // Forgotten again: the next step starts with no known chain.
    net.ok(&["trust", "remove", "lemal-e2e"])?;
    ensure!(!net.lemal(&["trust", "remove", "lemal-e2e"])?.status.success());
    Ok(())
}

/// A second localnet with the same chain id, one validator, and a query of its own: from the
/// first localnet's home, verifying it is refused with exit 3 while no root is pinned for the
/// chain (its genesis is not the localnet's), and with exit 1 once the first chain is known.
pub(crate) fn second_chain_is_refused(
    net: &Localnet,
    other: &Localnet,
    other_base_port: u16,
) -> Result<()> {
    let cometbft = super::end_to_end::cometbft()?;
    let up = other.up_args(
        &cometbft,
        other_base_port,
        "lemal-e2e",
        &["--validators", "1", "--dps", "2", "--cns", "1"],
    );
    other.ok(&up.iter().map(String::as_str).collect::<Vec<_>>())?;
    let other_rpc = format!("http://127.0.0.1:{}", other_base_port + 1);
    let run: Value = serde_json::from_str(&other.ok(&[
        "--node", &other_rpc, "--json", "run", "--query", QUERY, "--dps", "2", "--cns", "1",
    ])?)?;
    ensure!(run["verified"] == Value::Bool(true), "the second chain's own run: {run}");
    let id = run["query_id"].as_str().context("query id")?.to_owned();

    // Its own home trusts it (its localnet's genesis); the first one's does not.
    let own = other.lemal(&["--node", &other_rpc, "verify", &id])?;
    ensure!(own.status.success(), "verify from its own home: {}", output_text(&own));
    let unpinned = net.lemal(&["--node", &other_rpc, "verify", &id])?;
    let text = output_text(&unpinned);
    eprintln!("e2e: second chain, no root pinned: {text}");
    ensure!(unpinned.status.code() == Some(3), "no root pinned: {text}");
    ensure!(text.contains("no trust root for chain lemal-e2e"), "{text}");

    // Once the first chain is known, the second is a different chain answering as it.
    net.ok(&["--node", &rpc(0), "trust", "add", "--yes"])?;
    let list = net.ok(&["trust", "list"])?;
    ensure!(list.contains("lemal-e2e"), "trust list: {list}");
    for command in
        [vec!["verify", id.as_str()], vec!["audit", &id], vec!["block", "latest", "--verify"]]
    {
        let mut args = vec!["--node", other_rpc.as_str()];
        args.extend(command.iter().copied());
        let known = net.lemal(&args)?;
        let text = output_text(&known);
        eprintln!("e2e: second chain, first known: {text}");
        ensure!(known.status.code() == Some(1), "first chain known: {text}");
        ensure!(text.contains("a different chain answers as lemal-e2e"), "{text}");
    }
    other.ok(&["localnet", "down"])?;
    Ok(())
}
