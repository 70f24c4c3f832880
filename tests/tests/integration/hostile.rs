//! Hostile transactions through a real node's RPC (`broadcast_tx_sync`, part of the end-to-end
//! scenario): every class is refused by CheckTx with its documented code, no node goes down, and
//! nothing of it reaches a block — the app hashes of all nodes still agree afterwards.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use lemal_client::localnet::{self, Layout};
use lemal_client::rpc::Node;
use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
use lemal_contracts::tx::{Tx, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::end_to_end::{rpc, Localnet};

/// What stands for "CometBFT refused it before the app saw it" (its mempool cache of seen
/// transactions, its size limit) in the tables below.
const BY_COMETBFT: u32 = u32::MAX;

/// Broadcast raw bytes; the CheckTx code and log, or [`BY_COMETBFT`] and the RPC's error.
fn broadcast(node: &Node, bytes: Vec<u8>) -> (u32, String) {
    match node.check_tx(bytes) {
        Ok(answer) => answer,
        Err(e) => (BY_COMETBFT, format!("refused by CometBFT: {e}")),
    }
}

/// The committed transactions of blocks `from..=to`, decoded.
fn committed(node: &Node, from: u64, to: u64) -> Result<Vec<(Vec<u8>, Tx)>> {
    let mut out = Vec::new();
    for h in from..=to {
        for bytes in node.block(h)?.data {
            let tx = Tx::decode(&bytes).context("a committed transaction decodes")?;
            out.push((bytes, tx));
        }
    }
    Ok(out)
}

fn find(txs: &[(Vec<u8>, Tx)], what: impl Fn(&Tx) -> bool) -> Result<&(Vec<u8>, Tx)> {
    txs.iter().find(|(_, tx)| what(tx)).context("no such committed transaction")
}

/// Every hostile class against node 2 after the honest query `id` (finalized, its skipblock at
/// ledger height `until`): returns one table row per class.
// Not consensus code: the size-limit case is timed with the wall clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn hostile_transactions_are_refused(
    net: &Localnet,
    id: &QueryId,
    until: u64,
) -> Result<Vec<String>> {
    let node = Node::connect(&rpc(2))?;
    let layout = Layout::new(net.home.path())?;
    let keys = localnet::keyring(&layout)?;
    let chain = node.status()?.chain_id;
    let txs = committed(&node, 1, until)?;
    let ours = |tx: &Tx| tx.body.query_id() == Some(*id);
    let (register, _) = find(&txs, |t| ours(t) && matches!(t.body, TxBody::RegisterQuery(_)))?;
    let (range, range_tx) = find(&txs, |t| {
        ours(t) && matches!(&t.body, TxBody::SubmitProof(p) if p.kind == ProofKind::Range)
    })?;
    let (bitmap, bitmap_tx) = find(&txs, |t| ours(t) && matches!(t.body, TxBody::CommitBitmap(_)))?;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let sign = |signer: EntityId, chain: &str, body: TxBody, rng: &mut ChaCha20Rng| {
        let key = keys.signing_key(signer).context("a localnet key")?;
        anyhow::Ok(Tx::sign(chain, signer, body, key, rng).encode())
    };
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = range.clone();
        f(&mut b);
        b
    };
    let n = range.len();

    let mut classes: Vec<(&str, Vec<u8>, &[u32])> = vec![
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef, 7, 7, 7], &[1]),
        ("a lone byte", vec![0], &[1]),
        ("truncated to its envelope", range[..20].to_vec(), &[1]),
        ("truncated by half", range[..n / 2].to_vec(), &[5]),
        ("one trailing byte", with(&|b| b.push(0)), &[5]),
        ("signature R flipped", with(&|b| b[n - 60] ^= 1), &[5]),
        ("signature s flipped", with(&|b| b[n - 10] ^= 1), &[5]),
        ("signature without its schnorrkel marker", with(&|b| b[n - 1] &= 0x7f), &[5]),
        ("body byte flipped", with(&|b| b[n / 2] ^= 1), &[5]),
        ("chain id length 2^32-1", with(&|b| b[..4].copy_from_slice(&[0xff; 4])), &[1]),
        // CometBFT's cache of seen transactions refuses exact replays first; where it has
        // forgotten them, the app does.
        ("replayed registration", register.clone(), &[10, BY_COMETBFT]),
        ("replayed range proof of a finalized query", range.clone(), &[20, BY_COMETBFT]),
        ("replayed bitmap of a finalized query", bitmap.clone(), &[30, BY_COMETBFT]),
    ];
    let foreign = sign(range_tx.signer, "another-chain", range_tx.body.clone(), &mut rng)?;
    classes.push(("signed for another chain", foreign, &[3]));
    let stranger_key = lemal_contracts::sig::SigningKey::random(&mut rng);
    let stranger =
        Tx::sign(&chain, EntityId::dp(999), range_tx.body.clone(), &stranger_key, &mut rng);
    classes.push(("signer not in the roster", stranger.encode(), &[4]));
    let impostor = sign(EntityId::dp(0), &chain, bitmap_tx.body.clone(), &mut rng)?;
    classes.push(("bitmap signed by a data provider", impostor, &[1, 12]));
    let other_vn = EntityId::vn(if bitmap_tx.signer == EntityId::vn(0) { 1 } else { 0 });
    let borrowed = sign(other_vn, &chain, bitmap_tx.body.clone(), &mut rng)?;
    classes.push(("bitmap with another verifier's VRF", borrowed, &[30, 32]));
    let TxBody::SubmitProof(mut unknown) = range_tx.body.clone() else { unreachable!() };
    unknown.query_id = QueryId([0x5a; 16]);
    let unknown = sign(range_tx.signer, &chain, TxBody::SubmitProof(unknown), &mut rng)?;
    classes.push(("proof for an unknown query", unknown, &[11]));
    // The first output point's bytes replaced by 2^255 − 1, which encodes no field element,
    // and the transaction signed again by its data provider.
    let TxBody::SubmitProof(p) = &range_tx.body else { unreachable!() };
    let point = p.outputs.first().context("a range proof has outputs")?.c1.compress().to_bytes();
    let signed = lemal_contracts::tx::signed_part(range);
    let at = signed.windows(32).position(|w| w == point).context("the point's bytes")?;
    let mut forged = signed.to_vec();
    forged[at..at + 32].copy_from_slice(&[0xff; 32]);
    let key = keys.signing_key(range_tx.signer).context("the data provider's key")?;
    let signature = key.sign(range_tx.body.message_kind(), &forged);
    forged.extend_from_slice(&signature.0);
    classes.push(("non-canonical point in the outputs", forged, &[1]));

    let mut rows = Vec::new();
    let before: Vec<_> = (0..4).map(|i| Node::connect(&rpc(i))).collect::<Result<_, _>>()?;
    for (name, bytes, codes) in classes {
        let (code, log) = broadcast(&node, bytes);
        ensure!(codes.contains(&code), "{name}: code {code} ({log}), expected one of {codes:?}");
        ensure!(!log.is_empty(), "{name}: refused without a reason");
        rows.push(format!("| {name} | {code} | {} |", log.chars().take(90).collect::<String>()));
    }

    // A transaction near the chain's size limit full of valid point encodings (a range proof
    // with 130 000 output ciphertexts), signed for another chain: refused as quickly as garbage
    // of the same size, its body never decoded.
    let TxBody::SubmitProof(mut body) = range_tx.body.clone() else { unreachable!() };
    let ciphertext = body.outputs[0];
    body.outputs = vec![ciphertext; 130_000];
    let huge = sign(range_tx.signer, "another-chain", TxBody::SubmitProof(body), &mut rng)?;
    let garbage = vec![0x11u8; huge.len()];
    let timed = |bytes: Vec<u8>| -> Result<(u32, u128)> {
        let start = Instant::now();
        let (code, _) = broadcast(&node, bytes);
        Ok((code, start.elapsed().as_millis()))
    };
    let (huge_code, huge_ms) = timed(huge)?;
    let (garbage_code, garbage_ms) = timed(garbage)?;
    rows.push(format!("| 8 MiB of valid points, another chain | {huge_code} | {huge_ms} ms |"));
    rows.push(format!("| 8 MiB of garbage | {garbage_code} | {garbage_ms} ms |"));
    ensure!(huge_code == 3, "huge foreign tx: code {huge_code}");
    ensure!(garbage_code == 1, "huge garbage: code {garbage_code}");
    let oversize = vec![0u8; (8 << 20) + 1];
    let (code, log) = broadcast(&node, oversize);
    rows.push(format!(
        "| over the size limit | {code} | {} |",
        log.chars().take(90).collect::<String>()
    ));
    ensure!(code == 2 || code == BY_COMETBFT, "oversize: code {code} {log}");

    // Every node is up and none of it reached a block.
    for n in &before {
        n.status().context("a node went down")?;
    }
    eprintln!(
        "e2e: hostile transactions\n| class | code | log |\n|---|---|---|\n{}",
        rows.join("\n")
    );
    Ok(rows)
}
