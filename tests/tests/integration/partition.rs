//! A network partition, against a real CometBFT localnet whose nodes run on hosts of their own:
//! network namespaces this test creates and removes (also when it fails).
//!
//! Layout: a hub namespace with a bridge (10.77.0.254/24), and one namespace per node, each
//! joined to the bridge by a veth pair and holding the node's address 10.77.0.(i+1). Both of the
//! node's processes run in its namespace. The test re-runs itself inside the hub (the ignored
//! `partition_inside_the_hub`), from where every node is reachable.
//!
//! The partition cuts node 3's link to the bridge while a query runs. The other three hold 3/4
//! of the voting power and go on: the query finalizes with vn-3 absent. Node 3 is then
//! reconnected, catches up, and every node ends at the same app hash. Only addresses inside the
//! namespaces are used.

// Not consensus code: every wait is bounded by the wall clock.
#![allow(clippy::disallowed_methods)]

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lemal_client::rpc::Node;
use serde_json::Value;

use super::end_to_end::{app_hashes_agree_on, bin_dir, cometbft, show_logs, Localnet, QUERY};
use super::netns::{ip, run_in_hub};

const NODES: usize = 4;
const TAG_ENV: &str = "LEMAL_PARTITION_TAG";
const BASE_PORT: u16 = 26656;

const SUBNET: &str = "10.77.0";

fn address(i: usize) -> String {
    format!("{SUBNET}.{}", i + 1)
}

fn rpc(i: usize) -> String {
    format!("http://{}:{}", address(i), BASE_PORT as usize + 1 + 100 * i)
}

fn members() -> Vec<(String, u8)> {
    (0..NODES).map(|i| (format!("n{i}"), i as u8 + 1)).collect()
}

#[test]
fn a_partitioned_validator_catches_up_after_the_partition_heals() -> Result<()> {
    let _one_at_a_time = super::end_to_end::one_localnet_at_a_time();
    run_in_hub("lp", SUBNET, &members(), "partition::partition_inside_the_hub", TAG_ENV)
}

#[test]
#[ignore = "run by a_partitioned_validator_catches_up_after_the_partition_heals, inside its namespaces"]
fn partition_inside_the_hub() -> Result<()> {
    let tag = std::env::var(TAG_ENV)
        .context("run a_partitioned_validator_catches_up_after_the_partition_heals instead")?;
    let net = Localnet {
        home: tempfile::Builder::new().prefix("lemal-partition-").tempdir()?,
        bin: bin_dir()?,
    };
    let begin = Instant::now();
    let outcome = scenario(&net, &tag);
    if let Err(e) = &outcome {
        eprintln!("partition: failed: {e:#}");
        show_logs(&net);
    }
    eprintln!("partition: took {:?}", begin.elapsed());
    outcome
}

fn height(i: usize) -> Result<u64> {
    Ok(Node::connect(&rpc(i))?.status()?.height)
}

fn scenario(net: &Localnet, tag: &str) -> Result<()> {
    let hosts: Vec<String> = (0..NODES).map(|i| format!("{}@{tag}-n{i}", address(i))).collect();
    let hosts = hosts.join(",");
    let up_args = net.up_args(&cometbft()?, BASE_PORT, "lemal-partition", &["--hosts", &hosts]);
    let up: Vec<&str> = up_args.iter().map(String::as_str).collect();
    net.ok(&up)?;
    let all: Vec<String> = (0..NODES).map(rpc).collect();
    let at = app_hashes_agree_on(&all)?;
    eprintln!("partition: 4 nodes on 4 hosts agree at height {at}");

    // Cut node 3 off: its link to the bridge goes down.
    ip(&["link", "set", &format!("{tag}-n3"), "down"])?;
    let cut_at = height(0)?;
    ensure!(Node::connect(&rpc(3)).and_then(|n| n.status()).is_err(), "node 3 still answers");
    let node = rpc(0);
    let args = ["--node", &node, "--json", "run", "--query", QUERY, "--commit-window", "8"];
    let text = net.ok(&args)?;
    let run: Value = serde_json::from_str(&text).with_context(|| format!("lemal run: {text}"))?;
    ensure!(run["result"] == run["expected"] && !run["result"].is_null(), "{run}");
    ensure!(run["skipblock"]["absent"] == serde_json::json!(["vn-3"]), "{run}");
    ensure!(run["verified"] == Value::Bool(true), "{}", run["verification"]);
    let healed_at = height(0)?;
    eprintln!("partition: node 3 cut off from height {cut_at} to {healed_at}; the query finalized");

    // Heal, and wait until node 3 has caught up with the others.
    ip(&["link", "set", &format!("{tag}-n3"), "up"])?;
    let heal = Instant::now();
    loop {
        let (h3, h0) = (height(3).unwrap_or(0), height(0)?);
        if h3 >= healed_at && h3 + 2 >= h0 {
            eprintln!(
                "partition: node 3 at height {h3} (node 0 at {h0}) {:?} after healing",
                heal.elapsed()
            );
            break;
        }
        if heal.elapsed() > Duration::from_secs(120) {
            bail!("node 3 is at height {h3}, node 0 at {h0}, two minutes after healing");
        }
        thread::sleep(Duration::from_millis(500));
    }
    let at = app_hashes_agree_on(&all)?;
    eprintln!("partition: after healing, the 4 nodes agree at height {at}");
    let block = Node::connect(&rpc(3))?
        .block_by_query(&run["query_id"].as_str().context("query id")?.parse()?)?
        .context("node 3 has no skipblock of the query run during the partition")?;
    ensure!(hex::encode(block.hash()) == run["skipblock"]["hash"], "node 3's skipblock differs");
    net.ok(&["localnet", "down"])?;
    Ok(())
}
