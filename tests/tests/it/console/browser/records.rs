//! The incidents and digests pages in headless Chromium: an owner reads an incident and resumes
//! its automation, reads a digest and approves it, each page checked by axe-core (and
//! photographed with `make console-screenshots`). Part of `make console-e2e`.

use comms_domain::api_keys::{self, Role};
use comms_tests::TestEnv;

use super::super::records::{client, digest, incident, period};
use super::{Console, Driver, accessible, click, page, screenshots, sign_in};

#[tokio::test]
#[ignore = "needs headless Chromium; run with `make console-e2e`"]
async fn incidents_and_digests_work_in_a_browser() {
    let env = TestEnv::new().await;
    let acme = client(&env, "Acme").await;
    let outage = incident(&env, acme).await;
    let june = period(&env, acme).await;
    let id = digest(&env, acme, june).await;
    let owner = api_keys::create(&env.pool, "ana", Role::Owner)
        .await
        .expect("key");
    let console = Console::start(&env).await;
    let base = console.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    sign_in(&browser, &base, &owner.key).await;

    click(&browser, "nav a[href='/console/incidents']").await;
    assert!(page(&browser).await.contains("Portal outage"));
    accessible(&browser, "incidents page").await;
    screenshots(&browser, "incidents").await;
    click(&browser, &format!("a[href='/console/incidents/{outage}']")).await;
    accessible(&browser, "incident page").await;
    screenshots(&browser, "incident").await;
    click(&browser, "form[action$='/resume-automation'] button").await;
    assert!(
        page(&browser).await.contains("automation_resumed"),
        "resumed from the page"
    );

    click(&browser, "nav a[href='/console/digests']").await;
    assert!(page(&browser).await.contains("Acme / Monthly report"));
    accessible(&browser, "digests page").await;
    screenshots(&browser, "digests").await;
    click(&browser, &format!("a[href='/console/digests/{id}']")).await;
    accessible(&browser, "digest page").await;
    screenshots(&browser, "digest").await;
    click(&browser, "form[action$='/approve'] button").await;
    let state: String = sqlx::query_scalar("SELECT state FROM comms.digests WHERE id = $1")
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .expect("digest");
    assert_eq!(state, "approved", "approved from the page");

    browser.close().await.expect("browser closes");
    drop(driver);
    console.stop().await;
    env.teardown().await;
}
