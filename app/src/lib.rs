//! The Lemal verifying-node application. The state machine lands with its own issue.
