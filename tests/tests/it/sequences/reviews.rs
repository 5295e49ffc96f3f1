//! Review requests: a `review_request` step carries a tracked link signed over its message; the
//! real gateway records one `clicked` outcome against the message and its record however often it
//! is followed, redirects to the client's review destination, and refuses forged (403) and expired
//! (410) links without recording them. `reviewed` (platform, rating) arrives from upstream.

use chrono::{Duration as TimeDelta, Utc};
use comms_domain::outcomes::report::{self, Filter};
use comms_domain::outcomes::{self, review_link};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

use super::{Seq, key};
use crate::digest::api::Gateway;

const DESTINATION: &str = "https://reviews.example/acme";

/// `(id, result, message, record type, record id, source)` of every review outcome.
type Click = (String, String, Option<Uuid>, String, Uuid, String);

async fn review_outcomes(seq: &Seq) -> Vec<Click> {
    sqlx::query_as(
        "SELECT id, review_result, message_id, record_type, record_id, source FROM comms.outcomes
         WHERE type = 'review' ORDER BY recorded_at",
    )
    .fetch_all(&seq.env().pool)
    .await
    .expect("outcomes")
}

#[tokio::test]
async fn a_review_requests_tracked_link_records_one_click_and_redirects_to_the_review_page() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    let pool = &seq.env().pool;
    seq.fleet
        .approved_template(
            "review",
            "sms",
            None,
            "Thanks {{ contact_name }}! Tell us how we did: {{ review_url }}",
        )
        .await;
    seq.active(&json!({
        "name": "review", "audience": "leads", "escalation_owner": "bo",
        "rollback": { "cancel_remaining": true },
        "steps": [{ "channel": "sms", "kind": "review_request", "template": "review@1", "after": "0s" }]
    }))
    .await;

    // The client has no review destination yet: no link, so the request is blocked, named.
    let dana = seq.lead("+14155552671", Some("America/New_York")).await;
    seq.enrol(dana, "review").await;
    let first = seq.enrolment(dana, "review").await;
    assert!(seq.fleet.reaches(&key(first, 1), "blocked").await);
    assert_eq!(
        seq.fleet.failure(&key(first, 1)).await.0.as_deref(),
        Some("review_destination_missing")
    );

    review_link::set_destination(pool, seq.fleet.client_id, DESTINATION, "ana")
        .await
        .expect("destination set");
    let eli = seq.lead("+14155552672", Some("America/New_York")).await;
    seq.enrol(eli, "review").await;
    let enrolment = seq.enrolment(eli, "review").await;
    assert!(seq.fleet.reaches(&key(enrolment, 1), "sent").await);
    let (message_id, body): (Uuid, String) =
        sqlx::query_as("SELECT id, body FROM comms.messages WHERE idempotency_key = $1")
            .bind(key(enrolment, 1))
            .fetch_one(pool)
            .await
            .expect("message");
    let link = body
        .split_whitespace()
        .find(|w| w.contains(review_link::PATH))
        .expect("the message carries its tracked link");
    let token = link.rsplit('/').next().expect("a token").to_string();
    assert!(!link.contains(&message_id.to_string()), "{link}");

    let gateway = Gateway::start(seq.env()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let follow = |token: String| {
        let url = format!("{}{}{token}", gateway.base, review_link::PATH);
        let request = http.get(url);
        async move { request.send().await.expect("gateway answers") }
    };
    for _ in 0..2 {
        let response = follow(token.clone()).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], DESTINATION);
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    }
    let click = (
        review_link::click_id(message_id),
        "clicked".to_string(),
        Some(message_id),
        "client".to_string(),
        seq.fleet.client_id,
        review_link::SOURCE.to_string(),
    );
    assert_eq!(
        review_outcomes(&seq).await,
        vec![click.clone()],
        "one click"
    );
    let recorded = seq
        .fleet
        .timeline(&key(enrolment, 1))
        .await
        .into_iter()
        .filter(|e| e == "outcome_recorded")
        .count();
    assert_eq!(recorded, 1);

    // Forged, altered or expired links are refused and recorded nowhere.
    let secret = seq.env().settings.sequences.review_link_secret.clone();
    let secret = secret.expose_secret().as_bytes();
    let mut altered = token.clone().into_bytes();
    altered[3] = if altered[3] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).expect("ascii");
    let other_secret = review_link::url(
        "",
        b"not-the-secret",
        message_id,
        Utc::now() + TimeDelta::days(1),
    );
    let expired = review_link::url("", secret, message_id, Utc::now() - TimeDelta::seconds(1));
    let tail = |url: &str| url.rsplit('/').next().expect("token").to_string();
    for (forged, status) in [
        (altered, StatusCode::FORBIDDEN),
        (tail(&other_secret), StatusCode::FORBIDDEN),
        ("not-a-token".to_string(), StatusCode::FORBIDDEN),
        (tail(&expired), StatusCode::GONE),
    ] {
        assert_eq!(follow(forged).await.status(), status);
    }
    assert_eq!(review_outcomes(&seq).await, vec![click]);

    // The review itself, with its platform and rating, arrives from upstream.
    let reviewed = outcomes::parse(
        json!({
            "outcome_id": "reviews-app-77", "type": "review", "source": "reviews-app",
            "review": { "result": "reviewed", "platform": "google", "rating": 5 },
            "attributed_to": { "message": key(enrolment, 1) }
        })
        .to_string()
        .as_bytes(),
    )
    .expect("valid");
    outcomes::record(pool, &reviewed, Utc::now())
        .await
        .expect("recorded");
    let figures = report::outcomes(pool, &Filter::default())
        .await
        .expect("report");
    let ana = figures.iter().find(|f| f.owner == "ana").expect("ana");
    assert_eq!((ana.reviews.clicked, ana.reviews.reviewed), (1, 1));
    assert_eq!(ana.reviews.mean_rating, Some(5.0));
    gateway.stop().await;
    seq.stop().await;
}
