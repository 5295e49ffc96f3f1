//! Report digests: internal notes excluded, unverified revenue blocks and holds the client, stale
//! data gets the caveat or is blocked, the approval gate (again after a change), and a rebuild
//! that sends nothing new.

use chrono::{DateTime, Utc};
use comms_digest::job::ReportJob;
use comms_digest::report::approve::approve;
use comms_digest::report::build::{Built, build};
use comms_runtime::runtime::Runtime;
use comms_tests::TestEnv;
use uuid::Uuid;

use super::{at, contact, sends};

pub(super) struct Period {
    pub client: Uuid,
    pub report: Uuid,
    pub period: Uuid,
    pub contact: Uuid,
}

async fn template(env: &TestEnv, name: &str, channel: &str, subject: Option<&str>, body: &str) {
    sqlx::query(
        "INSERT INTO comms.templates (name, version, channel, subject, body, state, created_by,
             approved_by, approved_at)
         VALUES ($1, 1, $2, $3, $4, 'approved', 'ana', 'ana', now())",
    )
    .bind(name)
    .bind(channel)
    .bind(subject)
    .bind(body)
    .execute(&env.pool)
    .await
    .expect("template");
}

const BODY: &str = "{{ report.title }} for {{ client.name }}, as of {{ as_of }}.\n\
{% for n in notes %}- {{ n }}\n{% endfor %}{% for f in figures %}{{ f.label }}: {{ f.value }} (Source: {{ f.source }})\n{% endfor %}\
{{ caveat }}\nThe full report: {{ view_url }}";

pub(super) async fn setup(env: &TestEnv) -> Period {
    let client: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Acme Dental', 'ana') RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("client");
    let report: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.reports (client_id, title, owner) VALUES ($1, 'March report', 'ana') RETURNING id",
    )
    .bind(client)
    .fetch_one(&env.pool)
    .await
    .expect("report");
    let period: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.report_periods (report_id, starts_on, ends_on, state)
         VALUES ($1, '2025-03-01', '2025-03-31', 'closed') RETURNING id",
    )
    .bind(report)
    .fetch_one(&env.pool)
    .await
    .expect("period");
    for (body, visibility) in [
        ("Twelve new patients booked", "client"),
        ("Client is behind on invoices", "internal"),
    ] {
        note(env, report, body, visibility).await;
    }
    template(
        env,
        "report_digest.email",
        "email",
        Some("Your {{ report.title }}"),
        BODY,
    )
    .await;
    template(
        env,
        "report_digest.portal",
        "portal",
        Some("{{ report.title }}"),
        BODY,
    )
    .await;
    let contact = contact(env, Some(client), None, true).await;
    Period {
        client,
        report,
        period,
        contact,
    }
}

async fn note(env: &TestEnv, report: Uuid, body: &str, visibility: &str) {
    sqlx::query("INSERT INTO comms.report_notes (report_id, body, visibility, author) VALUES ($1, $2, $3, 'ana')")
        .bind(report)
        .bind(body)
        .bind(visibility)
        .execute(&env.pool)
        .await
        .expect("note");
}

async fn figure(
    env: &TestEnv,
    period: Uuid,
    kind: &str,
    source: Option<&str>,
    verified: bool,
    as_of: &str,
) {
    sqlx::query(
        "INSERT INTO comms.report_figures (period_id, label, value, kind, source, source_verified, as_of)
         VALUES ($1, $2, '42', $2, $3, $4, $5)",
    )
    .bind(period)
    .bind(kind)
    .bind(source)
    .bind(verified)
    .bind(at(as_of))
    .execute(&env.pool)
    .await
    .expect("figure");
}

pub(super) async fn run_build(env: &TestEnv, period: Uuid) -> Built {
    build_at(env, period, at("2025-04-01T08:00:00Z")).await
}

/// One build of `period`'s digest at `now`, as the worker runs it for a job.
pub(super) async fn build_at(env: &TestEnv, period: Uuid, now: DateTime<Utc>) -> Built {
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let job = ReportJob {
        schema: None,
        report_period_id: period,
        owner: "ana".into(),
        source: "reporting".into(),
        requested_at: now,
    };
    build(&runtime, &env.publisher, &job, now)
        .await
        .expect("build")
}

async fn body(env: &TestEnv, digest: Uuid) -> (String, String, serde_json::Value) {
    sqlx::query_as("SELECT email_body, portal_body, facts FROM comms.digests WHERE id = $1")
        .bind(digest)
        .fetch_one(&env.pool)
        .await
        .expect("digest")
}

async fn open_tasks(env: &TestEnv, report: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT title FROM comms.tasks WHERE record_id = $1 AND state = 'open'")
        .bind(report)
        .fetch_all(&env.pool)
        .await
        .expect("tasks")
}

#[tokio::test]
async fn internal_notes_never_appear_and_a_draft_waits_for_approval() {
    let env = TestEnv::new().await;
    let p = setup(&env).await;
    let Built::AwaitingApproval { digest_id } = run_build(&env, p.period).await else {
        panic!("a draft")
    };
    let (email, portal, facts) = body(&env, digest_id).await;
    for text in [&email, &portal, &facts.to_string()] {
        assert!(text.contains("Twelve new patients booked"), "{text}");
        assert!(
            !text.contains("behind on invoices"),
            "internal note leaked: {text}"
        );
    }
    // Fresh figures carry no caveat: a template's bare `{{ caveat }}` prints nothing, never
    // "none".
    for text in [&email, &portal] {
        assert!(
            !text
                .to_lowercase()
                .lines()
                .any(|line| line.trim() == "none"),
            "{text}"
        );
    }
    assert!(
        sends(&env, "email").await.is_empty(),
        "nothing is sent before approval"
    );
    assert_eq!(open_tasks(&env, p.report).await.len(), 1);
    env.teardown().await;
}

#[tokio::test]
async fn unverified_revenue_blocks_opens_a_task_and_holds_the_clients_digests() {
    let env = TestEnv::new().await;
    let p = setup(&env).await;
    figure(
        &env,
        p.period,
        "revenue",
        Some("CRM export"),
        false,
        "2025-03-31T00:00:00Z",
    )
    .await;
    let Built::Blocked { reason, .. } = run_build(&env, p.period).await else {
        panic!("blocked")
    };
    assert!(reason.starts_with("revenue_unverified"), "{reason}");
    let tasks = open_tasks(&env, p.report).await;
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].contains("revenue_unverified"), "{tasks:?}");
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.digest_holds WHERE client_id = $1 AND released_at IS NULL",
    )
    .bind(p.client)
    .fetch_one(&env.pool)
    .await
    .expect("hold");
    assert_eq!(held, 1);
    // Even with the figure fixed, the client's digests wait for the owner's release.
    sqlx::query("UPDATE comms.report_figures SET source_verified = true")
        .execute(&env.pool)
        .await
        .expect("verify");
    assert_eq!(run_build(&env, p.period).await, Built::Held);
    comms_digest::report::approve::release(&env.pool, p.client, "ana")
        .await
        .expect("release");
    // Released: built again (the verified figure now passes; the portal-safe check still applies).
    match run_build(&env, p.period).await {
        Built::AwaitingApproval { .. } => {}
        Built::Blocked { reason, .. } => {
            assert!(!reason.starts_with("revenue_unverified"), "{reason}")
        }
        other => panic!("built again after the release, got {other:?}"),
    }
    assert!(sends(&env, "email").await.is_empty());
    env.teardown().await;
}

#[tokio::test]
async fn stale_data_is_blocked_without_an_approved_caveat_and_carries_it_with_one() {
    let env = TestEnv::new().await;
    let p = setup(&env).await;
    figure(
        &env,
        p.period,
        "count",
        Some("Google Ads"),
        false,
        "2025-02-01T00:00:00Z",
    )
    .await;
    let Built::Blocked { reason, .. } = run_build(&env, p.period).await else {
        panic!("blocked")
    };
    assert!(reason.starts_with("stale_without_caveat"), "{reason}");
    template(
        &env,
        "report_digest.stale_caveat",
        "email",
        None,
        "Some figures are last updated weeks ago.",
    )
    .await;
    let Built::AwaitingApproval { digest_id } = run_build(&env, p.period).await else {
        panic!("a draft")
    };
    let (email, portal, _) = body(&env, digest_id).await;
    assert!(email.contains("last updated weeks ago") && portal.contains("last updated weeks ago"));
    env.teardown().await;
}

#[tokio::test]
async fn approval_gates_sending_a_change_needs_approval_again_and_a_rebuild_sends_nothing_new() {
    let env = TestEnv::new().await;
    let p = setup(&env).await;
    let Built::AwaitingApproval { digest_id: first } = run_build(&env, p.period).await else {
        panic!("a draft")
    };
    let approval = approve(&env.pool, first, "ana").await.expect("approve");
    assert!(approval.approval_seconds >= 0.0);
    // The content changes after the approval: a new revision, waiting again, nothing sent.
    note(&env, p.report, "A new landing page went live", "client").await;
    let Built::AwaitingApproval { digest_id: second } = run_build(&env, p.period).await else {
        panic!("a new draft")
    };
    assert_ne!(first, second);
    assert!(sends(&env, "email").await.is_empty());
    assert!(
        approve(&env.pool, first, "ana").await.is_err(),
        "the old revision is superseded"
    );
    assert!(
        approve(&env.pool, second, "bo").await.is_err(),
        "bo is not ana's delegate"
    );
    approve(&env.pool, second, "ana").await.expect("approve");
    let Built::Published { sends: n, .. } = run_build(&env, p.period).await else {
        panic!("published")
    };
    assert_eq!(n, 2);
    let email = sends(&env, "email").await;
    let portal = sends(&env, "portal").await;
    assert_eq!((email.len(), portal.len()), (1, 1));
    assert_eq!(
        email[0]["idempotency_key"],
        format!("digest:{}:{}:email", p.period, p.contact)
    );
    assert_eq!(email[0]["kind"], "report_digest");
    let state: String = sqlx::query_scalar("SELECT state FROM comms.report_periods WHERE id = $1")
        .bind(p.period)
        .fetch_one(&env.pool)
        .await
        .expect("period");
    assert_eq!(state, "published");
    // A rebuild (a replayed job) finds the same content, already published: nothing new.
    assert!(matches!(
        run_build(&env, p.period).await,
        Built::Unchanged { .. }
    ));
    assert!(sends(&env, "email").await.is_empty() && sends(&env, "portal").await.is_empty());
    env.teardown().await;
}
