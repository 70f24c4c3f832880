//! The Lemal verifying-node application.
//!
//! - [`machine`]: the deterministic state machine (genesis, transaction checks and execution,
//!   end of block, skipchain) — pure, no I/O;
//! - [`keys`] and [`ledger`]: the state layout and typed access to it;
//! - [`codes`]: the stable rejection codes;
//! - [`store`]: the authenticated, durable state — a Jellyfish Merkle tree persisted in redb;
//! - [`abci`], [`server`] and [`query`]: the thin ABCI adapter, the socket server CometBFT
//!   connects to, and the query paths;
//! - [`worker`]: the off-chain verifier that commits this node's bitmaps;
//! - [`recheck`]: what CheckTx remembers of mempool transactions between blocks;
//! - [`metrics`]: the Prometheus metrics the adapter and the worker record (never read by the
//!   machine);
//! - [`http`]: the bounded HTTP server of the metrics page, also serving the client daemons'
//!   metrics and a computing node's registration endpoint.

pub mod abci;
/// The state layout, shared with clients.
pub use lemal_contracts::keys;
pub mod codes;
pub mod http;
pub mod ledger;
pub mod machine;
pub mod metrics;
pub mod query;
pub mod recheck;
pub mod server;
pub mod store;
pub mod worker;
