//! One module per `commsctl` command.

pub mod migrate;
pub mod status;
