//! The library every comms-fleet worker is built on.
//!
//! Workers only say what one message means; everything every worker needs — settings, the database
//! pool and migrations, the broker topology, the consumer runtime (ack after commit, retry tiers,
//! dead-lettering, reconnect, drain on shutdown), health and metrics endpoints, trace propagation —
//! lives here once, so a fix lands in every worker at the same time.

pub mod amqp;
pub mod approvals;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod db;
pub mod db_error;
pub mod dead;
pub mod digests;
pub mod events;
pub mod health;
pub mod incidents;
pub mod metrics;
pub mod outcomes;
pub mod pause;
pub mod privacy;
pub mod queues;
pub mod runtime;
pub mod schema_shape;
pub mod sequences;
pub mod settings;
pub mod shutdown;
pub mod signed_link;
pub mod sms;
pub mod tasks;
pub mod telemetry;
pub mod timeline;
pub mod topology;
pub mod trace_context;
pub mod unsubscribe;
pub mod webhook_body;
pub mod webhooks;
