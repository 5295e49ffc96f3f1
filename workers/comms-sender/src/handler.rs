//! How the consumer runtime hands deliveries to the sender: one at a time to the one-message
//! path ([`crate::one`]), or several at once to the group path ([`crate::group`]), which decides
//! what it can together and hands the rest to the one-message path.

use comms_runtime::runtime::{Handler, Incoming, Outcome};

use crate::sender::SendHandler;

impl Handler for SendHandler {
    async fn handle(&self, incoming: &Incoming) -> Outcome {
        crate::one::handle(self, incoming).await
    }

    fn handles_groups(&self) -> bool {
        true
    }

    async fn handle_group(&self, deliveries: &[Incoming]) -> Vec<Outcome> {
        crate::group::handle(self, deliveries).await
    }
}
