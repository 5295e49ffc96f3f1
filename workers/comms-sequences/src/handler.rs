//! One handler for `comms.sequence.jobs`, by routing key: `sequence.enrol` enrols a contact,
//! `outcome.<type>` records an outcome of that type. The rules are comms-shared's, the same the
//! gateway and `commsctl` apply. A refused message is rejected with its reason (kept in
//! `internal.rejected_input` and `comms.dead`); database trouble is retried.

use std::sync::Arc;

use comms_domain::outcomes::{self, OutcomeError};
use comms_domain::sequences::{SequenceError, enrol};
use comms_runtime::clock::Clock;
use comms_runtime::runtime::{Handler, Incoming, Outcome};
use sqlx::PgPool;

pub struct SequenceHandler {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

impl SequenceHandler {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Self { pool, clock }
    }

    async fn enrol(&self, message: &Incoming) -> Outcome {
        let request = match enrol::parse(&message.body) {
            Ok(request) => request,
            Err(reason) => return Outcome::reject(reason),
        };
        match enrol::enrol(&self.pool, &request, self.clock.now()).await {
            Ok(enrolled) => {
                tracing::info!(enrolment.id = %enrolled.enrolment_id, sequence = %enrolled.sequence, created = enrolled.created, "enrolment");
                Outcome::Ack
            }
            Err(SequenceError::Db(error)) => Outcome::retry(format!("database: {error}")),
            Err(refused) => Outcome::reject(refused.to_string()),
        }
    }

    async fn outcome(&self, message: &Incoming, outcome_type: &str) -> Outcome {
        let request = match outcomes::parse(&message.body) {
            Ok(request) => request,
            Err(refused) => return Outcome::reject(refused.to_string()),
        };
        if request.outcome_type != outcome_type {
            return Outcome::reject(format!(
                "routing_key_mismatch: published with routing key `{}` but type is `{}`; publish it with routing key `{}`",
                message.routing_key,
                request.outcome_type,
                outcomes::routing_key(&request.outcome_type)
            ));
        }
        match outcomes::record(&self.pool, &request, self.clock.now()).await {
            Ok(recorded) => {
                tracing::info!(
                    outcome.created = recorded.created,
                    exited = recorded.exited.len(),
                    "outcome"
                );
                Outcome::Ack
            }
            Err(OutcomeError::Db(error)) => Outcome::retry(format!("database: {error}")),
            Err(refused) => Outcome::reject(refused.to_string()),
        }
    }
}

impl Handler for SequenceHandler {
    async fn handle(&self, message: &Incoming) -> Outcome {
        if message.routing_key == enrol::ROUTING_KEY {
            return self.enrol(message).await;
        }
        match message.routing_key.strip_prefix("outcome.") {
            Some(outcome_type) => self.outcome(message, outcome_type).await,
            None => Outcome::reject(format!(
                "unknown_routing_key: comms.sequence takes sequence.enrol and outcome.<type>, not `{}`",
                message.routing_key
            )),
        }
    }
}
