//! What the comms-fleet workers agree a message is, and the rules every worker applies to it.
//!
//! The send contract, a message's life (its states, and the metrics of its life), the schema
//! (migrations), the pause switch, approvals, incidents, digests, sequences, outcomes, privacy,
//! owner tasks, the timeline, unsubscribe tokens, provider webhooks and SMS encoding. It is built
//! on the generic runtime (`comms-runtime`), which knows nothing of any of this; the workers build
//! on both and say only what their queue's deliveries mean.

pub mod api_keys;
pub mod approvals;
pub mod contract;
pub mod dead;
pub mod digests;
pub mod events;
pub mod incidents;
pub mod messages;
pub mod outcomes;
pub mod pause;
pub mod privacy;
pub mod schema;
pub mod sequences;
pub mod signed_link;
pub mod sms;
pub mod tasks;
pub mod timeline;
pub mod unsubscribe;
pub mod webhook_body;
pub mod webhooks;
