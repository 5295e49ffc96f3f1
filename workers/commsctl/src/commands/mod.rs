//! One module per `commsctl` command.

pub mod approvals;
pub mod audit;
pub mod clients;
pub mod contacts;
pub mod dead;
pub mod digest;
pub mod incident;
pub mod keys;
pub mod message;
pub mod migrate;
pub mod pause;
pub mod report;
pub mod retention;
pub mod sandbox;
pub mod send;
pub mod sequences;
pub mod status;
pub mod tasks;
pub mod templates;
pub mod webhooks;
