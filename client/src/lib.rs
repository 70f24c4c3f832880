//! The Lemal client: the pipeline roles (data providers, computing nodes, querier) that produce
//! real encrypted data and proofs, the keys of a network, the RPC client, light-client
//! verification of the skipchain ([`light`]), Prometheus metrics ([`metrics`]) and the `lemal`
//! CLI.

// The client is not consensus code: it waits, times and retries with the wall clock.
#![allow(clippy::disallowed_methods)]

pub mod cli;
pub mod data;
pub mod keyring;
pub mod light;
pub mod localnet;
pub mod metrics;
pub mod network;
pub mod parallel;
pub mod party;
pub mod pipeline;
pub mod rpc;
pub mod sql;
