//! The aggregation proof contract.
