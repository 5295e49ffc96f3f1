//! One module per `commsctl` command.

pub mod message;
pub mod migrate;
pub mod pause;
pub mod send;
pub mod status;
pub mod templates;
