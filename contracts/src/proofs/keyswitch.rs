//! The keyswitch proof contract.
