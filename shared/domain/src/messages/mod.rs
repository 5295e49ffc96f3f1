//! A message's life: the states it can be in and the metrics observed as it moves.

pub mod metrics;
pub mod state;

pub use state::{DeliveryState, OptOutState, ReplyState};
