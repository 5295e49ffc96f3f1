//! One module per `commsctl` command.

pub mod clients;
pub mod message;
pub mod migrate;
pub mod pause;
pub mod send;
pub mod status;
pub mod templates;
