//! `lemal state PATH [--height H] [--prove]`: any ABCI query path of the verifying nodes, its
//! value decoded; with `--prove`, checked as a light client against a verified header (the ICS23
//! proof of its state key, or of its absence).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use borsh::BorshDeserialize;
use clap::Args;
use lemal_contracts::query_path::{Lookup, QueryPath};
use serde::Serialize;

use super::trust::trust_root;
use super::{connect, emit, Global};
use crate::light::{BlockRef, HeaderReport, LightClient};

/// `lemal state` arguments.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The path, e.g. `/roster`, `/standing/cn-5`, `/query/ID/progress` (the README lists them).
    pub path: String,
    /// The height to read at (default: the latest); not with --prove.
    #[arg(long, conflicts_with = "prove")]
    pub height: Option<u64>,
    /// Check the value with its ICS23 proof against a verified header of the trusted chain.
    #[arg(long)]
    pub prove: bool,
}

/// What `lemal state` prints.
#[derive(Debug, Serialize)]
pub struct StateView {
    /// The path, normalised.
    pub path: String,
    /// The state height the value is read at.
    pub height: u64,
    /// Whether the value (or its absence) was proven against a verified header.
    pub proven: bool,
    /// The verified header, when proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderReport>,
    /// The value's size in bytes (`None`: no value at the path).
    pub bytes: Option<usize>,
    /// The decoded value (Rust debug form), when there is one.
    pub value: Option<String>,
}

fn render(v: &StateView) -> String {
    let mut s = format!("{} at height {}", v.path, v.height);
    match &v.header {
        Some(h) => {
            s += &format!(
                ", proven against app hash {} of header {} ({})\n",
                &h.app_hash[..12],
                h.header_height,
                h.trust
            )
        }
        None => s += " (not proven)\n",
    }
    match (&v.value, v.bytes) {
        (Some(value), Some(n)) => s += &format!("{n} bytes:\n{value}\n"),
        _ => s += "no value at this path\n",
    }
    s
}

/// Run `lemal state`.
pub fn run(args: StateArgs, global: &Global) -> Result<ExitCode> {
    let path: QueryPath = args.path.parse().map_err(|e: String| anyhow!(e))?;
    let node = connect(global)?;
    let describe = |bytes: &[u8]| {
        path.describe_value(bytes).map_err(|e| anyhow!("{path}: the value does not decode: {e}"))
    };
    let view = if args.prove {
        let trust = trust_root(global, &node)?;
        let client = LightClient::new(&node, &trust)?;
        let header = client.header().clone();
        let value = match path.lookup() {
            Lookup::Key(key) => client.get_bytes(&path.to_string(), &key)?,
            Lookup::Indexed(_) => {
                let which = match path {
                    QueryPath::LatestBlock => BlockRef::Latest,
                    QueryPath::BlockByHash(h) => BlockRef::Hash(h),
                    QueryPath::BlockOfQuery(q) => BlockRef::Query(q),
                    _ => bail!("{path} has no block reference"),
                };
                match client.block(which) {
                    Ok(block) => Some(borsh::to_vec(&block)?),
                    Err(crate::light::LightError::NotFound(crate::light::Missing::Block(_))) => {
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Lookup::List(..) => bail!(
                "{path} is a list, and lists are not provable: prove each entry by its own path"
            ),
        };
        let value_text = value.as_deref().map(describe).transpose()?;
        StateView {
            path: path.to_string(),
            height: header.state_height,
            proven: true,
            header: Some(header),
            bytes: value.as_ref().map(Vec::len),
            value: value_text,
        }
    } else {
        let answer = node.query(&path.to_string(), args.height, false)?;
        let value = answer.value;
        StateView {
            path: path.to_string(),
            height: answer.height,
            proven: false,
            header: None,
            bytes: value.as_ref().map(Vec::len),
            value: value.as_deref().map(describe).transpose()?,
        }
    };
    emit(global, &view, || render(&view))?;
    Ok(ExitCode::SUCCESS)
}

/// A value of type `T` at `path` decoded from raw bytes (for callers that know the type).
pub fn decode<T: BorshDeserialize>(path: &QueryPath, bytes: &[u8]) -> Result<T> {
    lemal_contracts::group::from_borsh(bytes).map_err(|e| anyhow!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_without_a_value_says_so() {
        let view = StateView {
            path: "/standing/cn-1".into(),
            height: 9,
            proven: false,
            header: None,
            bytes: None,
            value: None,
        };
        let text = render(&view);
        assert!(text.starts_with("/standing/cn-1 at height 9 (not proven)"), "{text}");
        assert!(text.ends_with("no value at this path\n"), "{text}");
    }

    #[test]
    fn decode_names_the_path_on_failure() {
        let err = decode::<u64>(&QueryPath::Roster, &[1]).expect_err("too short");
        assert!(err.to_string().starts_with("/roster: "), "{err}");
    }
}
