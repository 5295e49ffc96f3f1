//! Webhook signature verification for every provider the gateway accepts callbacks from.
//!
//! The gateway verifies before it publishes anything: a payload that is not provably from the
//! provider never reaches a queue. Each verifier is a pure function, tested against the
//! providers' published vectors in `tests.rs`.

pub mod sendgrid;
pub mod twilio;

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod tests;
