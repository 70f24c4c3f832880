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

use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Verdict};
use lemal_contracts::sampling;
use lemal_contracts::sig::VerifyingKey;
use lemal_contracts::state::{
    back_link_target, proofs_root, skip_height, Bitmap, BitmapCommitRecord, BlockPayload,
    GenesisRecord, GenesisState, JudgedSet, Params, ProofRecord, QueryPayload, QueryProgress,
    QueryRecord, QueryStatus, Roster, SkipBlock, Timestamp,
};
use lemal_contracts::tx::{CommitBitmap, Envelope, RegisterQuery, SubmitProof, Tx, TxBody};

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
    /// `validators` are the addresses of CometBFT's genesis validators; when non-empty they must
    /// be exactly the roster's verifying nodes.
    pub fn genesis(
        state: &mut impl KvWrite,
        chain_id: &str,
        app_state: &[u8],
        validators: &[[u8; 20]],
        ctx: &BlockCtx,
    ) -> Result<Machine, GenesisError> {
        let genesis: GenesisState = serde_json::from_slice(app_state)?;
        let (params, roster) = genesis.into_typed()?;
        if chain_id.is_empty() || chain_id.len() > lemal_contracts::tx::limits::MAX_CHAIN_ID {
            return Err(GenesisError::Invalid(lemal_contracts::DecodeError::Invalid {
                what: "chain id",
                why: "must be 1 to 50 bytes",
            }));
        }
        if !validators.is_empty() {
            let mut want: Vec<[u8; 20]> = roster.vns.iter().map(|v| v.validator_address).collect();
            let mut got = validators.to_vec();
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
        set::chain_id(state, chain_id);
        set::params(state, &params);
        set::roster(state, &roster);
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
                Ok(vec![Event::new("lemal.proof", vec![("key", key.to_string())])])
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
                if progress.commits as usize == self.roster.vns.len() {
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
        }
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
            let ok = match (received, sampling::is_selected(&output, k, threshold)) {
                (false, _) => v == Verdict::NotReceived,
                (true, false) => v == Verdict::NotSelected,
                (true, true) => matches!(v, Verdict::Wrong | Verdict::Correct),
            };
            if !ok {
                return Err(TxError::BadVerdicts(format!(
                    "verdict {} on {k} contradicts {} (received: {received})",
                    v.value(),
                    if sampling::is_selected(&output, k, threshold) {
                        "its selection"
                    } else {
                        "its non-selection"
                    }
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
    pub fn end_block(&self, state: &mut impl KvWrite, ctx: &BlockCtx) -> Vec<Event> {
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
                        progress.judged = Some(judge(state, &q, &expected));
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
                    let all = progress.commits as usize == self.roster.vns.len();
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
        let verifiers = self.roster.vn_ids();
        let commits = get::commits(state, &q);
        let mut verdicts = Vec::with_capacity(expected.len() * verifiers.len());
        for row in 0..expected.len() {
            for vn in &verifiers {
                let v = commits
                    .iter()
                    .find(|c| c.vn == *vn)
                    .map_or(Verdict::NotReceived, |c| c.verdicts[row]);
                verdicts.push(v);
            }
        }
        let reported: Vec<EntityId> = commits.iter().map(|c| c.vn).collect();
        let absent = verifiers.iter().filter(|v| !reported.contains(v)).copied().collect();
        let judged = progress.judged.as_ref().expect("a committing query has a judged set");
        let ledger = |k: &ProofKey| get::proof(state, k);
        let covered = lemal_contracts::proofs::covered_dps(reg, &ledger);
        let payload = QueryPayload {
            query_id: q,
            bitmap: Bitmap { proofs: expected, verifiers, verdicts },
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
fn judge(state: &impl KvRead, q: &QueryId, expected: &[ProofKey]) -> JudgedSet {
    let proofs = get::proofs(state, q);
    let received =
        expected.iter().map(|k| proofs.binary_search_by(|p| p.key.cmp(k)).is_ok()).collect();
    let hashes: Vec<[u8; 32]> = proofs.iter().map(ProofRecord::hash).collect();
    JudgedSet { received, proofs_root: proofs_root(&hashes) }
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
        assert!(machine.end_block(&mut state, &ctx(3)).is_empty());
        assert_eq!((state.gets.get(), state.scans.get()), (0, 1), "one scan of the agenda");

        // At the deadline, every one of them is looked at and closes its proof phase.
        let events = machine.end_block(&mut state, &ctx(102));
        assert_eq!(events.len(), 100);
        assert!(get::due(&state, 102).is_empty(), "the agenda of a past height is emptied");
        assert_eq!(get::due(&state, 112).len(), 100, "each is due again at its window's end");
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
