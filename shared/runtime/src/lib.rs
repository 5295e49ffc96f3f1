//! The generic runtime every comms-fleet process runs on, and nothing about messages.
//!
//! Settings, the database pool, the broker connection and topology, the consumer runtime (ack
//! after commit, retry tiers, dead-lettering, reconnect, drain on shutdown), health and metrics
//! endpoints, telemetry and trace propagation, shutdown and the clock live here once, so a fix
//! lands in every worker at the same time. What a message is, and the rules for it, live in the
//! domain crate (`comms-domain`) built on this one; workers build on both.

pub mod amqp;
pub mod cli;
pub mod clock;
pub mod db;
pub mod db_error;
pub mod health;
pub mod metrics;
pub mod queues;
pub mod runtime;
pub mod schema_shape;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod topology;
pub mod trace_context;
