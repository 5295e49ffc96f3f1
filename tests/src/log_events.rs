//! What the workers log, as structured events, so a test can assert the level an event is logged at.
//!
//! The capture is the calling thread's default subscriber: run the test on a current-thread
//! runtime (`#[tokio::test]`'s default) so every task it spawns logs into it.

use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One logged event: its level, target and message.
#[derive(Debug, Clone)]
pub struct Logged {
    pub level: Level,
    pub target: String,
    pub message: String,
}

/// Every event logged on this thread while the guard lives.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<Logged>>>);

impl Captured {
    /// Starts capturing on this thread until the returned guard is dropped.
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let subscriber = tracing_subscriber::registry().with(captured.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (captured, guard)
    }

    /// The events captured so far whose message is `message`.
    pub fn with_message(&self, message: &str) -> Vec<Logged> {
        let events = self.0.lock().map(|e| e.clone()).unwrap_or_default();
        events
            .into_iter()
            .filter(|e| e.message == message)
            .collect()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let logged = Logged {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: message.0,
        };
        if let Ok(mut events) = self.0.lock() {
            events.push(logged);
        }
    }
}
