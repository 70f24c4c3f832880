//! Hosts simulated by network namespaces that a test creates and removes, also when it fails:
//! a hub namespace holding a bridge at `SUBNET.254/24`, and one namespace per simulated host,
//! joined to the bridge by a veth pair and holding its own address `SUBNET.N` on `eth0`. Only
//! addresses inside these namespaces are used. Needs root and iproute2.

use std::process::Command;

use anyhow::{ensure, Context, Result};

/// Run `ip ARGS...`; its failure names the command and what `ip` printed.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The namespaces of one test run; dropping them kills whatever still runs inside and deletes
/// them (with them the veth pairs and the bridge).
pub(crate) struct Namespaces {
    tag: String,
    names: Vec<String>,
}

impl Namespaces {
    /// The hub `TAG-hub` and, for each `(member, n)`, the namespace `TAG-member` at
    /// `SUBNET.n`, whose veth end in the hub is also named `TAG-member` (at most 15 bytes).
    pub(crate) fn create(tag: &str, subnet: &str, members: &[(String, u8)]) -> Result<Namespaces> {
        let mut made = Namespaces { tag: tag.to_owned(), names: Vec::new() };
        let hub = made.hub();
        ip(&["netns", "add", &hub])?;
        made.names.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "addr", "add", &format!("{subnet}.254/24"), "dev", "br0"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (member, n) in members {
            let ns = made.netns(member);
            ensure!(ns.len() <= 15, "interface name {ns} is longer than 15 bytes");
            ip(&["netns", "add", &ns])?;
            made.names.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &hub, "link", "add", &ns, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &ns, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &ns, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{subnet}.{n}/24"), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(made)
    }

    /// The hub namespace, from which every member is reachable.
    pub(crate) fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    /// The namespace of `member`, and the name of its veth end in the hub.
    pub(crate) fn netns(&self, member: &str) -> String {
        format!("{}-{member}", self.tag)
    }

    /// Delete every namespace now; an error names the ones still there.
    pub(crate) fn remove(mut self) -> Result<()> {
        let names = std::mem::take(&mut self.names);
        remove_all(&names);
        let left: Vec<&String> = names
            .iter()
            .filter(|ns| {
                Command::new("ip")
                    .args(["netns", "pids", ns])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .collect();
        ensure!(left.is_empty(), "namespaces still there: {left:?}");
        Ok(())
    }
}

/// The pids running in the namespace `ns`.
pub(crate) fn pids_in(ns: &str) -> Result<Vec<u32>> {
    let out = Command::new("ip").args(["netns", "pids", ns]).output()?;
    ensure!(out.status.success(), "no namespace {ns}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

fn remove_all(names: &[String]) {
    for ns in names.iter().rev() {
        for pid in pids_in(ns).unwrap_or_default() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Err(e) = ip(&["netns", "del", ns]) {
            eprintln!("netns: removing namespace {ns}: {e:#}");
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        remove_all(&self.names);
    }
}

/// Create the namespaces `TAG-hub` and `TAG-member` (see [`Namespaces::create`]) with a tag of
/// `prefix` and this process's id, run the ignored test `inner` of this binary inside the hub
/// (from where every member is reachable) with the tag in the environment variable `tag_env`,
/// then remove the namespaces, also when the inner test fails.
pub(crate) fn run_in_hub(
    prefix: &str,
    subnet: &str,
    members: &[(String, u8)],
    inner: &str,
    tag_env: &str,
) -> Result<()> {
    let tag = format!("{prefix}{}", std::process::id());
    let namespaces = Namespaces::create(&tag, subnet, members)
        .context("creating the test's network namespaces (needs root and iproute2)")?;
    let status = Command::new("ip")
        .args(["netns", "exec", &namespaces.hub()])
        .arg(std::env::current_exe()?)
        .args(["--exact", inner, "--ignored", "--nocapture"])
        .env(tag_env, &tag)
        .status()
        .context("running the test inside the hub namespace")?;
    ensure!(status.success(), "{inner} inside the hub failed: {status}");
    namespaces.remove()
}
