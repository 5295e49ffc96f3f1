//! Signing in and out, the cookie, expiry, CSRF and role limits.

use std::time::Duration;

use comms_domain::api_keys::{self, Role};
use comms_domain::pause::store;
use comms_tests::{TestEnv, eventually};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{Console, audited};

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn an_oncall_key_signs_in_and_out_with_a_locked_down_cookie() {
    let env = TestEnv::new().await;
    let key = api_keys::create(&env.pool, "olu", Role::Oncall)
        .await
        .expect("key");
    let mut console = Console::start(&env).await;
    assert!(
        console.get("/console").await.is_login_redirect(),
        "no session: to the login page"
    );

    let signed_in = console.login(&key.key).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/console"));
    let (token, cookie) = signed_in.cookie("comms_console").expect("session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        cookie.contains("Max-Age=28800"),
        "expires with the 8h default: {cookie}"
    );
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM comms.console_sessions")
        .fetch_all(&env.pool)
        .await
        .expect("sessions");
    assert_eq!(
        stored,
        vec![sha256_hex(&token)],
        "only the token's hash is stored"
    );

    let home = console.get("/console").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Nothing is paused"), "{}", home.body);
    assert!(home.body.contains("Signed in as <strong>olu</strong>"));
    assert!(
        !home.body.contains("/console/approvals"),
        "oncall is not offered approvals"
    );
    let live = console.get("/console/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.body.contains("Queues") && !live.body.contains("<html"));
    assert_eq!(
        audited(&env, "/console/login").await,
        vec![("olu".to_string(), true)]
    );

    let signed_out = console.post("/console/logout", &[]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    let (cleared, _) = signed_out.cookie("comms_console").expect("cookie cleared");
    assert!(cleared.is_empty());
    assert!(
        console.get("/console").await.is_login_redirect(),
        "the old token no longer opens the console"
    );
    assert_eq!(
        audited(&env, "/console/logout").await,
        vec![("olu".to_string(), true)]
    );
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn enqueue_keys_and_unknown_keys_cannot_sign_in() {
    let env = TestEnv::new().await;
    let app = api_keys::create(&env.pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    let mut console = Console::start(&env).await;

    let refused = console.login(&app.key).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("only oncall and owner keys can"));
    assert!(console.session.is_none());
    let unknown = console.login("cfk_not-a-key").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("not valid"));
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.console_sessions")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!(sessions, 0);
    assert_eq!(
        audited(&env, "/console/login").await,
        vec![("crm".to_string(), false)]
    );
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn a_session_expires() {
    let env = TestEnv::with(&[("COMMS__GATEWAY__CONSOLE_SESSION_TTL", "2s")]).await;
    let key = api_keys::create(&env.pool, "olu", Role::Oncall)
        .await
        .expect("key");
    let mut console = Console::start(&env).await;
    let signed_in = console.login(&key.key).await;
    let (_, cookie) = signed_in.cookie("comms_console").expect("cookie");
    assert!(cookie.contains("Max-Age=2;"), "{cookie}");
    assert_eq!(console.get("/console").await.status, StatusCode::OK);
    let expired = eventually(Duration::from_secs(10), || async {
        console.get("/console").await.is_login_redirect()
    })
    .await;
    assert!(expired, "after its expiry the session is refused");
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let env = TestEnv::new().await;
    let key = api_keys::create(&env.pool, "olu", Role::Oncall)
        .await
        .expect("key");
    let mut console = Console::start(&env).await;
    console.login(&key.key).await;
    let form = [("scope", "global"), ("reason", "forged")];

    let missing = console.post_raw("/console/pause", &form).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("security token"));
    let mut wrong = form.to_vec();
    wrong.push(("csrf", "0000"));
    let wrong = console.post_raw("/console/pause", &wrong).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        store::active(&env.pool).await.expect("switch").is_empty(),
        "nothing was paused"
    );
    assert_eq!(
        audited(&env, "/console/pause").await,
        vec![("olu".to_string(), false), ("olu".to_string(), false)],
        "refusals are audited with the key's name"
    );

    // The login form too: a key sent without the form's own token opens no session.
    let forged = console
        .post_raw("/console/login", &[("key", key.key.as_str())])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookie("comms_console").is_none());
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn roles_limit_pages_and_a_revoked_key_ends_its_sessions() {
    let env = TestEnv::new().await;
    let key = api_keys::create(&env.pool, "olu", Role::Oncall)
        .await
        .expect("key");
    let mut console = Console::start(&env).await;
    console.login(&key.key).await;

    let approvals = console.get("/console/approvals").await;
    assert_eq!(approvals.status, StatusCode::FORBIDDEN);
    assert!(approvals.body.contains("has role oncall"));
    let decide = console
        .post("/console/approvals/anything/approve", &[])
        .await;
    assert_eq!(decide.status, StatusCode::FORBIDDEN);
    assert_eq!(
        audited(&env, "/console/approvals/anything/approve").await,
        vec![("olu".to_string(), false)]
    );

    api_keys::revoke(&env.pool, "olu").await.expect("revoke");
    assert!(
        console.get("/console").await.is_login_redirect(),
        "a revoked key's session stops at once"
    );
    console.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn the_dead_letter_page_lists_refusals_with_their_reasons() {
    let env = TestEnv::new().await;
    let key = api_keys::create(&env.pool, "olu", Role::Oncall)
        .await
        .expect("key");
    sqlx::query(
        "INSERT INTO internal.rejected_input (queue, routing_key, reason, payload)
         VALUES ('comms.send.sms', 'send.sms', 'invalid_request: body is not JSON', '\\x00ff')",
    )
    .execute(&env.pool)
    .await
    .expect("refusal");
    let mut console = Console::start(&env).await;
    console.login(&key.key).await;
    let dead = console.get("/console/dead").await;
    assert_eq!(dead.status, StatusCode::OK);
    assert!(dead.body.contains("invalid_request: body is not JSON"));
    assert!(dead.body.contains("action=\"/console/dead/replay\""));
    let home = console.get("/console").await;
    assert!(home.body.contains("1 inputs refused in the last day"));
    console.stop().await;
    env.teardown().await;
}
