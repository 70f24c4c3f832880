//! The Lemal client. The RPC client and CLI land with their own issue.
