//! One module per `commsctl` command.

pub mod approvals;
pub mod clients;
pub mod dead;
pub mod digest;
pub mod incident;
pub mod keys;
pub mod message;
pub mod migrate;
pub mod pause;
pub mod sandbox;
pub mod send;
pub mod status;
pub mod tasks;
pub mod templates;
pub mod webhooks;
