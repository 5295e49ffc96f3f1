//! The digest admin API and signed report views over real HTTP, with real API keys: only `owner`
//! keys list, show, build, approve and release; a recipient's own link records a view (the first
//! one per contact is the "report viewed" outcome, once), and forged, altered or expired links are
//! refused and recorded nowhere.

use chrono::{Duration as TimeDelta, Utc};
use comms_digest::report::approve::approve;
use comms_digest::report::build::Built;
use comms_domain::api_keys::{self, Role};
use comms_domain::digests::link::{self, ViewLink};
use comms_domain::digests::view;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::TestEnv;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use uuid::Uuid;

use super::reports::{build_at, run_build, setup};
use super::sends;
use crate::approvals::ctl_with;

/// A gateway on a port of its own, for `env`; its base URL.
pub(crate) struct Gateway {
    pub(crate) base: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    pub(crate) async fn start(env: &TestEnv) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = Shutdown::new();
        let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
        let task = tokio::spawn(comms_gateway::serve(listener, runtime, shutdown.clone()));
        Self {
            base,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// The `digest.report` jobs waiting on the digest queue (taken off it).
async fn jobs(env: &TestEnv) -> Vec<Value> {
    env.drain(&env.topology.digest_queue().name)
        .await
        .into_iter()
        .map(|(body, _)| serde_json::from_slice(&body).expect("a JSON job"))
        .collect()
}

#[tokio::test]
async fn only_owner_keys_list_show_build_approve_and_release_digests_over_http() {
    let env = TestEnv::new().await;
    let p = setup(&env).await;
    let Built::AwaitingApproval { digest_id } = run_build(&env, p.period).await else {
        panic!("a draft")
    };
    let gateway = Gateway::start(&env).await;
    let owner = api_keys::create(&env.pool, "dashboard", Role::Owner)
        .await
        .expect("key");
    let oncall = api_keys::create(&env.pool, "pager", Role::Oncall)
        .await
        .expect("key");
    let enqueue = api_keys::create(&env.pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}/v1/digests{path}", gateway.base);
    let get = |path: String, key: String| {
        let request = http.get(url(&path)).bearer_auth(key);
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let post = |path: String, key: String, body: Value| {
        let request = http.post(url(&path)).bearer_auth(key).json(&body);
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let id = digest_id.to_string();
    let approve_path = format!("/{id}/approve");

    // Other roles are refused on every call, and nothing changes.
    for key in [&oncall.key, &enqueue.key] {
        assert_eq!(get(String::new(), key.clone()).await.0, 403);
        assert_eq!(get(format!("/{id}"), key.clone()).await.0, 403);
        let (status, _) = post(approve_path.clone(), key.clone(), json!({"by": "ana"})).await;
        assert_eq!(status, 403);
        let (status, _) = post("/build".into(), key.clone(), json!({"period": p.period})).await;
        assert_eq!(status, 403);
    }
    let anonymous = http.get(url("")).send().await.expect("answers");
    assert_eq!(anonymous.status(), 401);

    let (status, refused) = get("?state=bogus".into(), owner.key.clone()).await;
    assert_eq!(
        (status, refused["reason"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, listed) = get("?state=awaiting_approval".into(), owner.key.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(listed["digests"][0]["id"], json!(digest_id), "{listed}");
    let (status, shown) = get(format!("/{}", p.period), owner.key.clone()).await;
    assert_eq!(status, 200, "a period id shows its latest revision");
    assert_eq!(shown["id"], json!(digest_id));
    assert_eq!(shown["state"], "awaiting_approval");
    assert_eq!(shown["views"]["total"], 0);
    assert_eq!(
        get(format!("/{}", Uuid::new_v4()), owner.key.clone())
            .await
            .0,
        404
    );

    let (status, refused) =
        post(approve_path.clone(), owner.key.clone(), json!({"by": "bo"})).await;
    assert_eq!(status, 403, "bo is not ana's delegate");
    assert_eq!(refused["reason"], "not_owner_or_delegate");
    let (status, _) = post(approve_path.clone(), owner.key.clone(), json!({})).await;
    assert_eq!(status, 422, "who decides is required");
    let (status, approved) = post(
        approve_path.clone(),
        owner.key.clone(),
        json!({"by": "ana"}),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["approved_by"], "ana");
    assert_eq!(approved["enqueued"], true);
    let (status, again) = post(approve_path, owner.key.clone(), json!({"by": "ana"})).await;
    assert_eq!(
        (status, again["reason"].as_str()),
        (409, Some("not_awaiting_approval"))
    );

    let (status, built) = post(
        "/build".into(),
        owner.key.clone(),
        json!({"period": p.period}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(built["enqueued"], json!([p.period]));
    let (status, _) = post(
        "/build".into(),
        owner.key.clone(),
        json!({"period": Uuid::new_v4()}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post("/build".into(), owner.key.clone(), json!({"periods": []})).await;
    assert_eq!(status, 422);
    let queued = jobs(&env).await;
    assert_eq!(
        queued.len(),
        2,
        "approve and build each enqueued one job: {queued:?}"
    );
    for job in &queued {
        assert_eq!(job["report_period_id"], json!(p.period));
        assert_eq!(job["source"], "admin-api");
    }

    // A held client is released by its owner only; the closed period builds again.
    sqlx::query("INSERT INTO comms.digest_holds (client_id, reason) VALUES ($1, 'revenue_unverified: test')")
        .bind(p.client)
        .execute(&env.pool)
        .await
        .expect("hold");
    let release = format!("/clients/{}/release", p.client);
    let (status, _) = post(release.clone(), oncall.key.clone(), json!({"by": "ana"})).await;
    assert_eq!(status, 403);
    let (status, _) = post(release.clone(), owner.key.clone(), json!({"by": "bo"})).await;
    assert_eq!(status, 403);
    let (status, released) = post(release.clone(), owner.key.clone(), json!({"by": "ana"})).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["periods"], json!([p.period]));
    assert_eq!(released["enqueued"], true);
    assert_eq!(jobs(&env).await.len(), 1);
    let (status, _) = post(release, owner.key.clone(), json!({"by": "ana"})).await;
    assert_eq!(status, 404, "nothing held any more");

    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.api_audit WHERE path LIKE '/v1/digests%' AND NOT allowed",
    )
    .fetch_one(&env.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 9, "every refused call with a valid key is audited");
    gateway.stop().await;
    env.teardown().await;
}

/// Views of the digest so far: (total, contacts, first-view events in the outbox).
async fn views(env: &TestEnv, digest: Uuid) -> (i64, i64, i64) {
    let shown = view::find(&env.pool, digest)
        .await
        .expect("find")
        .expect("digest");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.event_outbox
         WHERE routing_key = 'digest.viewed' AND payload->'digest'->>'id' = $1::text",
    )
    .bind(digest)
    .fetch_one(&env.pool)
    .await
    .expect("outbox");
    (shown.views.total, shown.views.contacts, events)
}

#[tokio::test]
async fn a_recipients_signed_link_records_views_and_forged_altered_or_expired_links_are_refused() {
    let env = TestEnv::new().await;
    let p = setup(&env).await;
    let now = Utc::now();
    let Built::AwaitingApproval { digest_id } = build_at(&env, p.period, now).await else {
        panic!("a draft")
    };
    let approved_body: String =
        sqlx::query_scalar("SELECT email_body FROM comms.digests WHERE id = $1")
            .bind(digest_id)
            .fetch_one(&env.pool)
            .await
            .expect("digest");
    assert!(
        approved_body.contains(&format!("The full report: {}", link::PLACEHOLDER)),
        "the owner approves the wording with the placeholder: {approved_body}"
    );
    approve(&env.pool, digest_id, "ana").await.expect("approve");
    assert!(matches!(
        build_at(&env, p.period, now).await,
        Built::Published { .. }
    ));

    // Each send carries the contact's own link, recorded with the send.
    let email = sends(&env, "email").await;
    let portal = sends(&env, "portal").await;
    let view_url = email[0]["template"]["vars"]["view_url"]
        .as_str()
        .expect("the send carries view_url")
        .to_string();
    assert_eq!(portal[0]["template"]["vars"]["view_url"], json!(view_url));
    let public = env.settings.gateway.public_url.trim_end_matches('/');
    assert!(
        view_url.starts_with(&format!("{public}{}", link::PATH)),
        "{view_url}"
    );
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT view_url FROM comms.digest_sends WHERE digest_id = $1")
            .bind(digest_id)
            .fetch_all(&env.pool)
            .await
            .expect("sends");
    assert_eq!(recorded, [view_url.clone(), view_url.clone()]);
    let token = view_url.rsplit('/').next().expect("a token").to_string();

    let gateway = Gateway::start(&env).await;
    let http = reqwest::Client::new();
    let open = |token: String| {
        let request = http.get(format!("{}{}{token}", gateway.base, link::PATH));
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };

    let (status, page) = open(token.clone()).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("March report") && page.contains("Twelve new patients booked"),
        "{page}"
    );
    assert!(!page.contains("behind on invoices"), "{page}");
    assert_eq!(
        views(&env, digest_id).await,
        (1, 1, 1),
        "one view, the first: one event"
    );
    let (status, _) = open(token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        views(&env, digest_id).await,
        (2, 1, 1),
        "a second opening is a view, not a second first view"
    );

    // Altered (one letter, anywhere), forged with another secret, garbage: 403, recorded nowhere.
    let mut altered = token.clone().into_bytes();
    altered[20] = if altered[20] == b'a' { b'b' } else { b'a' };
    let secret = env
        .settings
        .digest
        .view_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    let genuine = |digest_id, contact_id, expires_at| {
        link::sign(
            &secret,
            &ViewLink {
                digest_id,
                contact_id,
                expires_at,
            },
        )
    };
    let later = Utc::now() + TimeDelta::days(1);
    let forged = link::sign(
        b"not the secret",
        &ViewLink {
            digest_id,
            contact_id: p.contact,
            expires_at: later,
        },
    );
    for bad in [
        String::from_utf8(altered).expect("ascii"),
        forged,
        "garbage".into(),
    ] {
        let (status, body) = open(bad).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("invalid_link"), "{body}");
    }
    // Signed, but expired: 410, recorded nowhere.
    let expired = genuine(digest_id, p.contact, Utc::now() - TimeDelta::minutes(1));
    let (status, body) = open(expired).await;
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("link_expired"), "{body}");
    // Signed for a digest that does not exist: 404.
    let (status, _) = open(genuine(Uuid::new_v4(), p.contact, later)).await;
    assert_eq!(status, 404);
    assert_eq!(
        views(&env, digest_id).await,
        (2, 1, 1),
        "refused links are not views"
    );

    // The views are what `commsctl digest show` and the admin API show.
    ctl_with(&env.settings, &["digest", "show", &digest_id.to_string()])
        .await
        .expect("commsctl digest show");
    let shown = view::find(&env.pool, p.period)
        .await
        .expect("find")
        .expect("digest");
    assert_eq!((shown.views.total, shown.views.contacts), (2, 1));
    assert!(shown.views.first_at.is_some());
    let event: Value = sqlx::query_scalar(
        "SELECT payload FROM comms.event_outbox WHERE routing_key = 'digest.viewed'",
    )
    .fetch_one(&env.pool)
    .await
    .expect("event");
    let schema: Value = serde_json::from_str(include_str!("../../../../docs/event.schema.json"))
        .expect("the event schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the event schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&event)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "digest.viewed is a valid event: {errors:?} {event}"
    );
    let event: comms_domain::events::LifecycleEvent =
        serde_json::from_value(event).expect("a comms.event.v1");
    assert_eq!(event.digest.expect("the digest").id, digest_id);
    gateway.stop().await;
    env.teardown().await;
}
