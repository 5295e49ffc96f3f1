//! `comms-sequences`'s command line, run as a person runs it, with the checks every binary shares.

#[path = "../../../tests/src/binary.rs"]
#[macro_use]
mod binary;

worker_cli_tests!("comms-sequences");
