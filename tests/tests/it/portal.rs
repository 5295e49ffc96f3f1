//! The portal boundary: unsafe wording never reaches an approver or the portal, safe wording is
//! published only after the owner's approval, and the database itself lets the `comms_portal`
//! role read the portal views — approved, client-safe content only — and nothing else.

use comms_domain::approvals::approval_hash;
use comms_tests::TestEnv;
use comms_tests::fleet::SendFleet;
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::approvals::ctl;

mod recipients;

/// A connection to the test database acting as the portal role (NOLOGIN, so via SET ROLE).
pub(crate) async fn as_portal(env: &TestEnv) -> PgConnection {
    let mut conn = PgConnection::connect(env.settings.database.url.expose_secret())
        .await
        .expect("connect");
    sqlx::query("SET ROLE comms_portal")
        .execute(&mut conn)
        .await
        .expect("set role");
    conn
}

async fn rows(conn: &mut PgConnection, view: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar(&format!("SELECT to_jsonb(v) FROM {view} v"))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{view} is readable as comms_portal: {e}"))
}

fn portal_request(key: &str, kind: &str, text: &str, client: Uuid) -> serde_json::Value {
    json!({
        "idempotency_key": key,
        "channel": "portal",
        "kind": kind,
        "recipient": { "email": "dana@acme.example" },
        "template": { "name": "portal-note", "vars": { "text": text } },
        "record": { "type": "client", "id": client.to_string() },
        "owner": "ana",
        "source": "crm",
        "trigger": "report.ready"
    })
}

async fn portal_fleet() -> SendFleet {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("portal-note", "portal", Some("Update"), "{{ text }}")
        .await;
    fleet
}

#[tokio::test]
async fn unsafe_portal_wording_is_blocked_with_every_problem_named() {
    let fleet = portal_fleet().await;
    let text = r#"Call Dana on +1 415 555 2671. Twilio said {"status": "failed"}"#;
    fleet
        .send(&portal_request(
            "leak",
            "portal_update",
            text,
            fleet.client_id,
        ))
        .await;
    assert!(fleet.reaches("leak", "blocked").await);
    assert_eq!(
        fleet.failure("leak").await.0.as_deref(),
        Some("portal_unsafe")
    );
    let (reason, detail): (String, serde_json::Value) = sqlx::query_as(
        "SELECT e.reason, e.detail FROM comms.message_events e JOIN comms.messages m ON m.id = e.message_id
         WHERE m.idempotency_key = 'leak' AND e.event_type = 'blocked'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("event");
    let codes: Vec<&str> = detail["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["code"].as_str())
        .collect();
    assert_eq!(codes, ["raw_payload", "phone_number"]);
    assert!(
        !reason.contains("2671"),
        "the event names the problem, not the number: {reason}"
    );
    let task: String = sqlx::query_scalar(
        "SELECT t.reason FROM comms.tasks t JOIN comms.messages m ON m.id = t.message_id
         WHERE m.idempotency_key = 'leak' AND t.state = 'open'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("the owner has a task");
    assert!(
        task.contains("phone_number") && task.contains("raw_payload"),
        "{task}"
    );
    let timeline = fleet.timeline("leak").await;
    assert!(
        !timeline.contains(&"approval_requested".to_string()),
        "never offered for approval"
    );
    let published: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.portal_updates")
        .fetch_one(&fleet.env.pool)
        .await
        .expect("count");
    assert_eq!(published, 0);
    fleet.stop().await;
}

#[tokio::test]
async fn safe_portal_wording_is_published_only_after_approval_and_read_through_the_views() {
    let fleet = portal_fleet().await;
    let text = "Your March report is ready. We reviewed 42 listings and updated 3.";
    fleet
        .send(&portal_request(
            "safe",
            "portal_update",
            text,
            fleet.client_id,
        ))
        .await;
    assert!(fleet.reaches("safe", "awaiting_approval").await);
    let mut portal = as_portal(&fleet.env).await;
    assert!(
        rows(&mut portal, "portal.updates").await.is_empty(),
        "nothing before approval"
    );
    assert!(rows(&mut portal, "portal.delivery_status").await.is_empty());

    ctl(&fleet, &["approve", "safe", "--as", "ana"])
        .await
        .expect("approve");
    assert!(fleet.reaches("safe", "sent").await);
    let updates = rows(&mut portal, "portal.updates").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["body"], json!(text));
    assert_eq!(updates[0]["client_id"], json!(fleet.client_id));
    let status = rows(&mut portal, "portal.delivery_status").await;
    assert_eq!(status[0]["status"], json!("sent"));
    assert!(status[0].get("recipient_address").is_none());
    fleet.stop().await;
}

#[tokio::test]
async fn the_portal_role_reads_the_portal_views_and_nothing_else() {
    let env = TestEnv::new().await;
    let can_login: bool =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'comms_portal'")
            .fetch_one(&env.pool)
            .await
            .expect("the role exists");
    assert!(!can_login, "no login, no password by default");
    let internal: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('comms', 'internal', 'public') AND c.relkind IN ('r', 'v', 'm', 'p')
         ORDER BY 1",
    )
    .fetch_all(&env.pool)
    .await
    .expect("tables");
    for table in [
        "comms.messages",
        "comms.message_events",
        "comms.report_notes",
        "internal.provider_payloads",
        "comms.message_approvals",
    ] {
        assert!(
            internal.contains(&table.to_string()),
            "{table} is among those checked"
        );
    }
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'portal' ORDER BY 1",
    )
    .fetch_all(&env.pool)
    .await
    .expect("views");
    assert_eq!(
        views,
        [
            "delivery_status",
            "incident_notices",
            "report_digests",
            "updates"
        ]
    );

    let mut portal = as_portal(&env).await;
    for table in &internal {
        let refused = sqlx::query(&format!("SELECT 1 FROM {table} LIMIT 1"))
            .execute(&mut portal)
            .await
            .expect_err(&format!("{table} must be refused to comms_portal"));
        let code = refused
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{table}: {refused}");
    }
    // Nothing of its own either: no temporary tables or functions, nothing in `public`.
    for create in [
        "CREATE TEMPORARY TABLE scratch (a int)",
        "CREATE FUNCTION pg_temp.shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE public.scratch (a int)",
        "CREATE SCHEMA scratch",
    ] {
        let refused = sqlx::query(create)
            .execute(&mut portal)
            .await
            .expect_err(&format!("comms_portal must not run: {create}"));
        let code = refused
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{create}: {refused}");
    }
    for view in &views {
        rows(&mut portal, &format!("portal.{view}")).await;
        let write = sqlx::query(&format!("DELETE FROM portal.{view}"))
            .execute(&mut portal)
            .await;
        assert!(write.is_err(), "portal.{view} is read-only");
    }
    portal.close().await.expect("close");
    env.teardown().await;
}

struct Seed<'a> {
    kind: &'a str,
    record_type: &'a str,
    record_id: Uuid,
    body: &'a str,
    ai_draft: bool,
    approved_body: Option<&'a str>,
}

async fn seed(env: &TestEnv, client: Uuid, contact: Uuid, s: Seed<'_>) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address, owner,
             source, trigger, record_type, record_id, client_id, template_name, subject, body, ai_draft,
             delivery_state, dispatched_at, request)
         VALUES (gen_random_uuid()::text, 'email', $1, $2, 'dana@acme.example', 'ana', 'crm', 't', $3, $4,
                 $5, 'x', 'Subject', $6, $7, 'sent', now(), '{}') RETURNING id",
    )
    .bind(s.kind)
    .bind(contact)
    .bind(s.record_type)
    .bind(s.record_id)
    .bind(client)
    .bind(s.body)
    .bind(s.ai_draft)
    .fetch_one(&env.pool)
    .await
    .expect("message");
    if let Some(approved) = s.approved_body {
        sqlx::query(
            "INSERT INTO comms.message_approvals (message_id, content_hash, decision, decided_by, requested_at)
             VALUES ($1, $2, 'approved', 'ana', now())",
        )
        .bind(id)
        .bind(approval_hash(Some("Subject"), approved))
        .execute(&env.pool)
        .await
        .expect("approval");
    }
    id
}

#[tokio::test]
async fn portal_views_show_only_approved_client_safe_content() {
    let env = TestEnv::new().await;
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
    let report: Uuid = sqlx::query_scalar("INSERT INTO comms.reports (client_id, title, owner) VALUES ($1, 'March report', 'ana') RETURNING id")
        .bind(client).fetch_one(pool).await.expect("report");
    sqlx::query("INSERT INTO comms.report_notes (report_id, body, author) VALUES ($1, 'internal: churn risk', 'ana')")
        .bind(report).execute(pool).await.expect("note");
    let incident: Uuid = sqlx::query_scalar("INSERT INTO comms.incidents (client_id, title, owner) VALUES ($1, 'evidence: db dump of customer table', 'ana') RETURNING id")
        .bind(client).fetch_one(pool).await.expect("incident");

    let digest = Seed {
        kind: "report_digest",
        record_type: "report",
        record_id: report,
        body: "As of Monday: 42 leads.",
        ai_draft: false,
        approved_body: Some("As of Monday: 42 leads."),
    };
    let approved_digest = seed(&env, client, contact, digest).await;
    let changed = Seed {
        kind: "report_digest",
        record_type: "report",
        record_id: report,
        body: "Edited after approval",
        ai_draft: false,
        approved_body: Some("As approved"),
    };
    seed(&env, client, contact, changed).await;
    let notice = Seed {
        kind: "incident_notice",
        record_type: "incident",
        record_id: incident,
        body: "Email is slow. We are still investigating.",
        ai_draft: false,
        approved_body: Some("Email is slow. We are still investigating."),
    };
    let approved_notice = seed(&env, client, contact, notice).await;
    let draft = Seed {
        kind: "incident_notice",
        record_type: "incident",
        record_id: incident,
        body: "AI wrote this.",
        ai_draft: true,
        approved_body: Some("AI wrote this."),
    };
    seed(&env, client, contact, draft).await;

    let mut portal = as_portal(&env).await;
    let digests = rows(&mut portal, "portal.report_digests").await;
    assert_eq!(
        digests.len(),
        1,
        "only the digest whose words were approved: {digests:?}"
    );
    assert_eq!(digests[0]["message_id"], json!(approved_digest));
    assert_eq!(digests[0]["report_title"], json!("March report"));
    let notices = rows(&mut portal, "portal.incident_notices").await;
    assert_eq!(
        notices.len(),
        1,
        "an unreviewed AI draft is not shown: {notices:?}"
    );
    assert_eq!(notices[0]["message_id"], json!(approved_notice));
    for row in digests
        .iter()
        .chain(&notices)
        .chain(&rows(&mut portal, "portal.delivery_status").await)
    {
        let text = row.to_string();
        for private in ["dana@acme.example", "evidence", "churn", "crm"] {
            assert!(!text.contains(private), "{private} leaked through {text}");
        }
    }
    // The hash the views check is the one approvals record.
    let sql: String = sqlx::query_scalar("SELECT comms.approval_hash($1, $2)")
        .bind(Option::<String>::None)
        .bind("Grüße — 42 %")
        .fetch_one(pool)
        .await
        .expect("hash");
    assert_eq!(sql, approval_hash(None, "Grüße — 42 %"));
    portal.close().await.expect("close");
    env.teardown().await;
}
