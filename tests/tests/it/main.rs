//! The fleet's integration tests: one binary, one module per area, each test isolated by
//! [`comms_tests::TestEnv`].

mod approvals;
mod bad_input;
mod console;
mod dead;
mod digest;
mod failover;
mod first_run;
mod foundation;
mod gateway;
mod groups;
mod incidents;
mod pause;
mod portal;
mod preflight;
mod privacy;
mod provider_schemas;
mod readiness;
mod replies;
mod runtime;
mod sender;
mod sequences;
mod smtp;
mod status;
mod upstream;
