//! A message's life: the states it can be in, the moves between them, the one module that writes
//! them (with their timeline), and the metrics observed as it moves.

pub mod ledger;
pub mod metrics;
pub mod state;
pub mod transitions;

pub use state::{DeliveryState, OptOutState, ReplyState};
