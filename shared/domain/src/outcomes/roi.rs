//! A client's booked-result (ROI) summary for the portal, built only from sourced figures: the
//! `booked` outcomes recorded for the client in a period, each of which names the upstream app it
//! came from. Nothing is typed in by hand and nothing is estimated here.
//!
//! The summary is not published by this module: it becomes an ordinary send request — channel
//! `portal`, kind `portal_update`, `contains_roi: true` — so the sender's portal-safe check and the
//! owner's approval of the exact wording apply to it like to any portal update
//! (docs/approvals.md), and it reaches `portal.updates` only once approved. Its idempotency key
//! carries a hash of the figures: the same figures again are a no-op; changed figures are a new
//! message that needs its own approval.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::OutcomeError;
use super::report::{self, Filter};

/// The template a summary is rendered with unless another is named: an approved `portal`
/// template using the variables of [`Summary::vars`].
pub const DEFAULT_TEMPLATE: &str = "roi_summary.portal";

/// The trigger of a summary's send request.
pub const TRIGGER: &str = "roi.summary";

/// A client's booked results in a period, with where each figure came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub client_id: Uuid,
    pub owner: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub meetings: i64,
    pub sales: i64,
    /// Sum of sale values by currency.
    pub value: BTreeMap<String, f64>,
    /// How many booked outcomes each upstream app recorded.
    pub sources: BTreeMap<String, i64>,
}

impl Summary {
    /// The template variables: `period`, `meetings`, `sales`, `value` (e.g. `1200.50 USD`, or
    /// `no recorded value`) and `source` (the apps and counts the figures come from).
    pub fn vars(&self) -> Value {
        let value = if self.value.is_empty() {
            "no recorded value".to_string()
        } else {
            self.value
                .iter()
                .map(|(currency, v)| format!("{v:.2} {currency}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let source = self
            .sources
            .iter()
            .map(|(app, n)| format!("{app} ({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        json!({
            "period": format!("{} to {}", self.from.format("%Y-%m-%d"), self.to.format("%Y-%m-%d")),
            "meetings": self.meetings,
            "sales": self.sales,
            "value": value,
            "source": format!("booked results recorded by {source}"),
        })
    }

    /// The send request (v1) for the portal of `contact`, rendered with `template`.
    pub fn request(&self, contact: Uuid, template: &str) -> Value {
        let vars = self.vars();
        let digest = Sha256::digest(format!("{template}\n{vars}").as_bytes());
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        json!({
            "idempotency_key": format!(
                "roi:{}:{}:{}:{hash}",
                self.client_id,
                self.from.format("%Y%m%d"),
                self.to.format("%Y%m%d")
            ),
            "channel": "portal",
            "kind": "portal_update",
            "recipient": { "contact_id": contact },
            "template": { "name": template, "vars": vars },
            "record": { "type": "client", "id": self.client_id },
            "owner": self.owner,
            "source": "comms-outcomes",
            "trigger": TRIGGER,
            "contains_roi": true
        })
    }
}

/// The booked results of `client` that occurred in `[from, to)`. Refused when the client does not
/// exist, or when the period has no booked outcome (there is no sourced figure to show).
pub async fn summary(
    pool: &PgPool,
    client: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Summary, OutcomeError> {
    if from >= to {
        return Err(OutcomeError::refused(
            "invalid_period",
            "from: expected an instant before to",
        ));
    }
    let owner: Option<String> = sqlx::query_scalar("SELECT owner FROM comms.clients WHERE id = $1")
        .bind(client)
        .fetch_optional(pool)
        .await?;
    let owner = owner
        .ok_or_else(|| OutcomeError::refused("unknown_client", "client: no client with this id"))?;
    let sources: Vec<(String, i64)> = sqlx::query_as(
        "SELECT source, count(*) FROM comms.outcomes
         WHERE type = 'booked' AND client_id = $1 AND occurred_at >= $2 AND occurred_at < $3
         GROUP BY source ORDER BY source",
    )
    .bind(client)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    if sources.is_empty() {
        return Err(OutcomeError::refused(
            "no_sourced_figures",
            "no booked result was recorded for this client in this period",
        ));
    }
    // The same figures as `commsctl report outcomes`, summed over the client's owners.
    let figures = report::outcomes(
        pool,
        &Filter {
            owner: None,
            client: Some(client),
            from: Some(from),
            to: Some(to),
        },
    )
    .await?;
    let mut summary = Summary {
        client_id: client,
        owner,
        from,
        to,
        meetings: 0,
        sales: 0,
        value: BTreeMap::new(),
        sources: sources.into_iter().collect(),
    };
    for f in figures {
        summary.meetings += f.booked.meetings;
        summary.sales += f.booked.sales;
        for (currency, v) in f.booked.value {
            *summary.value.entry(currency).or_default() += v;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_figures_and_their_source_and_needs_approval() {
        let summary = Summary {
            client_id: Uuid::nil(),
            owner: "ana".into(),
            from: "2026-11-01T00:00:00Z".parse().expect("time"),
            to: "2026-12-01T00:00:00Z".parse().expect("time"),
            meetings: 3,
            sales: 1,
            value: BTreeMap::from([("USD".to_string(), 1200.5)]),
            sources: BTreeMap::from([("crm".to_string(), 4)]),
        };
        let request = summary.request(Uuid::nil(), DEFAULT_TEMPLATE);
        assert_eq!(request["contains_roi"], true);
        assert_eq!(request["channel"], "portal");
        let vars = &request["template"]["vars"];
        assert_eq!(vars["value"], "1200.50 USD");
        assert_eq!(vars["source"], "booked results recorded by crm (4)");
        assert_eq!(vars["period"], "2026-11-01 to 2026-12-01");
        let key = request["idempotency_key"].as_str().expect("key");
        assert!(key.starts_with("roi:00000000-0000-0000-0000-000000000000:20261101:20261201:"));
        let parsed = crate::contract::parse_send_request(request.to_string().as_bytes());
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
