//! The fleet's integration tests: one binary, one module per area, each test isolated by
//! [`comms_tests::TestEnv`].

mod foundation;
mod pause;
mod preflight;
mod runtime;
mod sender;
