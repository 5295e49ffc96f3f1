//! The incident fan-out worker against the real broker, database, sender and sandbox: the pause
//! while facts are unverified, the owner's decisions, fan-out exactly once, and the portal view.

#[path = "incidents/setup.rs"]
mod setup;

#[path = "incidents/flow.rs"]
mod flow;

#[path = "incidents/fanout.rs"]
mod fanout;

#[path = "incidents/operator.rs"]
mod operator;

#[path = "incidents/api.rs"]
mod api;

#[path = "incidents/portal.rs"]
mod portal;

#[path = "incidents/clients.rs"]
mod clients;
