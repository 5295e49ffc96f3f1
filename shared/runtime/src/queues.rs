//! How much work waits in each queue, and who consumes it, read with a passive `queue.declare`
//! (which changes nothing and needs no management plugin). `commsctl status` and the gateway's
//! console both report depths this way.

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Serialize;

/// One queue's depth; `None` where the broker could not say.
#[derive(Debug, Clone, Serialize)]
pub struct QueueDepth {
    pub queue: String,
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
}

impl QueueDepth {
    /// A queue whose depth is unknown (broker unreachable, queue missing).
    pub fn unknown(queue: &str) -> Self {
        Self {
            queue: queue.to_string(),
            messages: None,
            consumers: None,
        }
    }
}

/// Declares `queue` passively on `channel`. A missing queue makes the broker close the channel,
/// so callers that ask about a queue that may not exist use a channel of its own.
pub async fn depth(channel: &Channel, queue: &str) -> QueueDepth {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(declared) => QueueDepth {
            queue: queue.to_string(),
            messages: Some(declared.message_count()),
            consumers: Some(declared.consumer_count()),
        },
        Err(_) => QueueDepth::unknown(queue),
    }
}
