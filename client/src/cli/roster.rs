//! `lemal roster show | propose | approve`: who is in the roster and in what standing, and the
//! verifying nodes' governance of it.
//!
//! `show` reads what the node serves, unverified: the roster, the entities out of good standing
//! (faulty after a challenge verdict, or removed by a roster change), each verifying node's
//! voting power, and the open roster proposals. `propose` and `approve` sign as a verifying node
//! with its key from the localnet's keyring under `--home`; a proposal passes once its approvals
//! hold more than 2/3 of the voting power (proposing counts as approving), and is then applied
//! in the same block.
//!
//! Exit codes: 0 when the transaction was accepted (whatever the proposal's status then), 1 when
//! it was refused, 3 when the node could not be asked.

use std::fmt::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use lemal_contracts::elgamal::{PossessionProof, PublicKey};
use lemal_contracts::ids::{EntityId, Role};
use lemal_contracts::sig::VerifyingKey;
use lemal_contracts::state::{
    ProposalRecord, ProposalStatus, Roster, Standing, StandingCause, StandingRecord,
};
use lemal_contracts::tx::{limits, ApproveRosterChange, ProposeRosterChange, RosterChange, TxBody};
use serde::Serialize;

use super::inspect::list;
use super::submit::{Rejection, Signer, Submitted};
use super::{connect, emit, exit, Global};
use crate::rpc::Node;

/// What to do with the roster.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// The roster: each entity's status (active, faulty, removed) and its cause, each verifying
    /// node's voting power, and the open roster proposals.
    Show,
    /// Propose a roster change, signed by a verifying node (proposing counts as approving).
    Propose {
        /// The change.
        #[command(subcommand)]
        change: Box<Change>,
        /// Who signs.
        #[command(flatten)]
        voter: VoterArgs,
    },
    /// Approve an open roster proposal, signed by a verifying node.
    Approve {
        /// The proposal's id.
        id: u64,
        /// Who signs.
        #[command(flatten)]
        voter: VoterArgs,
    },
}

/// The verifying node that signs a proposal or an approval, and how long to wait for it.
#[derive(Debug, Clone, Args)]
pub struct VoterArgs {
    /// The verifying node that signs, with its key from the localnet under --home.
    #[arg(
        long = "as",
        value_name = "vn-N",
        default_value = "vn-0",
        global = true,
        value_parser = parse_vn
    )]
    pub signer: EntityId,
    /// Seconds to wait for the transaction's block.
    #[arg(long, value_name = "SECS", default_value_t = 60, global = true)]
    pub timeout: u64,
}

/// A roster change, as `lemal roster propose` takes it.
#[derive(Debug, Subcommand)]
pub enum Change {
    /// Add a data provider.
    AddDp {
        /// Its sr25519 key (64 hex digits).
        #[arg(long, value_parser = parse_signing_key)]
        key: VerifyingKey,
    },
    /// Add a computing node.
    AddCn(Box<NewCn>),
    /// Add a verifying node, which becomes a CometBFT validator.
    AddVn {
        /// Its sr25519 key (64 hex digits).
        #[arg(long, value_parser = parse_signing_key)]
        key: VerifyingKey,
        /// Its CometBFT ed25519 consensus key: 64 hex digits, or base64 as in
        /// priv_validator_key.json.
        #[arg(long, value_parser = parse_validator_key)]
        validator_key: [u8; 32],
        /// Its voting power.
        #[arg(long, value_parser = parse_power)]
        power: u64,
    },
    /// Remove an entity: it takes no part in new queries; a verifying node leaves the
    /// validator set.
    Remove {
        /// The entity (dp-N, cn-N or vn-N).
        entity: EntityId,
    },
    /// Change a verifying node's voting power.
    SetPower {
        /// The verifying node (vn-N).
        #[arg(value_parser = parse_vn)]
        vn: EntityId,
        /// Its new power.
        #[arg(value_parser = parse_power)]
        power: u64,
    },
}

/// The keys of a computing node to add.
#[derive(Debug, Args)]
pub struct NewCn {
    /// Its sr25519 key (64 hex digits).
    #[arg(long, value_parser = parse_signing_key)]
    key: VerifyingKey,
    /// Its ElGamal key share (64 hex digits).
    #[arg(long, value_parser = parse_share)]
    share: PublicKey,
    /// Proof of possession of the share for the index the node will take (128 hex digits).
    #[arg(long, value_parser = parse_share_pop)]
    share_pop: PossessionProof,
}

impl From<Change> for RosterChange {
    fn from(c: Change) -> Self {
        match c {
            Change::AddDp { key } => RosterChange::AddDp { key },
            Change::AddCn(cn) => {
                RosterChange::AddCn { key: cn.key, share: cn.share, share_pop: cn.share_pop }
            }
            Change::AddVn { key, validator_key, power } => {
                RosterChange::AddVn { key, validator_key, power }
            }
            Change::Remove { entity } => RosterChange::Remove { entity },
            Change::SetPower { vn, power } => RosterChange::SetPower { vn: vn.index, power },
        }
    }
}

fn hex_bytes<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|_| format!("{s:?} is not {} hex digits", 2 * N))?;
    Ok(out)
}

fn parse_signing_key(s: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_bytes(&hex_bytes(s)?).map_err(|e| format!("not an sr25519 key: {e}"))
}

fn parse_share(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_bytes(&hex_bytes(s)?).map_err(|e| format!("not an ElGamal key: {e}"))
}

fn parse_share_pop(s: &str) -> Result<PossessionProof, String> {
    PossessionProof::from_bytes(&hex_bytes(s)?)
        .map_err(|e| format!("not a proof of possession: {e}"))
}

/// An ed25519 consensus key: 64 hex digits, or the base64 `value` of a CometBFT
/// `tendermint/PubKeyEd25519`.
fn parse_validator_key(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if let Ok(bytes) = hex_bytes::<32>(s) {
        return Ok(bytes);
    }
    let bad = || format!("{s:?} is not an ed25519 key (64 hex digits, or 32 bytes in base64)");
    let json = serde_json::json!({ "type": "tendermint/PubKeyEd25519", "value": s });
    let key: tendermint::PublicKey = serde_json::from_value(json).map_err(|_| bad())?;
    key.to_bytes().try_into().map_err(|_| bad())
}

fn parse_power(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .ok()
        .filter(|p| (1..=limits::MAX_VN_POWER).contains(p))
        .ok_or_else(|| format!("{s:?} is not a voting power (1 to {})", limits::MAX_VN_POWER))
}

fn parse_vn(s: &str) -> Result<EntityId, String> {
    match s.trim().parse::<EntityId>() {
        Ok(e) if e.role == Role::Vn => Ok(e),
        _ => Err(format!("{s:?} is not a verifying node (vn-N)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

/// Whether an entity may take part in new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum EntityStatus {
    Active,
    Faulty,
    Removed,
}

impl EntityStatus {
    fn as_str(self) -> &'static str {
        match self {
            EntityStatus::Active => "active",
            EntityStatus::Faulty => "faulty",
            EntityStatus::Removed => "removed",
        }
    }
}

/// What put an entity out of good standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Cause {
    /// A challenge verdict: the challenged proof and the verdict's skipblock.
    Verdict { proof: String, block: u64 },
    /// A roster proposal.
    Proposal { id: u64 },
}

impl From<StandingCause> for Cause {
    fn from(c: StandingCause) -> Self {
        match c {
            StandingCause::Verdict { proof, block } => {
                Cause::Verdict { proof: proof.to_string(), block }
            }
            StandingCause::Proposal { id } => Cause::Proposal { id },
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Verdict { proof, block } => write!(f, "verdict on {proof} (skipblock {block})"),
            Cause::Proposal { id } => write!(f, "roster proposal {id}"),
        }
    }
}

/// One entity of the roster.
#[derive(Debug, Serialize)]
struct EntityView {
    entity: EntityId,
    status: EntityStatus,
    /// Why it is out of good standing.
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<Cause>,
    /// The CometBFT height at which it left good standing.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    /// A verifying node's voting power (0 once it left the validator set).
    #[serde(skip_serializing_if = "Option::is_none")]
    power: Option<u64>,
}

/// Where a roster proposal stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum ProposalState {
    /// Open for approvals until height `expires` (inclusive).
    Open { expires: u64 },
    /// Never passed: its last height for approvals is behind.
    Expired { expires: u64 },
    /// Passed and applied.
    Applied { height: u64, block: u64 },
    /// Passed, but no longer applicable.
    Failed { height: u64, reason: String },
}

/// A roster proposal with its approvals weighed by the current voting power.
#[derive(Debug, Serialize)]
struct ProposalView {
    id: u64,
    change: String,
    proposer: EntityId,
    /// The CometBFT height of the proposal.
    height: u64,
    approvals: Vec<EntityId>,
    /// The approvers' current voting power.
    approved_power: u64,
    /// The current total voting power.
    total_power: u64,
    status: ProposalState,
}

impl ProposalView {
    /// `p` as of the latest height `latest`, weighed with the verifying nodes' current powers.
    fn of(p: &ProposalRecord, powers: &[Option<u64>], latest: u64) -> Self {
        let power =
            |vn: &EntityId| powers.get(vn.index as usize).copied().flatten().unwrap_or_default();
        let status = match &p.status {
            // The next block, at latest + 1, is the first that could take an approval.
            ProposalStatus::Open { expires } if latest >= *expires => {
                ProposalState::Expired { expires: *expires }
            }
            ProposalStatus::Open { expires } => ProposalState::Open { expires: *expires },
            ProposalStatus::Applied { height, block } => {
                ProposalState::Applied { height: *height, block: *block }
            }
            ProposalStatus::Failed { height, reason } => {
                ProposalState::Failed { height: *height, reason: reason.clone() }
            }
        };
        ProposalView {
            id: p.id,
            change: p.change.to_string(),
            proposer: p.proposer,
            height: p.height,
            approvals: p.approvals.clone(),
            approved_power: p.approvals.iter().map(power).sum(),
            total_power: powers.iter().flatten().sum(),
            status,
        }
    }
}

impl fmt::Display for ProposalView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let approvals: Vec<String> = self.approvals.iter().map(ToString::to_string).collect();
        write!(
            f,
            "proposal {} by {} (height {}): {}; ",
            self.id, self.proposer, self.height, self.change
        )?;
        match &self.status {
            ProposalState::Open { expires } => write!(
                f,
                "open with {} approvals ({}), {} of {} voting power (passes above 2/3); \
                 approvable until height {expires}",
                approvals.len(),
                list(&approvals),
                self.approved_power,
                self.total_power
            ),
            ProposalState::Expired { expires } => write!(
                f,
                "expired after height {expires} with {} approvals ({})",
                approvals.len(),
                list(&approvals)
            ),
            ProposalState::Applied { height, block } => {
                write!(f, "applied at height {height} in skipblock {block}")
            }
            ProposalState::Failed { height, reason } => {
                write!(f, "failed at height {height}: {reason}")
            }
        }
    }
}

/// `lemal roster show`.
#[derive(Debug, Serialize)]
struct RosterView {
    chain_id: String,
    /// The latest height when the roster was read.
    height: u64,
    /// The verifying nodes' total voting power.
    total_power: u64,
    entities: Vec<EntityView>,
    /// Proposals still open for approvals.
    open_proposals: Vec<ProposalView>,
}

/// The roster view: every entity (verifying nodes, computing nodes, data providers, each in
/// index order) with its standing and, for a verifying node, its power (`powers[i]` of `vn-i`);
/// and the proposals still open at height `latest`.
fn roster_view(
    chain_id: &str,
    latest: u64,
    roster: &Roster,
    standings: &[StandingRecord],
    powers: &[Option<u64>],
    proposals: &[ProposalRecord],
) -> RosterView {
    let ids = |role: Role, n: usize| (0..n as u32).map(move |index| EntityId { role, index });
    let entities = ids(Role::Vn, roster.vns.len())
        .chain(ids(Role::Cn, roster.cns.len()))
        .chain(ids(Role::Dp, roster.dps.len()))
        .map(|entity| {
            let record = standings.iter().find(|r| r.entity == entity);
            EntityView {
                entity,
                status: match record.map(|r| r.standing) {
                    None => EntityStatus::Active,
                    Some(Standing::Faulty) => EntityStatus::Faulty,
                    Some(Standing::Removed) => EntityStatus::Removed,
                },
                cause: record.map(|r| r.cause.into()),
                since: record.map(|r| r.height),
                power: match entity.role {
                    Role::Vn => powers.get(entity.index as usize).copied().flatten(),
                    Role::Cn | Role::Dp => None,
                },
            }
        })
        .collect();
    RosterView {
        chain_id: chain_id.to_owned(),
        height: latest,
        total_power: powers.iter().flatten().sum(),
        entities,
        open_proposals: proposals
            .iter()
            .map(|p| ProposalView::of(p, powers, latest))
            .filter(|p| matches!(p.status, ProposalState::Open { .. }))
            .collect(),
    }
}

fn render_roster(v: &RosterView) -> String {
    let count = |role: Role| v.entities.iter().filter(|e| e.entity.role == role).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "roster of {} at height {}: {} verifying nodes ({} voting power), {} computing nodes, {} \
         data providers",
        v.chain_id,
        v.height,
        count(Role::Vn),
        v.total_power,
        count(Role::Cn),
        count(Role::Dp)
    );
    let _ = writeln!(s, "{:<8} {:<8} {:>10}  cause", "entity", "status", "power");
    for e in &v.entities {
        let power = e.power.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let cause = match (&e.cause, e.since) {
            (Some(c), Some(h)) => format!("{c}, at height {h}"),
            (Some(c), None) => c.to_string(),
            (None, _) => String::new(),
        };
        let line =
            format!("{:<8} {:<8} {power:>10}  {cause}", e.entity.to_string(), e.status.as_str());
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let _ =
        writeln!(s, "open proposals:{}", if v.open_proposals.is_empty() { " none" } else { "" });
    for p in &v.open_proposals {
        let _ = writeln!(s, "  {p}");
    }
    s
}

/// Each verifying node's voting power, `None` where the node keeps no validator record (a chain
/// started without validators).
fn powers(node: &Node, vns: usize) -> Result<Vec<Option<u64>>> {
    let records = node.validator_records().context("reading the validators")?;
    if records.len() == vns {
        return Ok(records.iter().map(|r| Some(r.power)).collect());
    }
    (0..vns as u32)
        .map(|vn| Ok(node.validator_record(vn)?.map(|r| r.power)))
        .collect::<Result<_>>()
        .context("reading the validators")
}

fn show(global: &Global) -> Result<ExitCode> {
    let node = connect(global)?;
    let status = node.status().with_context(|| format!("is a node running at {}?", node.url()))?;
    let roster = node.roster().context("reading the roster")?;
    let standings = node.standings().context("reading the standings")?;
    let powers = powers(&node, roster.vns.len())?;
    let proposals = node.proposals().context("reading the roster proposals")?;
    let view =
        roster_view(&status.chain_id, status.height, &roster, &standings, &powers, &proposals);
    emit(global, &view, || render_roster(&view))?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Propose, approve
// ---------------------------------------------------------------------------------------------

/// What became of a proposal or an approval.
#[derive(Debug, Serialize)]
struct VoteReport {
    signer: EntityId,
    #[serde(flatten)]
    outcome: VoteOutcome,
}

#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum VoteOutcome {
    /// Accepted in the block at `height`; the proposal as it stands after it.
    Accepted { height: u64, tx: String, proposal: ProposalView },
    /// Refused.
    Rejected { rejection: Rejection },
}

impl fmt::Display for VoteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            VoteOutcome::Accepted { height, proposal, .. } => {
                write!(f, "accepted in block {height}: {proposal}")
            }
            VoteOutcome::Rejected { rejection } => write!(f, "{rejection}"),
        }
    }
}

/// Sign and send `body` as `voter`; once accepted, the proposal `find` reads back.
fn vote(
    global: &Global,
    voter: &VoterArgs,
    body: TxBody,
    find: impl FnOnce(&Node, &Signer, u64) -> Result<ProposalRecord>,
) -> Result<ExitCode> {
    let node = connect(global)?;
    let signer = Signer::load(global, &node, voter.signer)?;
    let outcome = match signer.submit(&node, body, Duration::from_secs(voter.timeout))? {
        Submitted::Rejected(rejection) => VoteOutcome::Rejected { rejection },
        Submitted::Accepted { hash, height } => {
            let record = find(&node, &signer, height)?;
            let latest = node.status()?.height.max(height);
            let roster = node.roster().context("reading the roster")?;
            let powers = powers(&node, roster.vns.len())?;
            VoteOutcome::Accepted {
                height,
                tx: hash,
                proposal: ProposalView::of(&record, &powers, latest),
            }
        }
    };
    let report = VoteReport { signer: signer.entity, outcome };
    let accepted = matches!(report.outcome, VoteOutcome::Accepted { .. });
    if accepted {
        emit(global, &report, || format!("{report}\n"))?;
    } else {
        // A refusal is the command's failure: said on stderr, and as the document with --json.
        eprintln!("lemal: {report}");
        emit(global, &report, String::new)?;
    }
    Ok(exit(accepted))
}

fn propose(change: Change, voter: &VoterArgs, global: &Global) -> Result<ExitCode> {
    let change = RosterChange::from(change);
    eprintln!("proposing to {change}, as {} at {}", voter.signer, global.node);
    let body = TxBody::ProposeRosterChange(Box::new(ProposeRosterChange { change }));
    vote(global, voter, body, |node, signer, height| {
        // A verifying node has one open proposal at a time: its proposal of that height.
        node.proposals()
            .context("reading the roster proposals")?
            .into_iter()
            .find(|p| p.proposer == signer.entity && p.height == height)
            .ok_or_else(|| {
                anyhow!(
                    "the proposal was accepted in block {height}, but the node lists no proposal \
                     of {} at that height",
                    signer.entity
                )
            })
    })
}

fn approve(id: u64, voter: &VoterArgs, global: &Global) -> Result<ExitCode> {
    eprintln!("approving roster proposal {id}, as {} at {}", voter.signer, global.node);
    let body = TxBody::ApproveRosterChange(ApproveRosterChange { proposal: id });
    vote(global, voter, body, |node, _, height| {
        node.proposal(id).context("reading the roster proposal")?.ok_or_else(|| {
            anyhow!("the approval was accepted in block {height}, but proposal {id} is not served")
        })
    })
}

/// `lemal roster`.
pub fn run(action: Action, global: &Global) -> Result<ExitCode> {
    match action {
        Action::Show => show(global),
        Action::Propose { change, voter } => propose(*change, &voter, global),
        Action::Approve { id, voter } => approve(id, &voter, global),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use lemal_contracts::ids::{ProofKey, ProofKind, QueryId};
    use lemal_contracts::sig::SigningKey;
    use lemal_contracts::state::{CnEntry, DpEntry, VnEntry};

    use crate::cli::{Cli, Command};

    fn key(seed: u8) -> VerifyingKey {
        SigningKey::from_seed([seed; 32]).verifying_key()
    }

    fn sample_roster() -> Roster {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(7);
        Roster {
            vns: (0..3).map(|i| VnEntry { validator_address: [i; 20], key: key(i) }).collect(),
            cns: vec![CnEntry {
                key: key(10),
                share: lemal_contracts::elgamal::SecretKey::random(&mut rng).public(),
                share_pop: PossessionProof::default(),
            }],
            dps: (20..22).map(|i| DpEntry { key: key(i) }).collect(),
        }
    }

    fn proof() -> ProofKey {
        ProofKey {
            query: QueryId([0xab; 16]),
            kind: ProofKind::Range,
            creator: EntityId::dp(1),
            index: 0,
        }
    }

    fn proposal(id: u64, status: ProposalStatus) -> ProposalRecord {
        ProposalRecord {
            id,
            change: RosterChange::Remove { entity: EntityId::dp(0) },
            proposer: EntityId::vn(0),
            approvals: vec![EntityId::vn(0), EntityId::vn(2)],
            height: 90,
            status,
        }
    }

    #[test]
    fn roster_show_marks_faulty_and_removed_entities_with_their_cause_and_each_vn_its_power() {
        let standings = [
            StandingRecord {
                entity: EntityId::vn(1),
                standing: Standing::Faulty,
                cause: StandingCause::Verdict { proof: proof(), block: 9 },
                height: 77,
            },
            StandingRecord {
                entity: EntityId::dp(1),
                standing: Standing::Faulty,
                cause: StandingCause::Verdict { proof: proof(), block: 9 },
                height: 77,
            },
            StandingRecord {
                entity: EntityId::dp(0),
                standing: Standing::Removed,
                cause: StandingCause::Proposal { id: 2 },
                height: 80,
            },
        ];
        let powers = [Some(10), Some(0), Some(20)];
        let view = roster_view("lemal-test", 100, &sample_roster(), &standings, &powers, &[]);
        let text = render_roster(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9, "{text}");
        assert!(lines[0].contains("3 verifying nodes (30 voting power), 1 computing nodes, 2 data"));
        assert_eq!(lines[2], "vn-0     active           10");
        assert!(lines[3].starts_with("vn-1     faulty            0  verdict on "), "{text}");
        assert!(lines[3].ends_with("/range/dp-1/0 (skipblock 9), at height 77"), "{text}");
        assert_eq!(lines[5], "cn-0     active            -");
        assert_eq!(lines[6], "dp-0     removed           -  roster proposal 2, at height 80");
        assert!(lines[7].starts_with("dp-1     faulty            -  verdict on"));
        assert_eq!(lines[8], "open proposals: none");
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["entities"][0]["status"], "active");
        assert!(json["entities"][0].get("cause").is_none());
        assert_eq!(json["entities"][1]["status"], "faulty");
        assert_eq!(json["entities"][1]["power"], 0);
        assert_eq!(json["entities"][1]["cause"]["kind"], "verdict");
        assert_eq!(json["entities"][1]["cause"]["block"], 9);
        assert_eq!(json["entities"][4]["cause"], serde_json::json!({"kind": "proposal", "id": 2}));
        assert!(json["entities"][3].get("power").is_none());
    }

    #[test]
    fn roster_show_lists_open_proposals_with_their_approvals_power_and_expiry_only() {
        let proposals = [
            proposal(3, ProposalStatus::Open { expires: 1090 }),
            proposal(4, ProposalStatus::Open { expires: 100 }),
            proposal(5, ProposalStatus::Applied { height: 95, block: 11 }),
        ];
        let powers = [Some(10), Some(10), Some(20)];
        let view = roster_view("lemal-test", 100, &sample_roster(), &[], &powers, &proposals);
        assert_eq!(view.open_proposals.len(), 1);
        let text = render_roster(&view);
        let last = text.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            "  proposal 3 by vn-0 (height 90): remove dp-0; open with 2 approvals (vn-0, vn-2), \
             30 of 40 voting power (passes above 2/3); approvable until height 1090"
        );
        let json = serde_json::to_value(&view).expect("json");
        let p = &json["open_proposals"][0];
        assert_eq!(p["status"], serde_json::json!({"state": "open", "expires": 1090}));
        assert_eq!(p["approvals"], serde_json::json!(["vn-0", "vn-2"]));
        assert_eq!(p["approved_power"], 30);
    }

    #[test]
    fn a_proposal_reads_applied_failed_or_expired_once_closed() {
        let powers = [Some(10), Some(10), Some(20)];
        let line =
            |status, latest| ProposalView::of(&proposal(1, status), &powers, latest).to_string();
        assert!(line(ProposalStatus::Applied { height: 95, block: 11 }, 100)
            .ends_with("; applied at height 95 in skipblock 11"));
        assert!(line(
            ProposalStatus::Failed { height: 95, reason: "dp-0 is already removed".into() },
            100
        )
        .ends_with("; failed at height 95: dp-0 is already removed"));
        assert!(line(ProposalStatus::Open { expires: 100 }, 100)
            .ends_with("; expired after height 100 with 2 approvals (vn-0, vn-2)"));
        assert!(
            line(ProposalStatus::Open { expires: 101 }, 100).contains("; open with 2 approvals")
        );
    }

    #[test]
    fn a_vote_report_shows_the_proposal_as_it_stands_after_the_transaction() {
        let powers = [Some(10), Some(10), Some(20)];
        let applied = ProposalStatus::Applied { height: 95, block: 11 };
        let report = VoteReport {
            signer: EntityId::vn(2),
            outcome: VoteOutcome::Accepted {
                height: 95,
                tx: "00".repeat(32),
                proposal: ProposalView::of(&proposal(1, applied), &powers, 95),
            },
        };
        assert!(report.to_string().starts_with("accepted in block 95: proposal 1 by vn-0"));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["signer"], "vn-2");
        assert_eq!(json["outcome"], "accepted");
        assert_eq!(json["proposal"]["status"]["state"], "applied");
        assert_eq!(json["proposal"]["status"]["block"], 11);
        let refused = VoteReport {
            signer: EntityId::vn(2),
            outcome: VoteOutcome::Rejected {
                rejection: Rejection::new(63, "vn-2 already approved".into(), None),
            },
        };
        assert_eq!(
            refused.to_string(),
            "refused with code 63 (already-approved) by CheckTx: vn-2 already approved"
        );
        let json = serde_json::to_value(&refused).expect("json");
        assert_eq!(json["outcome"], "rejected");
        assert_eq!(json["rejection"]["name"], "already-approved");
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lemal").chain(args.iter().copied()))
    }

    fn propose_args(args: &[&str]) -> (RosterChange, EntityId) {
        match parse(args).map(|cli| cli.command) {
            Ok(Command::Roster { action: Action::Propose { change, voter } }) => {
                ((*change).into(), voter.signer)
            }
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn roster_propose_takes_the_change_as_a_subcommand_and_the_signer_before_or_after_it() {
        let (change, signer) = propose_args(&["roster", "propose", "set-power", "vn-1", "20"]);
        assert_eq!(change, RosterChange::SetPower { vn: 1, power: 20 });
        assert_eq!(signer, EntityId::vn(0));
        let (change, signer) =
            propose_args(&["roster", "propose", "remove", "dp-3", "--as", "vn-2"]);
        assert_eq!(change, RosterChange::Remove { entity: EntityId::dp(3) });
        assert_eq!(signer, EntityId::vn(2));
        let (_, signer) = propose_args(&["roster", "propose", "--as", "vn-1", "remove", "cn-0"]);
        assert_eq!(signer, EntityId::vn(1));
        let hex_key = hex::encode(key(5).to_bytes());
        let (change, _) = propose_args(&["roster", "propose", "add-dp", "--key", &hex_key]);
        assert_eq!(change, RosterChange::AddDp { key: key(5) });
        let b64 = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let (change, _) = propose_args(&[
            "roster",
            "propose",
            "add-vn",
            "--key",
            &hex_key,
            "--validator-key",
            b64,
            "--power",
            "5",
        ]);
        assert_eq!(change, RosterChange::AddVn { key: key(5), validator_key: [7; 32], power: 5 });
        match parse(&["roster", "approve", "4", "--as", "vn-3"]).map(|c| c.command) {
            Ok(Command::Roster { action: Action::Approve { id: 4, voter } }) => {
                assert_eq!(voter.signer, EntityId::vn(3));
            }
            other => panic!("approve parsed as {other:?}"),
        }
    }

    #[test]
    fn bad_roster_changes_are_refused_before_anything_is_signed() {
        let hex_key = hex::encode(key(5).to_bytes());
        for args in [
            &["roster", "propose", "set-power", "cn-1", "20"][..],
            &["roster", "propose", "set-power", "vn-1", "0"],
            &["roster", "propose", "set-power", "vn-1", "1000000001"],
            &["roster", "propose", "remove", "xx-1"],
            &["roster", "propose", "remove", "dp-0", "--as", "dp-1"],
            &["roster", "propose", "add-dp", "--key", "abcd"],
            &["roster", "propose", "add-dp", "--key", &"ff".repeat(32)],
            &[
                "roster",
                "propose",
                "add-vn",
                "--key",
                &hex_key,
                "--validator-key",
                "zz",
                "--power",
                "1",
            ],
            &[
                "roster",
                "propose",
                "add-vn",
                "--key",
                &hex_key,
                "--validator-key",
                "AAAA",
                "--power",
                "1",
            ],
            &["roster", "propose", "add-cn", "--key", &hex_key, "--share", &hex_key],
            &["roster", "approve", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }
}
