//! The files of a network whose verifying nodes run on machines of their own, written by
//! `lemal network generate --hosts H1,H2,...`: the same network a localnet runs, cut into one
//! folder per validator and one per party, each to be copied to the machine that runs it.
//!
//! ```text
//! OUT/network.json            the manifest: chain id, hosts, ports, node ids (see [`Network`])
//! OUT/genesis.json            the genesis every node holds; queriers pin it (`--genesis`)
//! OUT/nodeN/                  validator N's folder, for host N:
//!   config/, data/              its CometBFT home (config.toml, node and validator keys)
//!   vn-N.json                   its verifying node's key file (mode 0600)
//!   start.sh                    starts its lemal-vn, then its CometBFT
//! OUT/parties/ENTITY/         a computing node's or data provider's folder:
//!   ENTITY.json                 its key file (mode 0600), and no one else's
//!   start.sh                    starts `lemal cn serve` or `lemal dp serve`
//! ```
//!
//! Node N listens on its host's address (or on `--bind`): p2p on the base port (26656 by
//! default), RPC on base + 1, CometBFT's metrics on base + 4; `lemal-vn`'s metrics are on
//! base + 5 of 127.0.0.1 (`LEMAL_VN_METRICS` moves them). A second node on the same host takes
//! the ports 100 above. Its `config.toml` names its host as `external_address` and every other
//! node as a persistent peer. Every folder holds only its
//! owner's secrets: no file of one organisation is needed by another.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lemal_contracts::ids::{EntityId, Role};
use lemal_contracts::sig::KeyFile;
use lemal_contracts::state::Params;
use serde::{Deserialize, Serialize};
use toml_edit::Value;

use crate::keyring::{write_key_file, Keyring};
use crate::localnet::{
    check_chain_id, check_network_shape, edit_config, io, new_validators, node_settings,
    tune_genesis, write_json, LocalnetError, NodeAddress, Ports, COMETBFT_VERSION,
    DEFAULT_BASE_PORT,
};

/// The default port of a computing node's registration endpoint, and (plus 100) of a data
/// provider's metrics, on the party's own machine.
pub const DEFAULT_PARTY_PORT: u16 = 27100;

/// A machine a validator runs on: an IPv4 address or a DNS name, as its peers reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Host(String);

impl Host {
    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether peers on it are outside the public address space (loopback, a private or
    /// link-local range, or a name ending in `.local`/`.internal`/`localhost`): CometBFT's
    /// strict address book would then refuse to gossip it.
    fn is_private(&self) -> bool {
        match self.0.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => ip.is_private() || ip.is_loopback() || ip.is_link_local(),
            Err(_) => [".local", ".internal", "localhost"].iter().any(|s| self.0.ends_with(s)),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Host {
    type Err = String;
    /// An IPv4 address, or a DNS name of letters, digits, `-` and `.` (at most 253
    /// characters). Nothing else reaches a config file or a start script.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.parse::<std::net::Ipv4Addr>().is_ok() {
            return Ok(Host(s.to_owned()));
        }
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if s.len() <= 253
            && s.split('.').all(label_ok)
            && s.bytes().any(|b| b.is_ascii_alphabetic())
        {
            return Ok(Host(s.to_owned()));
        }
        Err(format!("{s:?} is neither an IPv4 address nor a DNS name"))
    }
}

/// Options of [`generate`].
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    /// One host per validator, in order.
    pub hosts: Vec<Host>,
    /// The address every node listens on (`0.0.0.0` behind a NAT), instead of its host's.
    pub bind: Option<Host>,
    /// Data providers in the roster.
    pub dps: u32,
    /// Computing nodes in the roster.
    pub cns: u32,
    /// The chain id.
    pub chain_id: String,
    /// Target block time in milliseconds.
    pub block_time_ms: u64,
    /// The p2p port of the first node on each host.
    pub base_port: u16,
    /// The seed of the data providers' synthetic data (used only when a provider's folder
    /// holds no `data.csv`).
    pub data_seed: u64,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            hosts: Vec::new(),
            bind: None,
            dps: 12,
            cns: 6,
            chain_id: "lemal".into(),
            block_time_ms: 1000,
            base_port: DEFAULT_BASE_PORT,
            data_seed: 0,
        }
    }
}

/// One validator of a generated network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkNode {
    /// `node0`, `node1`, ... (also its folder's name).
    pub name: String,
    /// The verifying node it runs.
    pub vn: EntityId,
    /// The machine it runs on.
    pub host: Host,
    /// Its ports there.
    pub ports: Ports,
    /// Its RPC URL.
    pub rpc: String,
    /// Its CometBFT node id.
    pub node_id: String,
    /// Its validator address, hex.
    pub validator_address: String,
}

/// One party of a generated network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkParty {
    /// The party.
    pub entity: EntityId,
    /// The RPC of the node its start script follows by default.
    pub rpc: String,
    /// Its folder under the output folder (`parties/cn-0`).
    pub dir: PathBuf,
}

/// What [`generate`] wrote (`OUT/network.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The chain id.
    pub chain_id: String,
    /// The CometBFT release the nodes must run.
    pub cometbft_version: String,
    /// Target block time in milliseconds.
    pub block_time_ms: u64,
    /// The validators.
    pub nodes: Vec<NetworkNode>,
    /// The computing nodes and data providers.
    pub parties: Vec<NetworkParty>,
}

/// Generate the folders of a network of `opts.hosts.len()` validators under `out`, which must
/// not exist or be empty. `cometbft` (v[`COMETBFT_VERSION`]) makes the validators' keys.
pub fn generate(
    out: &Path,
    opts: &NetworkOptions,
    cometbft: &Path,
) -> Result<Network, LocalnetError> {
    let bad = |m: String| Err(LocalnetError::Config(m));
    let n = opts.hosts.len();
    if !(1..=64).contains(&n) {
        return bad(format!("{n} hosts: give 1 to 64, one per validator"));
    }
    check_network_shape(opts.dps, opts.cns, opts.block_time_ms)?;
    check_chain_id(&opts.chain_id)?;
    check_out(out)?;
    fs::create_dir_all(out).map_err(io(format!("creating {}", out.display())))?;

    let ports = node_ports(&opts.hosts, opts.base_port)?;
    let (node_ids, addresses): (Vec<String>, Vec<[u8; 20]>) =
        new_validators(cometbft, out, n)?.into_iter().unzip();
    let mut rng = rand_core::OsRng;
    let keyring = Keyring::generate(n, opts.cns as usize, opts.dps as usize, &mut rng);
    let app_state = serde_json::to_value(keyring.genesis(Params::default(), &addresses, &mut rng))
        .map_err(|e| LocalnetError::Config(format!("genesis app_state: {e}")))?;
    let generated_path = out.join("node0/config/genesis.json");
    let generated =
        fs::read(&generated_path).map_err(io(format!("reading {}", generated_path.display())))?;
    let genesis = tune_genesis(&generated, &opts.chain_id, app_state)?;
    write_file(&out.join("genesis.json"), &genesis, 0o644)?;
    let mut key_files: BTreeMap<EntityId, KeyFile> =
        keyring.key_files().into_iter().map(|f| (f.entity, f)).collect();
    let mut write_key = |dir: &Path, entity: EntityId| -> Result<(), LocalnetError> {
        let file = key_files
            .remove(&entity)
            .ok_or_else(|| LocalnetError::Config(format!("no key generated for {entity}")))?;
        let path = dir.join(format!("{entity}.json"));
        write_key_file(&path, &file).map_err(io(format!("writing {}", path.display())))
    };

    let shared_host = (0..n).any(|i| opts.hosts[..i].contains(&opts.hosts[i]));
    let private = opts.hosts.iter().any(Host::is_private);
    let mut nodes = Vec::with_capacity(n);
    for (i, host) in opts.hosts.iter().enumerate() {
        let dir = out.join(format!("node{i}"));
        // It holds the validator's consensus key and its verifying node's key.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {}", dir.display())))?;
        let listen = opts.bind.as_ref().unwrap_or(host).as_str();
        // The node's own lemal-vn reaches its RPC at the listen address, or on loopback when
        // that is the wildcard.
        let local = if listen == "0.0.0.0" { "127.0.0.1" } else { listen };
        let peers: Vec<String> = (0..n)
            .filter(|&j| j != i)
            .map(|j| format!("{}@{}:{}", node_ids[j], opts.hosts[j], ports[j].p2p))
            .collect();
        let vn = EntityId::vn(i as u32);
        let at = NodeAddress { listen, external: host.as_str(), ports: &ports[i] };
        let settings = node_settings(
            &at,
            "unix://abci.sock",
            &vn.to_string(),
            &peers.join(","),
            opts.block_time_ms,
        );
        let network: Vec<(&str, &str, Value)> = vec![
            ("p2p", "addr_book_strict", (!private).into()),
            ("p2p", "allow_duplicate_ip", shared_host.into()),
        ];
        edit_config(&dir.join("config/config.toml"), settings.into_iter().chain(network))?;
        write_file(&dir.join("config/genesis.json"), &genesis, 0o644)?;
        write_key(&dir, vn)?;
        let script = node_script(&opts.chain_id, vn, host, local, &ports[i]);
        write_file(&dir.join("start.sh"), script.as_bytes(), 0o755)?;
        nodes.push(NetworkNode {
            name: format!("node{i}"),
            vn,
            host: host.clone(),
            ports: ports[i],
            rpc: format!("http://{host}:{}", ports[i].rpc),
            node_id: node_ids[i].clone(),
            validator_address: hex::encode_upper(addresses[i]),
        });
    }

    let entities = (0..opts.cns).map(EntityId::cn).chain((0..opts.dps).map(EntityId::dp));
    let mut parties = Vec::new();
    for (k, entity) in entities.enumerate() {
        let rel = PathBuf::from("parties").join(entity.to_string());
        let dir = out.join(&rel);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {}", dir.display())))?;
        write_key(&dir, entity)?;
        let rpc = nodes[k % n].rpc.clone();
        let script = party_script(&opts.chain_id, entity, &rpc, opts.data_seed);
        write_file(&dir.join("start.sh"), script.as_bytes(), 0o755)?;
        parties.push(NetworkParty { entity, rpc, dir: rel });
    }
    let network = Network {
        chain_id: opts.chain_id.clone(),
        cometbft_version: COMETBFT_VERSION.into(),
        block_time_ms: opts.block_time_ms,
        nodes,
        parties,
    };
    write_json(&out.join("network.json"), &network)?;
    Ok(network)
}

/// Refuse an output folder that exists and is not empty: a generated network is never written
/// over another one.
pub fn check_out(out: &Path) -> Result<(), LocalnetError> {
    if fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(LocalnetError::Config(format!(
            "{} is not empty: choose a new folder",
            out.display()
        )));
    }
    Ok(())
}

/// Each node's ports: the base block on its host, the next block up for each earlier node on
/// the same host.
fn node_ports(hosts: &[Host], base: u16) -> Result<Vec<Ports>, LocalnetError> {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let before = hosts[..i].iter().filter(|&e| e == h).count() as u32;
            Ports::of(base, before).ok_or_else(|| {
                LocalnetError::Config(format!(
                    "base port {base} leaves no room for {} nodes on {h}",
                    before + 1
                ))
            })
        })
        .collect()
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalnetError> {
    fs::write(path, bytes).map_err(io(format!("writing {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io(format!("setting the mode of {}", path.display())))
}

/// The start script of validator `vn` on `host`: its `lemal-vn` on a unix socket in its folder,
/// then its CometBFT; a signal to the script stops both. `local` is the address the node's RPC
/// answers on from the host itself. `lemal-vn`'s metrics are on `LEMAL_VN_METRICS` when set,
/// else on loopback. Every value written into it was validated: a [`Host`], a checked chain id,
/// numbers.
fn node_script(chain_id: &str, vn: EntityId, host: &Host, local: &str, ports: &Ports) -> String {
    format!(
        r#"#!/bin/sh
# Verifying node {vn} of chain {chain_id}, on {host}: its lemal-vn, then its CometBFT v{COMETBFT_VERSION}.
# Both stop when this script is interrupted or terminated. Their logs go to this script's output.
# Binaries: LEMAL_VN and COMETBFT (default: lemal-vn and cometbft on the PATH). lemal-vn serves
# its metrics on LEMAL_VN_METRICS (default 127.0.0.1:{vn_metrics}).
# Extra arguments go to lemal-vn (for instance --log-format json).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lemal_vn=${{LEMAL_VN:-lemal-vn}}
cometbft=${{COMETBFT:-cometbft}}
socket="$here/abci.sock"
app=
bft=
trap 'kill $bft $app 2>/dev/null || true; wait' EXIT
trap 'exit 143' INT TERM
rm -f "$socket"
"$lemal_vn" --home "$here/app" --abci "unix://$socket" --rpc http://{local}:{rpc} \
    --key "$here/{vn}.json" --metrics "${{LEMAL_VN_METRICS:-127.0.0.1:{vn_metrics}}}" "$@" &
app=$!
tries=0
while [ ! -S "$socket" ]; do
    kill -0 "$app" 2>/dev/null || {{ echo "start.sh: lemal-vn exited" >&2; exit 1; }}
    tries=$((tries + 1))
    [ "$tries" -le 300 ] || {{ echo "start.sh: lemal-vn does not listen on $socket" >&2; exit 1; }}
    sleep 0.1
done
"$cometbft" start --home "$here" --proxy_app "unix://$socket" &
bft=$!
wait "$bft"
"#,
        rpc = ports.rpc,
        vn_metrics = ports.vn_metrics,
    )
}

/// The start script of a computing node or data provider, following the node at `rpc`.
fn party_script(chain_id: &str, entity: EntityId, rpc: &str, data_seed: u64) -> String {
    let head = format!(
        r#"#!/bin/sh
# {entity} of chain {chain_id}. LEMAL names the binary (default: lemal on the PATH), LEMAL_NODE the
# verifying node to follow and send to (default: {rpc}).
"#
    );
    let body = match entity.role {
        Role::Cn => format!(
            r#"# LEMAL_LISTEN is the registration endpoint's address (default 127.0.0.1:{DEFAULT_PARTY_PORT}; give an
# address queriers reach). Extra arguments go to `lemal cn serve`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "${{LEMAL:-lemal}}" --node "${{LEMAL_NODE:-{rpc}}}" cn serve --key "$here/{entity}.json" \
    --state "$here/state" --listen "${{LEMAL_LISTEN:-127.0.0.1:{DEFAULT_PARTY_PORT}}}" "$@"
"#
        ),
        _ => format!(
            r#"# The provider's table is data.csv beside this script (a header of column names, then integer
# rows); without one it answers from synthetic data of seed {data_seed}. LEMAL_METRICS is the address of
# its metrics (default 127.0.0.1:{metrics}). Extra arguments go to `lemal dp serve`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/data.csv" ]; then
    set -- --csv "$here/data.csv" "$@"
else
    set -- --seed {data_seed} "$@"
fi
exec "${{LEMAL:-lemal}}" --node "${{LEMAL_NODE:-{rpc}}}" dp serve --key "$here/{entity}.json" \
    --state "$here/state" --metrics "${{LEMAL_METRICS:-127.0.0.1:{metrics}}}" "$@"
"#,
            metrics = DEFAULT_PARTY_PORT + 100,
        ),
    };
    head + &body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<Host> {
        list.iter().map(|h| h.parse().expect("host")).collect()
    }

    #[test]
    fn hosts_are_ipv4_addresses_or_dns_names_and_nothing_a_shell_would_read() {
        for good in ["10.0.0.1", "vn-1.example.org", "localhost", "a1"] {
            assert!(good.parse::<Host>().is_ok(), "{good}");
        }
        for bad in ["", "1.2.3", "a b", "a;b", "$(x)", "-a.org", "a..org", "x:26656", "::1", "123"]
        {
            assert!(bad.parse::<Host>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_sharing_a_host_take_the_next_block_of_ports() {
        let ports =
            node_ports(&hosts(&["10.0.0.1", "10.0.0.2", "10.0.0.1"]), 26656).expect("ports");
        assert_eq!(ports.iter().map(|p| p.p2p).collect::<Vec<_>>(), [26656, 26656, 26756]);
        assert_eq!(ports[2].rpc, 26757);
        assert!(node_ports(&hosts(&["h", "h"]), 65500).is_err());
    }

    #[test]
    fn private_hosts_turn_the_strict_address_book_off() {
        assert!("10.1.2.3".parse::<Host>().expect("host").is_private());
        assert!("127.0.0.1".parse::<Host>().expect("host").is_private());
        assert!("db.internal".parse::<Host>().expect("host").is_private());
        assert!(!"8.8.8.8".parse::<Host>().expect("host").is_private());
        assert!(!"vn.example.org".parse::<Host>().expect("host").is_private());
    }

    #[test]
    fn start_scripts_name_their_owner_and_its_node() {
        let ports = Ports::of(26656, 0).expect("ports");
        let host: Host = "10.0.0.7".parse().expect("host");
        let node = node_script("c", EntityId::vn(2), &host, "10.0.0.7", &ports);
        assert!(node.contains(r#"--key "$here/vn-2.json""#), "{node}");
        assert!(node.contains("--rpc http://10.0.0.7:26657"), "{node}");
        assert!(node.contains(r#"--metrics "${LEMAL_VN_METRICS:-127.0.0.1:26661}""#), "{node}");
        let cn = party_script("c", EntityId::cn(1), "http://10.0.0.7:26657", 3);
        assert!(cn.contains(r#"cn serve --key "$here/cn-1.json""#), "{cn}");
        assert!(cn.contains("${LEMAL_NODE:-http://10.0.0.7:26657}"), "{cn}");
        let dp = party_script("c", EntityId::dp(4), "http://10.0.0.7:26657", 3);
        assert!(dp.contains(r#"dp serve --key "$here/dp-4.json""#), "{dp}");
        assert!(dp.contains("--seed 3"), "{dp}");
    }
}
