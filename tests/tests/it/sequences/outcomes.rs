//! Outcomes: idempotent on their id, attributed to a message, sequence or record, refused with a
//! reason when bad; the report's figures match hand-computed ones on a fixed data set.

use comms_domain::outcomes::report::{self, Filter};
use comms_domain::outcomes::{self, OutcomeError};
use comms_tests::{TestEnv, eventually};
use serde_json::json;
use uuid::Uuid;

use super::{Seq, WAIT, at, key, three_steps};

/// id, type, message, sequence, owner, client of a stored outcome.
type Stored = (
    String,
    String,
    Option<Uuid>,
    Option<String>,
    String,
    Option<Uuid>,
);

#[tokio::test]
async fn outcomes_are_idempotent_attributed_and_refused_with_a_reason() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    seq.active(&three_steps("winback")).await;
    let dana = seq.lead("+14155552671", Some("America/New_York")).await;
    seq.enrol(dana, "winback").await;
    let enrolment = seq.enrolment(dana, "winback").await;
    assert!(seq.fleet.reaches(&key(enrolment, 1), "sent").await);
    let env = seq.env();
    let sale = json!({
        "outcome_id": "crm-sale-7", "type": "booked", "source": "crm",
        "booked": { "kind": "sale", "value": 1200.5, "currency": "USD" },
        "attributed_to": { "message": key(enrolment, 1) }
    });
    let exchange = env.topology.sequence_exchange();
    for _ in 0..2 {
        env.publish(&exchange, "outcome.booked", sale.to_string().as_bytes())
            .await;
    }
    let review = json!({
        "outcome_id": "rv-1", "type": "review", "source": "link",
        "review": { "result": "reviewed", "platform": "google", "rating": 5 },
        "attributed_to": { "record": { "type": "client", "id": seq.fleet.client_id } }
    });
    env.publish(&exchange, "outcome.review", review.to_string().as_bytes())
        .await;
    // The sale is recorded before its id is reused (deliveries are handled side by side, so a
    // reuse published right behind it could be handled first and be the one recorded).
    let sale_recorded = eventually(WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM comms.outcomes WHERE id = 'crm-sale-7'")
            .fetch_one(&env.pool)
            .await
            .expect("outcomes")
            == 1
    })
    .await;
    assert!(sale_recorded, "the sale is recorded");
    // Refused, each with its reason: the same id with other content, a type on the wrong key,
    // a report view (recorded by the signed view link instead), no attribution.
    let mut reused = sale.clone();
    reused["booked"]["value"] = json!(99);
    env.publish(&exchange, "outcome.booked", reused.to_string().as_bytes())
        .await;
    env.publish(&exchange, "outcome.review", sale.to_string().as_bytes())
        .await;
    let viewed = json!({ "outcome_id": "v-1", "type": "report_viewed", "source": "portal",
                         "attributed_to": { "sequence": "winback" } });
    env.publish(
        &exchange,
        "outcome.report_viewed",
        viewed.to_string().as_bytes(),
    )
    .await;

    let reasons = || async {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT reason FROM internal.rejected_input ORDER BY id")
                .fetch_all(&env.pool)
                .await
                .expect("rejected");
        rows
    };
    assert!(
        eventually(WAIT, || async { reasons().await.len() == 3 }).await,
        "{:?}",
        reasons().await
    );
    let reasons = reasons().await;
    for expected in [
        "outcome_id_reused",
        "routing_key_mismatch",
        "report_viewed_not_accepted",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expected)),
            "{expected} in {reasons:?}"
        );
    }
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT id, type, message_id, sequence_name, owner, client_id FROM comms.outcomes ORDER BY id",
    )
    .fetch_all(&env.pool)
    .await
    .expect("outcomes");
    let message: Uuid =
        sqlx::query_scalar("SELECT id FROM comms.messages WHERE idempotency_key = $1")
            .bind(key(enrolment, 1))
            .fetch_one(&env.pool)
            .await
            .expect("message");
    let client = Some(seq.fleet.client_id);
    assert_eq!(
        stored,
        vec![
            (
                "crm-sale-7".into(),
                "booked".into(),
                Some(message),
                Some("winback".into()),
                "ana".into(),
                client
            ),
            (
                "rv-1".into(),
                "review".into(),
                None,
                None,
                "ana".into(),
                client
            ),
        ]
    );
    assert_eq!(
        seq.enrolment_state(enrolment).await,
        ("exited".into(), Some("booked".into()))
    );
    // Directly (the API's path): a replay is a no-op, a bad one is refused with its reason.
    let parsed = outcomes::parse(sale.to_string().as_bytes()).expect("valid");
    let replay = outcomes::record(&env.pool, &parsed, at("2026-11-27T16:00:00Z"))
        .await
        .expect("replay");
    assert!(!replay.created);
    let bad = outcomes::parse(br#"{"outcome_id":"x","type":"booked","source":"crm","booked":{"kind":"sale"},"attributed_to":{"message":"nope"}}"#)
        .expect("well-formed");
    let refused = outcomes::record(&env.pool, &bad, at("2026-11-27T16:00:00Z")).await;
    assert!(
        matches!(
            refused,
            Err(OutcomeError::Refused {
                code: "unknown_message",
                ..
            })
        ),
        "{refused:?}"
    );
    seq.stop().await;
}

#[tokio::test]
async fn the_report_matches_hand_computed_figures_on_a_fixed_data_set() {
    let env = TestEnv::new().await;
    let pool = &env.pool;
    let client = fixed_data_set(&env).await;
    let filter = Filter {
        from: Some(at("2026-11-01T00:00:00Z")),
        to: Some(at("2026-11-20T00:00:00Z")),
        ..Filter::default()
    };
    let figures = report::outcomes(pool, &filter).await.expect("report");
    let owners: Vec<&str> = figures.iter().map(|f| f.owner.as_str()).collect();
    assert_eq!(owners, ["ana", "sam"]);
    let ana = &figures[0];
    assert_eq!((ana.response.count, ana.response.done), (3, 2));
    assert_eq!(ana.response.median_seconds, Some(120.0));
    assert_eq!(ana.response.mean_seconds, Some(120.0));
    assert_eq!(
        (ana.approval.count, ana.approval.median_seconds),
        (2, Some(1200.0))
    );
    assert_eq!((ana.booked.sales, ana.booked.meetings), (1, 1));
    assert_eq!(ana.booked.value.get("USD"), Some(&1200.5));
    assert_eq!(ana.booked.by_sequence.get("winback"), Some(&2));
    assert_eq!(ana.booked.attributed_to_messages, 1);
    assert_eq!(
        (
            ana.reviews.reviewed,
            ana.reviews.declined,
            ana.reviews.clicked
        ),
        (2, 1, 0)
    );
    assert_eq!(ana.reviews.mean_rating, Some(4.5));
    assert_eq!(ana.report_views, 0);
    let sam = &figures[1];
    assert_eq!(
        (sam.response.count, sam.response.median_seconds),
        (1, Some(30.0))
    );
    assert_eq!(sam.booked.meetings, 1);
    // One owner, one client.
    let only = report::outcomes(
        pool,
        &Filter {
            owner: Some("ana".into()),
            client: Some(client),
            ..filter.clone()
        },
    )
    .await
    .expect("report");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].approval.count, 2);
    env.teardown().await;
}

/// The report's fixed data set (Acme's owner ana and client-less sam, November 2026): replies
/// answered after 60 s, 180 s and 30 s and one unanswered, approvals of 600 s, 1800 s and 10 s, a
/// 1200.50 USD sale and two meetings, two reviews (4 and 5) and a decline. Returns Acme's id.
pub async fn fixed_data_set(env: &TestEnv) -> Uuid {
    let pool = &env.pool;
    let client: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Acme', 'ana') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("client");
    let contact: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.contacts (name, client_id) VALUES ('Dana', $1) RETURNING id",
    )
    .bind(client)
    .fetch_one(pool)
    .await
    .expect("contact");
    // Messages of ana (client Acme) and of sam (no client).
    let mut messages = Vec::new();
    for (i, owner) in ["ana", "ana", "ana", "sam"].iter().enumerate() {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
                 owner, source, trigger, record_type, record_id, client_id, template_name, request, delivery_state)
             VALUES ($1, 'sms', 'outreach', $2, '+14155552671', $3, 'crm', 't', 'client', $4, $5, 'x', '{}', 'sent')
             RETURNING id",
        )
        .bind(format!("m{i}"))
        .bind(contact)
        .bind(owner)
        .bind(client)
        .bind((*owner == "ana").then_some(client))
        .fetch_one(pool)
        .await
        .expect("message");
        messages.push(id);
    }
    // Replies: answered after 60 s and 180 s (ana), one unanswered (ana), one after 30 s (sam).
    for (i, (message, answered)) in [(0, Some(60)), (1, Some(180)), (2, None), (3, Some(30))]
        .iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO internal.inbound_messages (provider, channel, provider_message_id, from_address,
                 to_address, body, classification, message_id, contact_id, received_at, responded_at)
             VALUES ('twilio', 'sms', $1, '+1', '+2', 'hi', 'reply', $2, $3, '2026-11-10T10:00:00Z',
                     '2026-11-10T10:00:00Z'::timestamptz + make_interval(secs => $4))",
        )
        .bind(format!("SM{i}"))
        .bind(messages[*message])
        .bind(contact)
        .bind(answered.map(f64::from))
        .execute(pool)
        .await
        .expect("reply");
    }
    // Approvals: 600 s and 1800 s (ana), one outside the period (ana, 10 s).
    for (message, seconds, day) in [(0, 600, "10"), (1, 1800, "11"), (2, 10, "25")] {
        sqlx::query(
            "INSERT INTO comms.message_approvals (message_id, content_hash, decision, decided_by, requested_at, decided_at)
             VALUES ($1, 'h', 'approved', 'ana', $2::timestamptz, $2::timestamptz + make_interval(secs => $3))",
        )
        .bind(messages[message])
        .bind(format!("2026-11-{day}T09:00:00Z"))
        .bind(f64::from(seconds))
        .execute(pool)
        .await
        .expect("approval");
    }
    // Outcomes: a sale of 1200.50 USD and a meeting (ana, from sequence winback), a review (4) and
    // a review (5) and a decline (ana), a meeting of sam's.
    let outcomes = [
        (
            "o1",
            "ana",
            r#"{"kind":"sale","value":1200.5,"currency":"USD"}"#,
            Some("winback"),
            Some(messages[0]),
        ),
        ("o2", "ana", r#"{"kind":"meeting"}"#, Some("winback"), None),
        (
            "o6",
            "sam",
            r#"{"kind":"meeting"}"#,
            None,
            Some(messages[3]),
        ),
    ];
    for (id, owner, booked, sequence, message) in outcomes {
        let booked: serde_json::Value = serde_json::from_str(booked).expect("json");
        sqlx::query(
            "INSERT INTO comms.outcomes (id, type, booked_kind, value, currency, message_id, sequence_name,
                 record_type, record_id, owner, client_id, source, occurred_at, payload)
             VALUES ($1, 'booked', $2, $3::float8, $4, $5, $6, 'client', $7, $8, $9, 'crm', '2026-11-12T00:00:00Z', '{}')",
        )
        .bind(id)
        .bind(booked["kind"].as_str())
        .bind(booked["value"].as_f64())
        .bind(booked["currency"].as_str())
        .bind(message)
        .bind(sequence)
        .bind(client)
        .bind(owner)
        .bind((owner == "ana").then_some(client))
        .execute(pool)
        .await
        .expect("booked");
    }
    for (id, result, rating) in [
        ("o3", "reviewed", Some(4.0)),
        ("o4", "reviewed", Some(5.0)),
        ("o5", "declined", None),
    ] {
        sqlx::query(
            "INSERT INTO comms.outcomes (id, type, review_result, rating, record_type, record_id, owner,
                 client_id, source, occurred_at, payload)
             VALUES ($1, 'review', $2, $3::float8, 'client', $4, 'ana', $4, 'link', '2026-11-12T00:00:00Z', '{}')",
        )
        .bind(id)
        .bind(result)
        .bind(rating)
        .bind(client)
        .execute(pool)
        .await
        .expect("review");
    }
    client
}
