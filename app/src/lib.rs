//! The Lemal verifying-node application. The state machine lands with its own issue.
//!
//! [`store`] is the authenticated, durable state: a Jellyfish Merkle tree persisted in redb.

pub mod store;
