//! The incidents and digests pages over HTTP, against the real database and broker: what on-call
//! and owners see, and the owner's decisions from the pages (resume an incident's automation,
//! approve a digest, release a client's held digests) with their CSRF and role checks.

use comms_domain::api_keys::{self, Role};
use comms_domain::incidents::ops;
use comms_domain::pause::store;
use comms_tests::TestEnv;
use reqwest::StatusCode;
use uuid::Uuid;

use super::{Console, audited};

const INTERNAL: &str = "root cause: Bo's deploy script";

async fn signed_in(env: &TestEnv, name: &str, role: Role) -> Console {
    let key = api_keys::create(&env.pool, name, role).await.expect("key");
    let mut console = Console::start(env).await;
    let page = console.login(&key.key).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    console
}

pub(super) async fn client(env: &TestEnv, name: &str) -> Uuid {
    sqlx::query_scalar("INSERT INTO comms.clients (name, owner) VALUES ($1, 'ana') RETURNING id")
        .bind(name)
        .fetch_one(&env.pool)
        .await
        .expect("client")
}

/// An incident owned by ana, its facts verified, that paused `client`; with an internal note.
pub(super) async fn incident(env: &TestEnv, client: Uuid) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.incidents (title, severity, state, owner, sequence, facts_verified,
                                      automation_paused)
         VALUES ('Portal outage', 'major', 'open', 'ana', 1, true, true) RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("incident");
    sqlx::query(
        "INSERT INTO comms.incident_clients (incident_id, client_id, added_at_sequence)
         VALUES ($1, $2, 1)",
    )
    .bind(id)
    .bind(client)
    .execute(&env.pool)
    .await
    .expect("affected client");
    sqlx::query(
        "INSERT INTO internal.incident_notes (incident_id, sequence, kind, body)
         VALUES ($1, 1, 'summary_internal', $2)",
    )
    .bind(id)
    .bind(INTERNAL)
    .execute(&env.pool)
    .await
    .expect("internal note");
    ops::log(
        &env.pool,
        id,
        "clients_paused",
        "comms-incidents",
        serde_json::json!({"clients": [client]}),
    )
    .await
    .expect("log");
    store::pause_for_incident(
        &env.pool,
        client,
        id,
        "incident: facts not verified",
        "comms-incidents",
    )
    .await
    .expect("pause");
    id
}

async fn incident_paused(env: &TestEnv, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT automation_paused FROM comms.incidents WHERE id = $1")
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .expect("incident")
}

#[tokio::test]
async fn incidents_are_listed_and_shown_without_internal_notes() {
    let env = TestEnv::new().await;
    let acme = client(&env, "Acme").await;
    let id = incident(&env, acme).await;
    let console = signed_in(&env, "olu", Role::Oncall).await;

    let list = console.get("/console/incidents").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!(
        "href=\"/console/incidents/{id}\">Portal outage</a>"
    )));
    let row = "<td>open</td>\n    <td>major</td>\n    <td>1</td>";
    assert!(list.body.contains(row), "state, severity, 1 client");
    assert!(list.body.contains("paused</strong>"));
    assert!(
        list.body
            .contains("href=\"/console/incidents\">Incidents</a>"),
        "nav link"
    );

    let page = console.get(&format!("/console/incidents/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("clients_paused"),
        "the timeline: {}",
        page.body
    );
    assert!(page.body.contains(&acme.to_string()), "the paused client");
    assert!(!page.body.contains("Bo&#x27;s deploy") && !page.body.contains("deploy script"));
    assert!(
        !page.body.contains("/resume-automation"),
        "an oncall key is not offered the owner's decision"
    );
    let refused = console
        .post(&format!("/console/incidents/{id}/resume-automation"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(incident_paused(&env, id).await, "nothing changed");
    assert_eq!(
        console.get("/console/incidents/nope").await.status,
        StatusCode::NOT_FOUND
    );
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn an_owner_resumes_an_incidents_automation_from_the_console() {
    let env = TestEnv::new().await;
    let acme = client(&env, "Acme").await;
    let id = incident(&env, acme).await;
    let path = format!("/console/incidents/{id}/resume-automation");

    let bo = signed_in(&env, "bo", Role::Owner).await;
    let stranger = bo.post(&path, &[]).await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN);
    assert!(
        stranger.body.contains("only the owner or a delegate"),
        "{}",
        stranger.body
    );
    assert!(incident_paused(&env, id).await);
    bo.stop().await;

    let ana = signed_in(&env, "ana", Role::Owner).await;
    let page = ana.get(&format!("/console/incidents/{id}")).await;
    assert!(
        page.body.contains(&format!("action=\"{path}\"")),
        "the owner is offered it"
    );
    let no_csrf = ana.post_raw(&path, &[]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert!(
        incident_paused(&env, id).await,
        "a CSRF-less POST changes nothing"
    );

    let resumed = ana.post(&path, &[]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert!(!incident_paused(&env, id).await);
    assert!(
        store::active(&env.pool).await.expect("switch").is_empty(),
        "the client pause is lifted"
    );
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM comms.incident_log WHERE incident_id = $1 AND what = 'automation_resumed'",
    )
    .bind(id)
    .fetch_one(&env.pool)
    .await
    .expect("decision recorded");
    assert_eq!(actor, "ana", "the key's name decided");
    let page = ana.get(&format!("/console/incidents/{id}")).await;
    assert!(
        page.body.contains("automation_resumed</strong> by ana"),
        "{}",
        page.body
    );
    assert_eq!(
        audited(&env, &path).await,
        vec![
            ("bo".to_string(), true),
            ("ana".to_string(), false),
            ("ana".to_string(), true)
        ]
    );
    ana.stop().await;
    env.teardown().await;
}

/// A closed report period of `client` (owner ana) for June 2026.
pub(super) async fn period(env: &TestEnv, client: Uuid) -> Uuid {
    sqlx::query_scalar(
        "WITH r AS (INSERT INTO comms.reports (client_id, title, owner)
                    VALUES ($1, 'Monthly report', 'ana') RETURNING id)
         INSERT INTO comms.report_periods (report_id, starts_on, ends_on, state)
         SELECT id, '2026-06-01', '2026-06-30', 'closed' FROM r RETURNING id",
    )
    .bind(client)
    .fetch_one(&env.pool)
    .await
    .expect("period")
}

/// A digest of `period` waiting for ana's approval, handed to one contact by email.
pub(super) async fn digest(env: &TestEnv, client: Uuid, period: Uuid) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.digests (period_id, revision, client_id, owner, source, state, facts,
                                    email_subject, email_body, content_hash, built_at)
         VALUES ($1, 1, $2, 'ana', 'crm', 'awaiting_approval', '{}', 'Your June',
                 'Leads: 12 (source: CRM)', 'h1', now()) RETURNING id",
    )
    .bind(period)
    .bind(client)
    .fetch_one(&env.pool)
    .await
    .expect("digest");
    let contact: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.contacts (name, client_id) VALUES ('Dana', $1) RETURNING id",
    )
    .bind(client)
    .fetch_one(&env.pool)
    .await
    .expect("contact");
    sqlx::query(
        "INSERT INTO comms.digest_sends (digest_id, contact_id, channel, idempotency_key)
         VALUES ($1, $2, 'email', $3)",
    )
    .bind(id)
    .bind(contact)
    .bind(format!("digest:{period}:{contact}:email"))
    .execute(&env.pool)
    .await
    .expect("send");
    id
}

/// The `digest.report` jobs published, as (period, owner, source).
async fn jobs(env: &TestEnv) -> Vec<(String, String, String)> {
    env.drain(&env.topology.digest_queue().name)
        .await
        .into_iter()
        .map(|(body, _)| {
            let job: serde_json::Value = serde_json::from_slice(&body).expect("a JSON job");
            let field = |name: &str| job[name].as_str().unwrap_or_default().to_string();
            (field("report_period_id"), field("owner"), field("source"))
        })
        .collect()
}

async fn digest_state(env: &TestEnv, id: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, approved_by FROM comms.digests WHERE id = $1")
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .expect("digest")
}

#[tokio::test]
async fn digests_are_listed_and_shown_and_oncall_cannot_decide() {
    let env = TestEnv::new().await;
    let acme = client(&env, "Acme").await;
    let june = period(&env, acme).await;
    let id = digest(&env, acme, june).await;
    let console = signed_in(&env, "olu", Role::Oncall).await;

    let list = console.get("/console/digests").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!(
        "href=\"/console/digests/{id}\">Acme / Monthly report</a>"
    )));
    assert!(list.body.contains("2026-06-01 – 2026-06-30"));
    assert!(list.body.contains("awaiting approval"));
    assert!(
        list.body.contains("href=\"/console/digests\">Digests</a>"),
        "nav link"
    );
    let none = console.get("/console/digests?state=blocked").await;
    assert!(none.body.contains("No digests blocked."), "{}", none.body);

    let page = console.get(&format!("/console/digests/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Email: Your June") && page.body.contains("Leads: 12 (source: CRM)")
    );
    assert!(
        page.body.contains(&format!("digest:{june}:")),
        "the send is listed"
    );
    assert!(page.body.contains("not recorded yet"), "its delivery state");
    assert!(
        !page.body.contains("/approve\""),
        "no approve control for oncall"
    );
    let refused = console
        .post(&format!("/console/digests/{id}/approve"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(digest_state(&env, id).await.0, "awaiting_approval");
    assert!(jobs(&env).await.is_empty());
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn an_owner_approves_a_digest_and_releases_held_digests_from_the_console() {
    let env = TestEnv::new().await;
    let acme = client(&env, "Acme").await;
    let june = period(&env, acme).await;
    let id = digest(&env, acme, june).await;
    let globex = client(&env, "Globex").await;
    let held_period = period(&env, globex).await;
    sqlx::query("INSERT INTO comms.digest_holds (client_id, reason) VALUES ($1, 'unverified revenue figure')")
        .bind(globex)
        .execute(&env.pool)
        .await
        .expect("hold");
    let ana = signed_in(&env, "ana", Role::Owner).await;
    let approve = format!("/console/digests/{id}/approve");
    let release = format!("/console/digests/clients/{globex}/release");

    let no_csrf = ana.post_raw(&approve, &[]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(digest_state(&env, id).await.0, "awaiting_approval");
    let page = ana.get(&format!("/console/digests/{id}")).await;
    assert!(page.body.contains(&format!("action=\"{approve}\"")));

    let approved = ana.post(&approve, &[]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert_eq!(
        digest_state(&env, id).await,
        ("approved".to_string(), Some("ana".to_string()))
    );
    assert_eq!(
        jobs(&env).await,
        vec![(june.to_string(), "ana".to_string(), "console".to_string())],
        "the job that publishes it is enqueued"
    );
    let again = ana.post(&approve, &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body.contains("not awaiting_approval"),
        "{}",
        again.body
    );

    let list = ana.get("/console/digests").await;
    assert!(list.body.contains("unverified revenue figure"));
    assert!(list.body.contains(&format!("action=\"{release}\"")));
    assert_eq!(
        ana.post_raw(&release, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let released = ana.post(&release, &[]).await;
    assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
    let by: Option<String> =
        sqlx::query_scalar("SELECT released_by FROM comms.digest_holds WHERE client_id = $1")
            .bind(globex)
            .fetch_one(&env.pool)
            .await
            .expect("hold");
    assert_eq!(by.as_deref(), Some("ana"));
    assert_eq!(
        jobs(&env).await,
        vec![(
            held_period.to_string(),
            "ana".to_string(),
            "console".to_string()
        )],
        "the held period builds again"
    );
    assert!(
        ana.get("/console/digests")
            .await
            .body
            .contains("No client's digests are held.")
    );
    assert_eq!(
        audited(&env, &approve).await,
        vec![
            ("ana".to_string(), false),
            ("ana".to_string(), true),
            ("ana".to_string(), true)
        ]
    );
    ana.stop().await;
    env.teardown().await;
}
