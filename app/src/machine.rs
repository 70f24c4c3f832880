//! The deterministic state machine: genesis, transaction checks and execution, and the
//! end-of-block step that closes proof phases, finalizes queries and appends skipblocks.
//!
//! Pure: height, time and chain id arrive as values ([`BlockCtx`], [`Machine`]); state is read
//! and written through [`KvRead`]/[`KvWrite`]. No clock, no randomness, no I/O. Proof
//! verification is not done here: verifying nodes check proofs off-chain and commit verdicts.
//!
//! Validation runs in three phases — stateless ([`Machine::decode_and_authenticate`], or
//! [`Machine::authenticate_block`] for a whole block with one batch signature check), against
//! state ([`Machine::check`]) and execution ([`Machine::execute`]). Every check of a transaction
//! runs before its first write, and the caller executes each transaction in an overlay that it
//! drops on error, so a rejected transaction leaves no trace.

use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Role};
use lemal_contracts::sampling;
use lemal_contracts::sig::VerifyingKey;
use lemal_contracts::state::{
    back_link_target, proofs_root, skip_height, validator_address, Bitmap, BitmapCommitRecord,
    BlockPayload, ChallengeVerdict, CnEntry, DpEntry, GenesisRecord, GenesisState, JudgedSet,
    Params, ProofRecord, ProposalRecord, ProposalStatus, QueryPayload, QueryProgress, QueryRecord,
    QueryStatus, Roster, RosterChangeRecord, SkipBlock, Standing, StandingCause, StandingRecord,
    Timestamp, ValidatorRecord, VerdictRecord, VnEntry,
};
use lemal_contracts::tx::{
    limits, ApproveRosterChange, Challenge, CommitBitmap, Envelope, ProposeRosterChange,
    RegisterQuery, RosterChange, SubmitProof, Tx, TxBody,
};
use sha2::{Digest, Sha256};

use crate::codes::TxError;
use crate::ledger::{get, set, KvRead, KvWrite};

/// The block a transaction executes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCtx {
    /// CometBFT height.
    pub height: u64,
    /// CometBFT block time.
    pub time: Timestamp,
}

/// An ABCI event: a type and string attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event type, e.g. `lemal.proof`.
    pub kind: &'static str,
    /// Attributes (indexed by CometBFT).
    pub attributes: Vec<(&'static str, String)>,
}

impl Event {
    fn new(kind: &'static str, attributes: Vec<(&'static str, String)>) -> Self {
        Self { kind, attributes }
    }
}

/// A CometBFT genesis validator: its ed25519 consensus key and voting power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenesisValidator {
    /// The ed25519 public key.
    pub pub_key: [u8; 32],
    /// Voting power.
    pub power: u64,
}

/// A change of a validator's voting power for CometBFT (power 0 removes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatorUpdate {
    /// The ed25519 public key.
    pub pub_key: [u8; 32],
    /// The new power.
    pub power: u64,
}

/// What the end of a block produced: its events and the validator set changes CometBFT applies
/// (each returned in exactly one block).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockEnd {
    /// End-of-block events.
    pub events: Vec<Event>,
    /// Validator power changes.
    pub validator_updates: Vec<ValidatorUpdate>,
}

/// Why genesis was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// `app_state` is not valid JSON of the expected shape.
    #[error("app_state is not valid genesis JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A key, parameter or roster rule is violated.
    #[error("invalid genesis: {0}")]
    Invalid(#[from] lemal_contracts::DecodeError),
    /// The roster's verifying nodes are not CometBFT's genesis validators.
    #[error("roster VN addresses do not match the genesis validators: {0}")]
    Validators(String),
}

/// The state machine's constant configuration: chain id, parameters and roster, all fixed at
/// genesis and cached here so that transactions do not decode them again.
#[derive(Clone, Debug)]
pub struct Machine {
    chain_id: String,
    params: Params,
    roster: Roster,
}

impl Machine {
    /// Run genesis: validate `app_state`, write parameters, roster and skipblock 0.
    ///
    /// `validators` are CometBFT's genesis validators; when non-empty their addresses must be
    /// exactly the roster's verifying nodes, and each node's consensus key and power are
    /// recorded (they are what later validator updates name).
    pub fn genesis(
        state: &mut impl KvWrite,
        chain_id: &str,
        app_state: &[u8],
        validators: &[GenesisValidator],
        ctx: &BlockCtx,
    ) -> Result<Machine, GenesisError> {
        let genesis: GenesisState = serde_json::from_slice(app_state)?;
        let (params, roster) = genesis.into_typed()?;
        if chain_id.is_empty() || chain_id.len() > limits::MAX_CHAIN_ID {
            return Err(GenesisError::Invalid(lemal_contracts::DecodeError::Invalid {
                what: "chain id",
                why: "must be 1 to 50 bytes",
            }));
        }
        if !validators.is_empty() {
            let mut want: Vec<[u8; 20]> = roster.vns.iter().map(|v| v.validator_address).collect();
            let mut got: Vec<[u8; 20]> =
                validators.iter().map(|v| validator_address(&v.pub_key)).collect();
            want.sort_unstable();
            got.sort_unstable();
            if want != got {
                return Err(GenesisError::Validators(format!(
                    "roster has {} VNs, genesis {} validators, or their addresses differ",
                    want.len(),
                    got.len()
                )));
            }
        }
        if let Some(v) = validators.iter().find(|v| v.power == 0) {
            return Err(GenesisError::Validators(format!(
                "validator {} has no voting power",
                hex::encode(validator_address(&v.pub_key))
            )));
        }
        if !validators.is_empty() && validators.len() < params.min_validators as usize {
            return Err(GenesisError::Validators(format!(
                "{} validators, fewer than min_validators {}",
                validators.len(),
                params.min_validators
            )));
        }
        for v in validators {
            let address = validator_address(&v.pub_key);
            let index = roster
                .vns
                .iter()
                .position(|e| e.validator_address == address)
                .expect("addresses were matched above");
            set::validator(
                state,
                index as u32,
                &ValidatorRecord { pub_key: v.pub_key, power: v.power },
            );
        }
        set::layout_version(state, lemal_contracts::keys::STATE_VERSION);
        set::chain_id(state, chain_id);
        set::params(state, &params);
        set::roster(state, &roster);
        set::genesis_roster(state, &roster);
        let block0 = SkipBlock {
            index: 0,
            height: params.skip_max_height,
            back_links: Vec::new(),
            ledger_height: ctx.height,
            time: ctx.time,
            payload: BlockPayload::Genesis(GenesisRecord::new(chain_id, &roster, &params)),
        };
        set::block(state, &block0, &block0.hash());
        set::skip_head(state, 0);
        Ok(Machine { chain_id: chain_id.to_owned(), params, roster })
    }

    /// Check that state written by genesis (if it ran) has the layout this code reads: a chain
    /// started by an earlier version is refused with the reason, never misread.
    pub fn check_layout(state: &impl KvRead) -> Result<(), String> {
        if state.get(lemal_contracts::keys::CHAIN_ID).is_none() {
            return Ok(()); // genesis has not run
        }
        let want = lemal_contracts::keys::STATE_VERSION;
        match get::layout_version(state) {
            Some(v) if v == want => Ok(()),
            found => Err(format!(
                "its chain was started by {} (state layout {}), this lemal-vn reads layout \
                 {want}; start a new chain (for a localnet: `lemal localnet up`)",
                if found.is_some() { "another version" } else { "an earlier version" },
                found.map_or_else(|| "1, unversioned".to_owned(), |v| v.to_string())
            )),
        }
    }

    /// Load the configuration written by genesis, if genesis ran.
    pub fn load(state: &impl KvRead) -> Option<Machine> {
        Some(Machine {
            chain_id: get::chain_id(state)?,
            params: get::params(state)?,
            roster: get::roster(state)?,
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The cheap stateless checks, on the envelope only: size, chain id, signer in roster.
    /// Returns the envelope and the signer's key; nothing of the body is decoded yet.
    fn envelope<'a>(&self, bytes: &'a [u8]) -> Result<(Envelope<'a>, &VerifyingKey), TxError> {
        let max = self.params.max_tx_bytes as usize;
        if bytes.len() > max {
            return Err(TxError::TooLarge { size: bytes.len(), max });
        }
        let envelope = Envelope::parse(bytes)?;
        if envelope.chain_id != self.chain_id {
            return Err(TxError::WrongChain {
                got: envelope.chain_id.to_owned(),
                expected: self.chain_id.clone(),
            });
        }
        let key = self
            .roster
            .signing_key(envelope.signer)
            .ok_or_else(|| TxError::UnknownSigner(envelope.signer.to_string()))?;
        Ok((envelope, key))
    }

    /// Stateless phase, cheapest first: size, chain id and signer (from the envelope), the
    /// signature over the signed bytes, and only then the strict decoding of the body (one point
    /// decompression per ciphertext). Needs no state: callers run it outside any lock.
    pub fn decode_and_authenticate(&self, bytes: &[u8]) -> Result<Tx, TxError> {
        let (envelope, key) = self.envelope(bytes)?;
        envelope.verify_signature(key).map_err(|e| TxError::BadSignature(e.to_string()))?;
        Ok(Tx::decode(bytes)?)
    }

    /// The stateless phase for a whole block: the envelope checks of every transaction, all
    /// signatures in one batch (one by one only when the batch fails, to find the culprits),
    /// then the bodies of the authentic ones. Same results as
    /// [`Machine::decode_and_authenticate`] on each.
    pub fn authenticate_block<B: AsRef<[u8]>>(&self, txs: &[B]) -> Vec<Result<Tx, TxError>> {
        let envelopes: Vec<Result<(Envelope<'_>, &VerifyingKey), TxError>> =
            txs.iter().map(|b| self.envelope(b.as_ref())).collect();
        let items: Vec<_> = envelopes
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .map(|(e, key)| (*key, e.kind, e.signed, &e.signature))
            .collect();
        let all_valid = lemal_contracts::sig::verify_batch(&items).is_ok();
        envelopes
            .into_iter()
            .zip(txs)
            .map(|(e, b)| {
                let (envelope, key) = e?;
                if !all_valid {
                    envelope
                        .verify_signature(key)
                        .map_err(|e| TxError::BadSignature(e.to_string()))?;
                }
                Ok(Tx::decode(b.as_ref())?)
            })
            .collect()
    }

    /// Stateless and stateful phases, without writing: what CheckTx runs.
    pub fn check(&self, state: &impl KvRead, ctx: &BlockCtx, bytes: &[u8]) -> Result<Tx, TxError> {
        let tx = self.decode_and_authenticate(bytes)?;
        self.check_against_state(state, ctx, &tx)?;
        Ok(tx)
    }

    /// The stateful phase alone, without writing, for a transaction that passed
    /// [`Machine::decode_and_authenticate`] (CheckTx runs it under the store's read lock, and
    /// alone when it re-checks a transaction it has already authenticated).
    pub fn check_against_state(
        &self,
        state: &impl KvRead,
        ctx: &BlockCtx,
        tx: &Tx,
    ) -> Result<(), TxError> {
        match &tx.body {
            TxBody::RegisterQuery(r) => {
                self.check_open_limit(state, tx.signer)?;
                self.check_register(state, tx.signer, r)?;
            }
            TxBody::SubmitProof(p) => {
                self.check_submit(state, ctx, tx.signer, p)?;
            }
            TxBody::CommitBitmap(c) => {
                self.check_commit(state, tx.signer, c)?;
            }
            TxBody::Challenge(c) => {
                self.check_challenge(state, ctx, tx.signer, c)?;
            }
            TxBody::ProposeRosterChange(p) => {
                self.check_propose(state, ctx, tx.signer, p)?;
            }
            TxBody::ApproveRosterChange(a) => {
                self.check_approve(state, ctx, tx.signer, a)?;
            }
        }
        Ok(())
    }

    /// The stateful phase and execution of an authenticated transaction (from
    /// [`Machine::decode_and_authenticate`] or [`Machine::authenticate_block`]). Writes only
    /// when every check passed.
    pub fn execute(
        &self,
        state: &mut impl KvWrite,
        ctx: &BlockCtx,
        tx: Tx,
    ) -> Result<Vec<Event>, TxError> {
        let signer = tx.signer;
        match tx.body {
            TxBody::RegisterQuery(r) => {
                let open = self.check_open_limit(state, signer)?;
                self.check_register(state, signer, &r)?;
                let q = r.query_id;
                set::open_by_cn(state, signer.index, open + 1);
                let events = vec![Event::new(
                    "lemal.register",
                    vec![("query", q.to_string()), ("registrar", signer.to_string())],
                )];
                let record =
                    QueryRecord { registration: *r, registrar: signer, registered_at: ctx.height };
                set::due(state, record.proof_deadline_height(), &q);
                set::query(state, &q, &record);
                set::progress(
                    state,
                    &q,
                    &QueryProgress {
                        status: QueryStatus::Collecting,
                        received: 0,
                        commits: 0,
                        judged: None,
                    },
                );
                set::open(state, &q, true);
                Ok(events)
            }
            TxBody::SubmitProof(p) => {
                let (key, mut progress) = self.check_submit(state, ctx, signer, &p)?;
                set::proof(
                    state,
                    &ProofRecord {
                        key,
                        inputs: p.inputs,
                        outputs: p.outputs,
                        proof: p.proof,
                        height: ctx.height,
                    },
                );
                progress.received += 1;
                set::progress(state, &key.query, &progress);
                let record = get::query(state, &key.query)
                    .unwrap_or_else(|| panic!("query {} was checked to exist", key.query));
                if progress.received as usize
                    == record.registration.spec.expected_proofs(key.query).len()
                {
                    // Complete: the proof phase ends with this block, not at the deadline.
                    set::done(state, record.proof_deadline_height(), &key.query);
                    set::due(state, ctx.height, &key.query);
                }
                Ok(vec![Event::new(
                    "lemal.proof",
                    vec![
                        ("key", key.to_string()),
                        ("query", key.query.to_string()),
                        ("kind", key.kind.to_string()),
                        ("creator", key.creator.to_string()),
                    ],
                )])
            }
            TxBody::CommitBitmap(c) => {
                let mut progress = self.check_commit(state, signer, &c)?;
                set::commit(
                    state,
                    &c.query_id,
                    &BitmapCommitRecord {
                        vn: signer,
                        vrf: c.vrf,
                        verdicts: c.verdicts,
                        height: ctx.height,
                    },
                );
                progress.commits += 1;
                set::progress(state, &c.query_id, &progress);
                let verifiers = progress.judged.as_ref().map_or(0, |j| j.verifiers.len());
                if progress.commits as usize == verifiers {
                    // Every verifying node committed: finalize with this block.
                    if let (QueryStatus::Committing { since }, Some(record)) =
                        (progress.status, get::query(state, &c.query_id))
                    {
                        let window = since + u64::from(record.registration.commit_window);
                        set::done(state, window, &c.query_id);
                    }
                    set::due(state, ctx.height, &c.query_id);
                }
                Ok(vec![Event::new(
                    "lemal.bitmap",
                    vec![("query", c.query_id.to_string()), ("verifier", signer.to_string())],
                )])
            }
            TxBody::Challenge(c) => self.execute_challenge(state, ctx, signer, c),
            TxBody::ProposeRosterChange(p) => {
                self.check_propose(state, ctx, signer, &p)?;
                let id = get::next_proposal(state);
                set::next_proposal(state, id + 1);
                set::proposed_by(state, signer, id);
                let expires = ctx.height + u64::from(self.params.proposal_ttl);
                let record = ProposalRecord {
                    id,
                    change: p.change,
                    proposer: signer,
                    approvals: vec![signer],
                    height: ctx.height,
                    status: ProposalStatus::Open { expires },
                };
                let mut events = vec![Event::new(
                    "lemal.roster_proposal",
                    vec![
                        ("id", id.to_string()),
                        ("proposer", signer.to_string()),
                        ("change", record.change.to_string()),
                    ],
                )];
                events.extend(self.count_approvals(state, ctx, record));
                Ok(events)
            }
            TxBody::ApproveRosterChange(a) => {
                let mut record = self.check_approve(state, ctx, signer, &a)?;
                record.approvals.push(signer);
                let mut events = vec![Event::new(
                    "lemal.roster_approval",
                    vec![("id", a.proposal.to_string()), ("approver", signer.to_string())],
                )];
                events.extend(self.count_approvals(state, ctx, record));
                Ok(events)
            }
        }
    }

    /// Refuse an entity that is faulty or removed.
    fn check_standing(&self, state: &impl KvRead, entity: EntityId) -> Result<(), TxError> {
        match get::standing(state, entity) {
            None => Ok(()),
            Some(r) => Err(TxError::NotInGoodStanding {
                entity: entity.to_string(),
                standing: r.standing.as_str(),
            }),
        }
    }

    /// The voting power of verifying node `vn` (0 without a validator record, or once it left
    /// the validator set).
    fn power(state: &impl KvRead, vn: u32) -> u64 {
        get::validator(state, vn).map_or(0, |v| v.power)
    }

    /// A verifying node in good standing with voting power: who may propose and approve.
    fn check_voter(&self, state: &impl KvRead, signer: EntityId) -> Result<u64, TxError> {
        self.check_standing(state, signer)?;
        match Self::power(state, signer.index) {
            0 => Err(TxError::BadRosterChange(format!("{signer} holds no voting power"))),
            power => Ok(power),
        }
    }

    /// The verifying nodes whose bitmaps a query closing now expects: those in good standing
    /// (and, where validators are recorded, with voting power), in roster order.
    fn current_verifiers(&self, state: &impl KvRead) -> Vec<EntityId> {
        let recorded = !get::validators(state).is_empty();
        self.roster
            .vn_ids()
            .into_iter()
            .filter(|&vn| get::standing(state, vn).is_none())
            .filter(|vn| !recorded || Self::power(state, vn.index) > 0)
            .collect()
    }

    fn check_challenge(
        &self,
        state: &impl KvRead,
        ctx: &BlockCtx,
        signer: EntityId,
        c: &Challenge,
    ) -> Result<(ProofRecord, QueryRecord, u64, u64), TxError> {
        self.check_standing(state, signer)?;
        let key = c.proof;
        let q = key.query;
        let query = get::query(state, &q).ok_or_else(|| TxError::UnknownQuery(q.to_string()))?;
        let record =
            get::proof(state, &key).ok_or_else(|| TxError::UnknownProof(key.to_string()))?;
        let Some(QueryStatus::Finalized { block }) = get::progress(state, &q).map(|p| p.status)
        else {
            return Err(TxError::QueryNotFinal(q.to_string()));
        };
        if let Some(v) = get::verdict(state, &key) {
            return Err(TxError::AlreadySettled { key: key.to_string(), block: v.block });
        }
        let count = get::unfounded(state, signer);
        if count >= self.params.max_unfounded_challenges {
            return Err(TxError::ChallengeQuota { signer: signer.to_string(), count });
        }
        let cost = lemal_contracts::proofs::verify_cost(&query.registration.spec, key.kind);
        let spent = get::challenge_spend(state, ctx.height);
        if spent > 0 && spent.saturating_add(cost) > self.params.challenge_budget {
            return Err(TxError::ChallengeBudget { spent, budget: self.params.challenge_budget });
        }
        Ok((record, query, block, cost))
    }

    /// Settle a challenge: re-verify the proof against its statement built from the ledger,
    /// record the verdict in state and as a skipblock linked to the query's block, and put
    /// whoever it finds at fault out of good standing (a verifying node also leaves the
    /// validator set, while the set keeps `min_validators`).
    fn execute_challenge(
        &self,
        state: &mut impl KvWrite,
        ctx: &BlockCtx,
        signer: EntityId,
        c: Challenge,
    ) -> Result<Vec<Event>, TxError> {
        let (record, query, query_block, cost) = self.check_challenge(state, ctx, signer, &c)?;
        let key = c.proof;
        set::challenge_spend(state, ctx.height, get::challenge_spend(state, ctx.height) + cost);
        let outcome = {
            let ledger = |k: &ProofKey| get::proof(state, k);
            lemal_contracts::proofs::resolve(
                &self.chain_id,
                &self.roster,
                &query.registration,
                &record,
                &ledger,
            )
            .map_err(|e| e.to_string())
            .and_then(|st| st.verify(&record.proof).map_err(|e| e.to_string()))
        };
        let block = get::block(state, query_block)
            .unwrap_or_else(|| panic!("finalized query {} has no block {query_block}", key.query));
        let BlockPayload::Query(payload) = &block.payload else {
            panic!("block {query_block} of query {} is not a query block", key.query)
        };
        let valid = outcome.is_ok();
        let vns_at_fault = payload.bitmap.contradicting(&key, valid);
        let reason = outcome.err().map_or_else(String::new, |e| ChallengeVerdict::reason_of(&e));
        let verdict = ChallengeVerdict {
            proof: key,
            challenger: signer,
            valid,
            reason,
            creator_at_fault: (!valid).then_some(key.creator),
            vns_at_fault,
            query_block,
            query_block_hash: block.hash(),
            height: ctx.height,
        };
        if !verdict.founded() {
            set::unfounded(state, signer, get::unfounded(state, signer) + 1);
        }
        let index = self.append(state, ctx, BlockPayload::Verdict(verdict.clone()));
        let at_fault: Vec<EntityId> = verdict.at_fault().collect();
        let mut events = vec![Event::new(
            "lemal.challenge",
            vec![
                ("proof", key.to_string()),
                ("challenger", signer.to_string()),
                ("valid", valid.to_string()),
                (
                    "at_fault",
                    at_fault.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                ),
                ("block", index.to_string()),
            ],
        )];
        set::verdict(state, &VerdictRecord { verdict, block: index });
        let cause = StandingCause::Verdict { proof: key, block: index };
        for entity in at_fault {
            events.extend(self.put_out(state, ctx, entity, Standing::Faulty, cause));
        }
        Ok(events)
    }

    /// Put an entity out of good standing (keeping an earlier record); a verifying node leaves
    /// the validator set unless that would leave fewer than `min_validators`.
    fn put_out(
        &self,
        state: &mut impl KvWrite,
        ctx: &BlockCtx,
        entity: EntityId,
        standing: Standing,
        cause: StandingCause,
    ) -> Vec<Event> {
        if get::standing(state, entity).is_none() {
            set::standing(state, &StandingRecord { entity, standing, cause, height: ctx.height });
        }
        let mut events = vec![Event::new(
            "lemal.standing",
            vec![("entity", entity.to_string()), ("standing", standing.as_str().to_owned())],
        )];
        if entity.role == Role::Vn && Self::power(state, entity.index) > 0 {
            let validators = get::validators(state).iter().filter(|(_, v)| v.power > 0).count();
            if validators > self.params.min_validators as usize {
                self.set_power(state, entity.index, 0);
                events.push(Event::new(
                    "lemal.validator",
                    vec![("vn", entity.to_string()), ("power", "0".to_owned())],
                ));
            } else {
                events.push(Event::new(
                    "lemal.validator_kept",
                    vec![
                        ("vn", entity.to_string()),
                        (
                            "why",
                            format!(
                                "the validator set keeps min_validators {}",
                                self.params.min_validators
                            ),
                        ),
                    ],
                ));
            }
        }
        events
    }

    /// Set a verifying node's voting power and queue the validator update for this block. An
    /// update that returns a node to its power at the start of the block is dropped, so that
    /// CometBFT is never asked to remove a validator it never had.
    fn set_power(&self, state: &mut impl KvWrite, vn: u32, power: u64) {
        let mut record =
            get::validator(state, vn).unwrap_or_else(|| panic!("vn-{vn} has no validator record"));
        let before = record.power;
        record.power = power;
        set::validator(state, vn, &record);
        let mut updates = get::validator_updates(state);
        match updates.iter().position(|u| u.0 == vn) {
            Some(i) if updates[i].1 == power => {
                updates.remove(i);
            }
            Some(i) => updates[i].2 = power,
            None => updates.push((vn, before, power)),
        }
        set::validator_updates(state, &updates);
    }

    fn check_propose(
        &self,
        state: &impl KvRead,
        ctx: &BlockCtx,
        signer: EntityId,
        p: &ProposeRosterChange,
    ) -> Result<(), TxError> {
        self.check_voter(state, signer)?;
        if let Some(id) = get::proposed_by(state, signer) {
            if let Some(ProposalRecord { status: ProposalStatus::Open { expires }, .. }) =
                get::proposal(state, id)
            {
                if ctx.height <= expires {
                    return Err(TxError::ProposalPending { signer: signer.to_string(), id });
                }
            }
        }
        self.check_change(state, &p.change)
    }

    fn check_approve(
        &self,
        state: &impl KvRead,
        ctx: &BlockCtx,
        signer: EntityId,
        a: &ApproveRosterChange,
    ) -> Result<ProposalRecord, TxError> {
        self.check_voter(state, signer)?;
        let id = a.proposal;
        let record = get::proposal(state, id).ok_or(TxError::UnknownProposal(id))?;
        match record.status {
            ProposalStatus::Open { expires } if ctx.height <= expires => {}
            ProposalStatus::Open { .. } => {
                return Err(TxError::ProposalClosed { id, state: "expired" })
            }
            ProposalStatus::Applied { .. } => {
                return Err(TxError::ProposalClosed { id, state: "applied" })
            }
            ProposalStatus::Failed { .. } => {
                return Err(TxError::ProposalClosed { id, state: "failed" })
            }
        }
        if record.approvals.contains(&signer) {
            return Err(TxError::AlreadyApproved { signer: signer.to_string(), id });
        }
        Ok(record)
    }

    /// Whether `change` applies to the current roster.
    fn check_change(&self, state: &impl KvRead, change: &RosterChange) -> Result<(), TxError> {
        let bad = |why: String| Err(TxError::BadRosterChange(why));
        let roster = get::roster(state).expect("genesis wrote the roster");
        let key_used = |key: &VerifyingKey| {
            let k = key.to_bytes();
            roster
                .vns
                .iter()
                .map(|e| &e.key)
                .chain(roster.cns.iter().map(|e| &e.key))
                .chain(roster.dps.iter().map(|e| &e.key))
                .any(|e| e.to_bytes() == k)
        };
        let limit = |len: usize, max: usize, role: &str| {
            if len >= max {
                bad(format!("the roster holds its maximum of {max} {role}"))
            } else {
                Ok(())
            }
        };
        match change {
            RosterChange::AddDp { key } => {
                limit(roster.dps.len(), limits::MAX_ROSTER_DPS, "data providers")?;
                if key_used(key) {
                    return bad("the key is already in the roster".into());
                }
            }
            RosterChange::AddCn { key, share, share_pop } => {
                limit(roster.cns.len(), limits::MAX_ROSTER_CNS, "computing nodes")?;
                if key_used(key) {
                    return bad("the key is already in the roster".into());
                }
                let id = EntityId::cn(roster.cns.len() as u32);
                if share_pop.verify(&lemal_contracts::state::cn_pop_context(id), share).is_err() {
                    return bad(format!(
                        "the share's proof of possession does not verify for {id}, the index it would take"
                    ));
                }
            }
            RosterChange::AddVn { key, validator_key, .. } => {
                limit(roster.vns.len(), limits::MAX_VNS, "verifying nodes")?;
                if key_used(key) {
                    return bad("the key is already in the roster".into());
                }
                let address = validator_address(validator_key);
                if roster.vns.iter().any(|v| v.validator_address == address) {
                    return bad("the consensus key is already a validator's".into());
                }
            }
            RosterChange::Remove { entity } => {
                if roster.signing_key(*entity).is_none() {
                    return bad(format!("{entity} is not in the roster"));
                }
                if let Some(StandingRecord { standing: Standing::Removed, .. }) =
                    get::standing(state, *entity)
                {
                    return bad(format!("{entity} is already removed"));
                }
                if entity.role == Role::Vn && Self::power(state, entity.index) > 0 {
                    let validators =
                        get::validators(state).iter().filter(|(_, v)| v.power > 0).count();
                    if validators <= self.params.min_validators as usize {
                        return bad(format!(
                            "removing {entity} would leave {} validators, below min_validators {}",
                            validators - 1,
                            self.params.min_validators
                        ));
                    }
                }
            }
            RosterChange::SetPower { vn, .. } => {
                let entity = EntityId::vn(*vn);
                if roster.signing_key(entity).is_none() {
                    return bad(format!("{entity} is not in the roster"));
                }
                if get::standing(state, entity).is_some() || Self::power(state, *vn) == 0 {
                    return bad(format!("{entity} is not a validator in good standing"));
                }
            }
        }
        Ok(())
    }

    /// Count a proposal's approvals by current voting power; once they exceed 2/3 of the total,
    /// apply the change (or record why it no longer applies). Writes the proposal either way.
    fn count_approvals(
        &self,
        state: &mut impl KvWrite,
        ctx: &BlockCtx,
        mut record: ProposalRecord,
    ) -> Vec<Event> {
        let total: u64 = get::validators(state).iter().map(|(_, v)| v.power).sum();
        let approved: u64 = record.approvals.iter().map(|vn| Self::power(state, vn.index)).sum();
        let mut events = Vec::new();
        if u128::from(approved) * 3 > u128::from(total) * 2 {
            match self.check_change(state, &record.change) {
                Ok(()) => {
                    let entity = self.apply_change(state, ctx, &record);
                    let roster = get::roster(state).expect("genesis wrote the roster");
                    let block = self.append(
                        state,
                        ctx,
                        BlockPayload::RosterChange(Box::new(RosterChangeRecord {
                            proposal: record.id,
                            change: record.change.clone(),
                            entity,
                            approvals: record.approvals.clone(),
                            approved_power: approved,
                            total_power: total,
                            roster_hash: Sha256::digest(lemal_contracts::group::to_borsh(&roster))
                                .into(),
                        })),
                    );
                    record.status = ProposalStatus::Applied { height: ctx.height, block };
                    events.push(Event::new(
                        "lemal.roster_change",
                        vec![
                            ("id", record.id.to_string()),
                            ("entity", entity.to_string()),
                            ("block", block.to_string()),
                        ],
                    ));
                }
                Err(e) => {
                    record.status =
                        ProposalStatus::Failed { height: ctx.height, reason: e.to_string() };
                    events.push(Event::new(
                        "lemal.roster_change_failed",
                        vec![("id", record.id.to_string()), ("reason", e.to_string())],
                    ));
                }
            }
        }
        set::proposal(state, &record);
        events
    }

    /// Apply a checked roster change; returns the entity it added or changed.
    fn apply_change(
        &self,
        state: &mut impl KvWrite,
        ctx: &BlockCtx,
        record: &ProposalRecord,
    ) -> EntityId {
        let mut roster = get::roster(state).expect("genesis wrote the roster");
        let entity = match &record.change {
            RosterChange::AddDp { key } => {
                roster.dps.push(DpEntry { key: *key });
                EntityId::dp(roster.dps.len() as u32 - 1)
            }
            RosterChange::AddCn { key, share, share_pop } => {
                roster.cns.push(CnEntry { key: *key, share: *share, share_pop: *share_pop });
                EntityId::cn(roster.cns.len() as u32 - 1)
            }
            RosterChange::AddVn { key, validator_key, power } => {
                roster.vns.push(VnEntry {
                    validator_address: validator_address(validator_key),
                    key: *key,
                });
                let vn = roster.vns.len() as u32 - 1;
                set::validator(state, vn, &ValidatorRecord { pub_key: *validator_key, power: 0 });
                self.set_power(state, vn, *power);
                EntityId::vn(vn)
            }
            RosterChange::Remove { entity } => {
                let cause = StandingCause::Proposal { id: record.id };
                set::standing(
                    state,
                    &StandingRecord {
                        entity: *entity,
                        standing: Standing::Removed,
                        cause,
                        height: ctx.height,
                    },
                );
                if entity.role == Role::Vn && Self::power(state, entity.index) > 0 {
                    self.set_power(state, entity.index, 0);
                }
                *entity
            }
            RosterChange::SetPower { vn, power } => {
                self.set_power(state, *vn, *power);
                EntityId::vn(*vn)
            }
        };
        set::roster(state, &roster);
        entity
    }

    /// The registrar's open queries, refused when they reach the chain's maximum.
    fn check_open_limit(&self, state: &impl KvRead, registrar: EntityId) -> Result<u32, TxError> {
        let open = get::open_by_cn(state, registrar.index);
        if open >= self.params.max_open_queries_per_cn {
            return Err(TxError::TooManyOpenQueries { registrar: registrar.to_string(), open });
        }
        Ok(open)
    }

    fn check_register(
        &self,
        state: &impl KvRead,
        signer: EntityId,
        r: &RegisterQuery,
    ) -> Result<(), TxError> {
        let q = r.query_id;
        if get::query(state, &q).is_some() {
            return Err(TxError::QueryExists(q.to_string()));
        }
        let spec = &r.spec;
        if !spec.cns.contains(&signer.index) {
            return Err(TxError::NotParticipant(format!(
                "registrar {signer} is not among the query's computing nodes"
            )));
        }
        if let Some(&d) = spec.dps.iter().find(|&&d| d as usize >= self.roster.dps.len()) {
            return Err(TxError::UnknownEntity(EntityId::dp(d).to_string()));
        }
        if let Some(&c) = spec.cns.iter().find(|&&c| c as usize >= self.roster.cns.len()) {
            return Err(TxError::UnknownEntity(EntityId::cn(c).to_string()));
        }
        // Who was found at fault or removed takes no part in new queries.
        for &c in &spec.cns {
            self.check_standing(state, EntityId::cn(c))?;
        }
        for &d in &spec.dps {
            self.check_standing(state, EntityId::dp(d))?;
        }
        if r.proof_deadline > self.params.max_proof_deadline {
            return Err(TxError::LimitExceeded(format!(
                "proof deadline {} exceeds the chain's maximum {}",
                r.proof_deadline, self.params.max_proof_deadline
            )));
        }
        if r.commit_window > self.params.max_commit_window {
            return Err(TxError::LimitExceeded(format!(
                "commit window {} exceeds the chain's maximum {}",
                r.commit_window, self.params.max_commit_window
            )));
        }
        if r.threshold_ppm < self.params.min_threshold_ppm {
            return Err(TxError::ThresholdTooLow {
                got: r.threshold_ppm,
                min: self.params.min_threshold_ppm,
            });
        }
        if spec.noise_rows() > usize::from(self.params.max_noise_rows) {
            return Err(TxError::LimitExceeded(format!(
                "{} noise rows exceed the chain's maximum {}",
                spec.noise_rows(),
                self.params.max_noise_rows
            )));
        }
        r.verify_querier(&self.chain_id).map_err(|e| TxError::BadQuerierKey(e.to_string()))?;
        Ok(())
    }

    fn check_submit(
        &self,
        state: &impl KvRead,
        ctx: &BlockCtx,
        signer: EntityId,
        p: &SubmitProof,
    ) -> Result<(ProofKey, QueryProgress), TxError> {
        let q = p.query_id;
        let record = get::query(state, &q).ok_or_else(|| TxError::UnknownQuery(q.to_string()))?;
        let progress = get::progress(state, &q)
            .unwrap_or_else(|| panic!("query {q} has a registration but no progress record"));
        if progress.status != QueryStatus::Collecting || ctx.height > record.proof_deadline_height()
        {
            return Err(TxError::ProofPhaseOver(q.to_string()));
        }
        let spec = &record.registration.spec;
        let key = p.key(signer);
        if !spec.expects(&key) {
            return Err(TxError::UnexpectedProof(key.to_string()));
        }
        if get::has_proof(state, &key) {
            return Err(TxError::DuplicateProof(key.to_string()));
        }
        let want = spec.output_len(p.kind);
        if p.outputs.len() != want {
            return Err(TxError::BadOutputs(format!(
                "{} carries {} output ciphertexts, the query expects {want}",
                key,
                p.outputs.len()
            )));
        }
        let expected_len = spec.proof_len(p.kind);
        if p.proof.len() != expected_len {
            return Err(TxError::BadProofLength {
                key: key.to_string(),
                got: p.proof.len(),
                expected: expected_len,
            });
        }
        let present = |k: &ProofKey| {
            if get::has_proof(state, k) {
                Ok(())
            } else {
                Err(TxError::MissingInput(k.to_string()))
            }
        };
        let allowed = spec.inputs_of(&key);
        if p.kind == ProofKind::Aggregation {
            // An aggregation names the allowed inputs it sums; each must be on the ledger.
            for input in &p.inputs {
                if allowed.binary_search(input).is_err() {
                    return Err(TxError::InvalidInput(input.to_string()));
                }
                present(input)?;
            }
            // Completeness: it lists every allowed input on the ledger, and may leave out a
            // missing one only after the data-provider deadline.
            let after_dp_deadline = ctx.height > record.dp_deadline_height();
            for a in allowed.iter().filter(|a| p.inputs.binary_search(a).is_err()) {
                if get::has_proof(state, a) {
                    return Err(TxError::IncompleteAggregation(format!(
                        "{key} leaves out {a}, which is on the ledger"
                    )));
                }
                if !after_dp_deadline {
                    return Err(TxError::IncompleteAggregation(format!(
                        "{key} leaves out the missing {a} before the data-provider deadline \
                         (height {})",
                        record.dp_deadline_height()
                    )));
                }
            }
        } else {
            // The others take all their inputs, fixed by the query.
            for input in &allowed {
                present(input)?;
            }
        }
        Ok((key, progress))
    }

    fn check_commit(
        &self,
        state: &impl KvRead,
        signer: EntityId,
        c: &CommitBitmap,
    ) -> Result<QueryProgress, TxError> {
        let q = c.query_id;
        let record = get::query(state, &q).ok_or_else(|| TxError::UnknownQuery(q.to_string()))?;
        let progress = get::progress(state, &q)
            .unwrap_or_else(|| panic!("query {q} has a registration but no progress record"));
        let (QueryStatus::Committing { .. }, Some(judged)) = (progress.status, &progress.judged)
        else {
            return Err(TxError::NotCommitting(q.to_string()));
        };
        if !judged.verifiers.contains(&signer) {
            return Err(TxError::NotAVerifier(signer.to_string()));
        }
        if get::commit(state, &q, signer).is_some() {
            return Err(TxError::DuplicateBitmap(signer.to_string()));
        }
        let key = self
            .roster
            .signing_key(signer)
            .ok_or_else(|| TxError::UnknownSigner(signer.to_string()))?;
        let output = sampling::verify(key, &self.chain_id, &q, signer, &c.vrf)
            .map_err(|e| TxError::BadVrf(e.to_string()))?;
        if c.proofs_digest != judged.proofs_root {
            return Err(TxError::WrongProofSet {
                got: hex::encode(c.proofs_digest),
                expected: hex::encode(judged.proofs_root),
            });
        }
        let expected = record.registration.spec.expected_proofs(q);
        if c.verdicts.len() != expected.len() {
            return Err(TxError::BadVerdicts(format!(
                "{} verdicts for {} expected proofs",
                c.verdicts.len(),
                expected.len()
            )));
        }
        let threshold = record.registration.threshold_ppm;
        for ((k, &received), &v) in expected.iter().zip(&judged.received).zip(&c.verdicts) {
            // The chain knows the selection, not the validity: that is the worker's to find.
            let selected = sampling::is_selected(&output, k, threshold);
            if !v.allowed(received, Some(selected), None) {
                return Err(TxError::BadVerdicts(format!(
                    "verdict {} on {k} contradicts {} (received: {received})",
                    v.value(),
                    if selected { "its selection" } else { "its non-selection" }
                )));
            }
        }
        Ok(progress)
    }

    /// End of block: close proof phases whose set is complete or whose deadline passed, and
    /// finalize queries whose verifying nodes all committed or whose commit window ended.
    ///
    /// Only the queries on this height's agenda are looked at, not every open query. Each open
    /// query has exactly one agenda entry, at the height where its phase ends unless something
    /// ends it earlier: its proof deadline from registration, its commit window's end once its
    /// proof phase closes; the entry moves to the current height when its last expected proof
    /// or last bitmap commit arrives. Every such height is at least the current one, so no
    /// agenda is left behind, and a block in which no phase ends writes nothing.
    ///
    /// Then it drains the validator power changes the block's transactions made, for CometBFT.
    pub fn end_block(&self, state: &mut impl KvWrite, ctx: &BlockCtx) -> BlockEnd {
        let events = self.close_phases(state, ctx);
        let updates = get::validator_updates(state);
        set::validator_updates(state, &Vec::new());
        let validator_updates = updates
            .into_iter()
            .map(|(vn, _, power)| ValidatorUpdate {
                pub_key: get::validator(state, vn)
                    .unwrap_or_else(|| panic!("vn-{vn} has a power change but no validator record"))
                    .pub_key,
                power,
            })
            .collect();
        BlockEnd { events, validator_updates }
    }

    fn close_phases(&self, state: &mut impl KvWrite, ctx: &BlockCtx) -> Vec<Event> {
        let mut events = Vec::new();
        for q in get::due(state, ctx.height) {
            set::done(state, ctx.height, &q);
            let record = get::query(state, &q)
                .unwrap_or_else(|| panic!("query {q} on the agenda has no registration"));
            let mut progress = get::progress(state, &q)
                .unwrap_or_else(|| panic!("query {q} on the agenda has no progress record"));
            let spec = &record.registration.spec;
            match progress.status {
                QueryStatus::Collecting => {
                    let expected = spec.expected_proofs(q);
                    let complete = progress.received as usize == expected.len();
                    let deadline = record.proof_deadline_height();
                    if !(complete || ctx.height >= deadline) {
                        set::due(state, deadline, &q); // not reachable: kept for liveness
                    } else {
                        progress.judged =
                            Some(judge(state, &q, &expected, self.current_verifiers(state)));
                        progress.status = QueryStatus::Committing { since: ctx.height };
                        set::progress(state, &q, &progress);
                        let window = ctx.height + u64::from(record.registration.commit_window);
                        set::due(state, window, &q);
                        events.push(Event::new(
                            "lemal.proof_phase_end",
                            vec![
                                ("query", q.to_string()),
                                ("received", progress.received.to_string()),
                                ("expected", expected.len().to_string()),
                            ],
                        ));
                    }
                }
                QueryStatus::Committing { since } => {
                    let verifiers = progress.judged.as_ref().map_or(0, |j| j.verifiers.len());
                    let all = progress.commits as usize == verifiers;
                    let window = since + u64::from(record.registration.commit_window);
                    if !(all || ctx.height >= window) {
                        set::due(state, window, &q); // not reachable: kept for liveness
                    } else {
                        let index = self.finalize(state, ctx, &record, &progress);
                        progress.status = QueryStatus::Finalized { block: index };
                        set::progress(state, &q, &progress);
                        set::open(state, &q, false);
                        let cn = record.registrar.index;
                        let open = get::open_by_cn(state, cn);
                        set::open_by_cn(state, cn, open.saturating_sub(1));
                        events.push(Event::new(
                            "lemal.skipblock",
                            vec![("query", q.to_string()), ("index", index.to_string())],
                        ));
                    }
                }
                QueryStatus::Finalized { .. } => {
                    panic!("finalized query {q} is on the agenda of height {}", ctx.height)
                }
            }
        }
        events
    }

    /// Build the query's bitmap and result, append its skipblock, fill forward links.
    fn finalize(
        &self,
        state: &mut impl KvWrite,
        ctx: &BlockCtx,
        record: &QueryRecord,
        progress: &QueryProgress,
    ) -> u64 {
        let reg = &record.registration;
        let q = reg.query_id;
        let expected = reg.spec.expected_proofs(q);
        let judged = progress.judged.as_ref().expect("a committing query has a judged set");
        let verifiers = judged.verifiers.clone();
        let commits = get::commits(state, &q);
        assert!(
            commits.iter().all(|c| c.verdicts.len() == expected.len()),
            "a bitmap commit of {q} was accepted with another number of verdicts than proofs"
        );
        let bitmap = Bitmap::from_columns(expected, verifiers.clone(), |vn| {
            commits.iter().find(|c| c.vn == vn).map(|c| &c.verdicts[..])
        });
        let reported: Vec<EntityId> = commits.iter().map(|c| c.vn).collect();
        let absent = verifiers.iter().filter(|v| !reported.contains(v)).copied().collect();
        let ledger = |k: &ProofKey| get::proof(state, k);
        let covered = lemal_contracts::proofs::covered_dps(reg, &ledger);
        let payload = QueryPayload {
            query_id: q,
            bitmap,
            threshold_ppm: reg.threshold_ppm,
            reported,
            absent,
            proofs_root: judged.proofs_root,
            result: lemal_contracts::proofs::result_ciphertexts(reg, &ledger).unwrap_or_default(),
            uncovered: reg
                .spec
                .dps
                .iter()
                .map(|&d| EntityId::dp(d))
                .filter(|d| covered.binary_search(d).is_err())
                .collect(),
            covered,
        };
        self.append(state, ctx, BlockPayload::Query(payload))
    }

    /// Append a skipblock after the head and fill the forward links that point to it.
    fn append(&self, state: &mut impl KvWrite, ctx: &BlockCtx, payload: BlockPayload) -> u64 {
        let head = get::skip_head(state).expect("genesis wrote the skipchain head");
        let index = head + 1;
        let base = self.params.skip_base;
        let height = skip_height(index, base, self.params.skip_max_height);
        let targets: Vec<u64> =
            (0..usize::from(height)).map(|l| back_link_target(index, l, base)).collect();
        let back_links = targets
            .iter()
            .map(|&t| get::block(state, t).expect("back link target exists").hash())
            .collect();
        let block = SkipBlock {
            index,
            height,
            back_links,
            ledger_height: ctx.height,
            time: ctx.time,
            payload,
        };
        let hash = block.hash();
        set::block(state, &block, &hash);
        set::skip_head(state, index);
        for (level, &t) in targets.iter().enumerate() {
            let mut links = get::forward(state, t);
            assert_eq!(links.len(), level, "forward links of block {t} fill level by level");
            links.push(hash);
            set::forward(state, t, &links);
        }
        index
    }
}

/// Fix the judged proof set: which expected proofs arrived and the Merkle root of their hashes.
fn judge(
    state: &impl KvRead,
    q: &QueryId,
    expected: &[ProofKey],
    verifiers: Vec<EntityId>,
) -> JudgedSet {
    let proofs = get::proofs(state, q);
    let received =
        expected.iter().map(|k| proofs.binary_search_by(|p| p.key.cmp(k)).is_ok()).collect();
    let hashes: Vec<[u8; 32]> = proofs.iter().map(ProofRecord::hash).collect();
    JudgedSet { received, proofs_root: proofs_root(&hashes), verifiers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::MemState;
    use lemal_contracts::elgamal::SecretKey;
    use lemal_contracts::sig::SigningKey;
    use lemal_contracts::state::{cn_pop_context, CnEntry, DpEntry, VnEntry};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn genesis_json(params: &Params) -> Vec<u8> {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let share = SecretKey::random(&mut rng);
        let roster = Roster {
            vns: vec![VnEntry {
                validator_address: [1; 20],
                key: SigningKey::random(&mut rng).verifying_key(),
            }],
            cns: vec![CnEntry {
                key: SigningKey::random(&mut rng).verifying_key(),
                share: share.public(),
                share_pop: share.prove_possession(&cn_pop_context(EntityId::cn(0)), &mut rng),
            }],
            dps: vec![DpEntry { key: SigningKey::random(&mut rng).verifying_key() }],
        };
        serde_json::to_vec(&GenesisState::from_typed(params, &roster)).expect("json")
    }

    fn query_payload(i: u64) -> BlockPayload {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        BlockPayload::Query(QueryPayload {
            query_id: QueryId(id),
            bitmap: Bitmap::default(),
            threshold_ppm: 1,
            reported: Vec::new(),
            absent: Vec::new(),
            proofs_root: [0; 32],
            result: Vec::new(),
            covered: Vec::new(),
            uncovered: Vec::new(),
        })
    }

    /// The skipchain built block by block in state agrees with a plain model that finds every
    /// link by scanning all blocks.
    #[test]
    fn skipchain_matches_a_reference_model_over_2000_blocks() {
        for (base, hmax) in [(2u32, 5u8), (3, 4), (4, 16)] {
            let params = Params { skip_base: base, skip_max_height: hmax, ..Params::default() };
            let mut state = MemState::default();
            let ctx = BlockCtx { height: 1, time: Timestamp::default() };
            let machine = Machine::genesis(&mut state, "chain", &genesis_json(&params), &[], &ctx)
                .expect("genesis");
            let n = 2000u64;
            for i in 1..=n {
                assert_eq!(machine.append(&mut state, &ctx, query_payload(i)), i);
            }
            // The model: heights by the rule, links by scanning.
            let heights: Vec<u8> = (0..=n)
                .map(|i| {
                    if i == 0 {
                        hmax
                    } else {
                        1 + (i.trailing_zeros_in_base(base)).min(u32::from(hmax) - 1) as u8
                    }
                })
                .collect();
            let blocks: Vec<SkipBlock> =
                (0..=n).map(|i| get::block(&state, i).expect("block stored")).collect();
            let hashes: Vec<[u8; 32]> = blocks.iter().map(SkipBlock::hash).collect();
            assert_eq!(get::skip_head(&state), Some(n));
            for i in 0..=n as usize {
                let b = &blocks[i];
                assert_eq!(b.index, i as u64);
                assert_eq!(b.height, heights[i], "height of block {i} (base {base})");
                let want_back: Vec<[u8; 32]> = if i == 0 {
                    Vec::new()
                } else {
                    (0..usize::from(heights[i]))
                        .map(|l| {
                            hashes[(0..i)
                                .rev()
                                .find(|&j| usize::from(heights[j]) > l)
                                .expect("block 0 is tallest")]
                        })
                        .collect()
                };
                assert_eq!(b.back_links, want_back, "back links of block {i}");
                let want_forward: Vec<[u8; 32]> = (0..usize::from(heights[i]))
                    .map_while(|l| {
                        (i + 1..=n as usize)
                            .find(|&j| usize::from(heights[j]) > l)
                            .map(|j| hashes[j])
                    })
                    .collect();
                assert_eq!(
                    get::forward(&state, i as u64),
                    want_forward,
                    "forward links of block {i}"
                );
                assert_eq!(get::block_by_hash(&state, &hashes[i]), Some(i as u64));
                if let Some(q) = b.query_id() {
                    assert_eq!(get::block_by_query(&state, &q), Some(i as u64));
                }
            }
        }
    }

    /// A state that counts the values read and the prefixes scanned.
    #[derive(Default)]
    struct Counting {
        inner: MemState,
        gets: std::cell::Cell<usize>,
        scans: std::cell::Cell<usize>,
    }

    impl KvRead for Counting {
        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.gets.set(self.gets.get() + 1);
            self.inner.get(key)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.scans.set(self.scans.get() + 1);
            self.inner.scan_prefix(prefix)
        }
    }

    impl KvWrite for Counting {
        fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: Vec<u8>) {
            self.inner.delete(key)
        }
    }

    fn registration(i: u8, rng: &mut ChaCha20Rng) -> RegisterQuery {
        let querier = SecretKey::random(rng);
        let query_id = QueryId([i; 16]);
        RegisterQuery {
            query_id,
            querier_key: querier.public(),
            querier_sig: lemal_contracts::elgamal::PossessionProof::default(),
            spec: lemal_contracts::tx::QuerySpec {
                sql: "SELECT sum(x) FROM y".into(),
                operation: lemal_contracts::tx::Operation::Sum,
                range_bits: 8,
                bounds: vec![lemal_contracts::proofs::range::Bounds { lo: 0, hi: 10 }],
                dps: vec![0],
                cns: vec![0],
                noise: lemal_contracts::tx::NoiseParams::NONE,
            },
            threshold_ppm: 400_000,
            dp_deadline: 50,
            proof_deadline: 100,
            commit_window: 10,
        }
        .sign_as_querier("chain", &querier, rng)
    }

    /// End of block looks at the queries whose phase may end in that block, not at every open
    /// query: a hundred open queries far from their deadlines cost it one agenda scan.
    #[test]
    fn end_block_reads_only_the_queries_on_its_agenda() {
        let mut state = Counting::default();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let ctx = |height| BlockCtx { height, time: Timestamp::default() };
        let params = Params { max_open_queries_per_cn: 100, ..Params::default() };
        let machine = Machine::genesis(&mut state, "chain", &genesis_json(&params), &[], &ctx(1))
            .expect("genesis");
        for i in 0..100 {
            let tx = Tx {
                chain_id: "chain".into(),
                signer: EntityId::cn(0),
                body: TxBody::RegisterQuery(Box::new(registration(i, &mut rng))),
                signature: lemal_contracts::sig::Signature([0; 64]),
            };
            machine.execute(&mut state, &ctx(2), tx).expect("registers");
        }
        assert_eq!(get::open_queries(&state).len(), 100);
        state.gets.set(0);
        state.scans.set(0);
        assert!(machine.end_block(&mut state, &ctx(3)).events.is_empty());
        assert_eq!(
            (state.gets.get(), state.scans.get()),
            (1, 1),
            "one scan of the agenda, one read of the block's validator updates"
        );

        // At the deadline, every one of them is looked at and closes its proof phase.
        let events = machine.end_block(&mut state, &ctx(102)).events;
        assert_eq!(events.len(), 100);
        assert!(get::due(&state, 102).is_empty(), "the agenda of a past height is emptied");
        assert_eq!(get::due(&state, 112).len(), 100, "each is due again at its window's end");
    }

    /// A chain started by an earlier layout is refused with the reason; a fresh store and a chain
    /// of this layout are accepted.
    #[test]
    fn a_store_of_another_layout_is_refused() {
        let mut state = MemState::default();
        assert_eq!(Machine::check_layout(&state), Ok(()), "before genesis");
        let ctx = BlockCtx { height: 1, time: Timestamp::default() };
        Machine::genesis(&mut state, "chain", &genesis_json(&Params::default()), &[], &ctx)
            .expect("genesis");
        assert_eq!(Machine::check_layout(&state), Ok(()));
        let mut old = state.clone();
        old.delete(lemal_contracts::keys::LAYOUT_VERSION.to_vec());
        let why = Machine::check_layout(&old).expect_err("unversioned");
        assert!(why.contains("an earlier version (state layout 1, unversioned)"), "{why}");
        let mut other = state;
        set::layout_version(&mut other, 99);
        let why = Machine::check_layout(&other).expect_err("another layout");
        assert!(why.contains("state layout 99"), "{why}");
    }

    /// Every event type this module emits has a row in the README's events table.
    #[test]
    fn the_readme_documents_every_event() {
        let source = include_str!("machine.rs");
        let readme = include_str!("../../README.md");
        let mut names: Vec<&str> = source
            .split('"')
            .filter(|s| {
                s.strip_prefix("lemal.").is_some_and(|n| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 13, "{names:?}");
        for name in names {
            assert!(readme.contains(&format!("`{name}`")), "README.md does not document {name}");
        }
    }

    trait BaseZeros {
        fn trailing_zeros_in_base(self, base: u32) -> u32;
    }

    impl BaseZeros for u64 {
        fn trailing_zeros_in_base(mut self, base: u32) -> u32 {
            let mut k = 0;
            while self.is_multiple_of(u64::from(base)) {
                self /= u64::from(base);
                k += 1;
            }
            k
        }
    }
}
