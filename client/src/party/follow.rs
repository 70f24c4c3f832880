//! Following the chain block by block: a websocket subscription to CometBFT's `NewBlock` events
//! says when a block is committed; each block's events come from `block_results`, which also
//! catches up whatever was committed while the subscription was down (or before the process
//! started).
//!
//! The subscription runs on a thread of its own with its own runtime and reconnects by itself
//! (1 s, then up to 10 s apart). The consumer never polls fast: it waits on the subscription and,
//! after a reconnect or [`HEARTBEAT`] without news, asks the node's status once.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use futures::StreamExt;
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::event::EventData;
use tendermint_rpc::query::EventType;
use tendermint_rpc::{SubscriptionClient, WebSocketClient};

use crate::rpc::{BlockEvents, Node, RpcError};

/// How long the follower waits for the subscription before asking the node's status itself.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// What the subscription thread reports.
#[derive(Debug)]
enum News {
    /// A block at this height is committed.
    Block(u64),
    /// The subscription is (re)established: blocks may have been missed.
    Connected,
    /// The subscription failed; it will be retried.
    Lost(String),
}

/// The websocket address of the node whose RPC is at `rpc` (`http://H:P` → `ws://H:P/websocket`).
pub fn websocket_url(rpc: &str) -> String {
    let base = rpc.trim_end_matches('/');
    let base = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{base}/websocket")
}

/// Subscribe to `NewBlock` at `url` and report heights on `news` until the receiver is gone.
fn subscribe(url: String, news: Sender<News>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = news.send(News::Lost(format!("no runtime for the subscription: {e}")));
            return;
        }
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let outcome: Result<(), String> = runtime.block_on(async {
            let parsed: tendermint_rpc::WebSocketClientUrl =
                url.as_str().try_into().map_err(|e| format!("bad url {url}: {e}"))?;
            let (client, driver) = WebSocketClient::builder(parsed)
                .compat_mode(CompatMode::V0_38)
                .build()
                .await
                .map_err(|e| first_line(&e))?;
            let driving = tokio::spawn(driver.run());
            let mut blocks =
                client.subscribe(EventType::NewBlock.into()).await.map_err(|e| first_line(&e))?;
            if news.send(News::Connected).is_err() {
                return Ok(());
            }
            while let Some(event) = blocks.next().await {
                let event = event.map_err(|e| first_line(&e))?;
                let height = match &event.data {
                    EventData::NewBlock { block: Some(b), .. }
                    | EventData::LegacyNewBlock { block: Some(b), .. } => {
                        Some(b.header.height.value())
                    }
                    _ => None,
                };
                let sent = match height {
                    Some(h) => news.send(News::Block(h)),
                    // An event without its block: let the consumer ask the node.
                    None => news.send(News::Connected),
                };
                if sent.is_err() {
                    break;
                }
            }
            client.close().map_err(|e| first_line(&e))?;
            let _ = driving.await;
            Err("the subscription ended".into())
        });
        match outcome {
            Ok(()) => return,
            Err(why) => {
                if news.send(News::Lost(why)).is_err() {
                    return;
                }
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Hands out committed blocks in height order, each once.
pub struct Follower {
    node: Node,
    /// The next height to hand out.
    next: u64,
    /// The highest height known to be committed.
    committed: u64,
    news: Receiver<News>,
    /// Whether the subscription is up.
    connected: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("node", &self.node).field("next", &self.next).finish()
    }
}

impl Follower {
    /// Follow the node at `rpc` from height `from` on (blocks already committed are handed out
    /// first, read with `block_results`).
    pub fn start(rpc: &str, from: u64) -> Result<Follower, RpcError> {
        let node = Node::connect(rpc)?;
        let (tx, news) = mpsc::channel();
        let url = websocket_url(rpc);
        std::thread::Builder::new()
            .name("subscription".into())
            .spawn(move || subscribe(url, tx))
            .map_err(|e| node.transport(format!("starting the subscription thread: {e}")))?;
        Ok(Follower { node, next: from.max(1), committed: 0, news, connected: false })
    }

    /// The node followed.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The next height [`Follower::next_block`] hands out.
    pub fn next_height(&self) -> u64 {
        self.next
    }

    /// Whether the websocket subscription is up.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The highest height known to be committed.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The next committed block's events, waiting at most `wait` for it (`None` then). Errors
    /// are the node's: the caller may retry, nothing is skipped.
    pub fn next_block(&mut self, wait: Duration) -> Result<Option<BlockEvents>, RpcError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            // Drain what the subscription said so far.
            let mut ask = self.committed == 0;
            loop {
                match self.news.try_recv() {
                    Ok(News::Block(h)) => {
                        self.connected = true;
                        self.committed = self.committed.max(h);
                    }
                    Ok(News::Connected) => {
                        self.connected = true;
                        ask = true;
                    }
                    Ok(News::Lost(why)) => {
                        if self.connected {
                            tracing::warn!(node = self.node.url(), %why, "subscription lost; reconnecting");
                        }
                        self.connected = false;
                    }
                    Err(_) => break,
                }
            }
            if ask {
                self.committed = self.committed.max(self.node.status()?.height);
            }
            if self.next <= self.committed {
                let block = self.node.block_events(self.next)?;
                self.next += 1;
                return Ok(Some(block));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            match self.news.recv_timeout((deadline - now).min(HEARTBEAT)) {
                Ok(News::Block(h)) => {
                    self.connected = true;
                    self.committed = self.committed.max(h);
                }
                Ok(News::Connected) | Err(RecvTimeoutError::Timeout) => {
                    self.committed = self.committed.max(self.node.status()?.height);
                }
                Ok(News::Lost(why)) => {
                    if self.connected {
                        tracing::warn!(node = self.node.url(), %why, "subscription lost; reconnecting");
                    }
                    self.connected = false;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.node.transport("the subscription thread stopped"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_follow_the_rpc_address() {
        assert_eq!(websocket_url("http://127.0.0.1:26657"), "ws://127.0.0.1:26657/websocket");
        assert_eq!(websocket_url("http://127.0.0.1:26657/"), "ws://127.0.0.1:26657/websocket");
        assert_eq!(websocket_url("https://node.example:443"), "wss://node.example:443/websocket");
    }
}
