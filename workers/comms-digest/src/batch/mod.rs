//! Notification batching (`digest.batch`): events for one key (contact, channel, topic) within a
//! window become one message, flushed when the window ends or the maximum count is reached,
//! whichever comes first. All state lives in PostgreSQL ([`collect`], [`flush`]); the window's
//! end is fixed when a bucket opens ([`window`]).

pub mod collect;
pub mod flush;
pub mod window;
