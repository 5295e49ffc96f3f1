//! The console end to end in headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), with axe-core checking each page's accessibility. Needs the browser, so it
//! runs on demand (`make console-e2e`, which CI runs), not in the default suite. With
//! `CONSOLE_SCREENSHOTS=<dir>` it also saves desktop and phone screenshots (`make
//! console-screenshots` refreshes the ones in `docs/console/`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use comms_domain::api_keys::{self, Role};
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{Console, sender_paused};

mod records;

const PHONE: &str = "+14155552671";
const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/e2e/node_modules/axe-core/axe.min.js"
);

/// A chromedriver of this test's own on a free port, stopped (by its handle) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("address").port()
        };
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let up = eventually(Duration::from_secs(20), || async {
            http.get(format!("{url}/status")).send().await.is_ok()
        })
        .await;
        assert!(up, "chromedriver answers");
        Self { child, url }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a headless Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs axe-core on the page and fails on any violation (WCAG 2 A/AA rules, contrast included).
async fn accessible(browser: &Client, what: &str) {
    let axe = std::fs::read_to_string(AXE).expect("axe-core (npm ci --prefix tests/e2e)");
    browser.execute(&axe, vec![]).await.expect("axe loads");
    let result = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'best-practice'] })
                .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' ('
                    + v.nodes.map(n => n.target.join(' ')).join(', ') + ')')))
                .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .expect("axe runs");
    let violations: Vec<String> = serde_json::from_value(result).expect("violations");
    assert!(violations.is_empty(), "{what}: {violations:#?}");
}

async fn screenshots(browser: &Client, name: &str) {
    let Ok(dir) = std::env::var("CONSOLE_SCREENSHOTS") else {
        return;
    };
    for (size, width, height) in [("desktop", 1280, 900), ("phone", 390, 844)] {
        browser
            .set_window_size(width, height)
            .await
            .expect("resize");
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(format!("{dir}/{name}-{size}.png"), png).expect("write screenshot");
    }
    browser.set_window_size(1280, 900).await.expect("resize");
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Clicks a button that submits a form, and waits until the browser shows the answer (a new
/// document: the old one carried a marker the new one lacks).
async fn click(browser: &Client, css: &str) {
    browser
        .execute("window.__before_submit = true;", vec![])
        .await
        .expect("mark the page");
    browser
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
    let loaded = eventually(Duration::from_secs(10), || async {
        let marked = browser
            .execute(
                "return document.readyState === 'complete' && window.__before_submit !== true;",
                vec![],
            )
            .await;
        matches!(marked, Ok(Value::Bool(true)))
    })
    .await;
    assert!(loaded, "the answer to {css} loads");
}

async fn page(browser: &Client) -> String {
    browser.source().await.expect("page source")
}

async fn sign_in(browser: &Client, base: &str, key: &str) -> String {
    browser
        .goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    fill(browser, "#key", key).await;
    click(browser, "form button[type=submit]").await;
    page(browser).await
}

async fn sign_out(browser: &Client) {
    click(browser, ".signout button").await;
}

#[tokio::test]
#[ignore = "needs headless Chromium; run with `make console-e2e`"]
async fn the_console_works_end_to_end_in_a_browser() {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    let pool = fleet.env.pool.clone();
    let oncall = api_keys::create(&pool, "olu", Role::Oncall)
        .await
        .expect("key");
    let owner = api_keys::create(&pool, "ana", Role::Owner)
        .await
        .expect("key");
    let app = api_keys::create(&pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    let console = Console::start(&fleet.env).await;
    let base = console.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // An enqueue key cannot sign in.
    let refused = sign_in(&browser, &base, &app.key).await;
    assert!(refused.contains("This key cannot sign in"), "{refused}");
    accessible(&browser, "login page").await;
    screenshots(&browser, "login").await;

    // On-call signs in; the first Tab reaches the skip link.
    let home = sign_in(&browser, &base, &oncall.key).await;
    assert!(home.contains("Nothing is paused"), "{home}");
    screenshots(&browser, "home").await;
    browser
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys("\u{E004}")
        .await
        .expect("tab");
    let focused = browser.active_element().await.expect("focus");
    assert_eq!(focused.text().await.expect("text"), "Skip to content");
    accessible(&browser, "home page").await;

    // Pause globally from the page, through the confirmation step.
    browser
        .goto(&format!("{base}/console/pause"))
        .await
        .expect("pause page");
    fill(&browser, "#reason", "provider incident").await;
    click(&browser, "form[action='/console/pause/confirm'] button").await;
    let confirm = page(&browser).await;
    assert!(confirm.contains("All automated sending stops"), "{confirm}");
    accessible(&browser, "pause confirmation").await;
    click(&browser, "button.danger").await;
    assert!(
        sender_paused(&fleet).await,
        "the page's pause reached the sender"
    );
    fleet
        .send(&sms_request("held-1", PHONE, fleet.client_id))
        .await;
    assert!(
        fleet.reaches("held-1", "held").await,
        "sent meanwhile: held"
    );
    browser.refresh().await.expect("reload");
    assert!(page(&browser).await.contains("<dd>1 message(s)</dd>"));
    accessible(&browser, "pause page").await;
    screenshots(&browser, "pause").await;

    // The home page shows the pause without a reload.
    browser
        .goto(&format!("{base}/console"))
        .await
        .expect("home");
    fleet
        .send(&sms_request("held-2", PHONE, fleet.client_id))
        .await;
    assert!(fleet.reaches("held-2", "held").await);
    let live = eventually(Duration::from_secs(15), || async {
        page(&browser).await.contains("<td class=\"held\">2</td>")
    })
    .await;
    assert!(live, "the live part refreshed to two held messages");

    // Resume from the page: each held message goes out once.
    browser
        .goto(&format!("{base}/console/pause"))
        .await
        .expect("pause page");
    fill(&browser, "#resume-reason-1", "provider recovered").await;
    click(&browser, "form[action='/console/resume'] button").await;
    assert!(fleet.reaches("held-1", "sent").await);
    assert!(fleet.reaches("held-2", "sent").await);
    let sent = eventually(Duration::from_secs(5), || async {
        fleet.sandbox().messages().await.expect("sandbox").len() == 2
    })
    .await;
    assert!(sent, "each held message sent once");

    // A POST without the CSRF token is refused, even from the signed-in browser.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/console/pause', { method: 'POST',
                 headers: { 'content-type': 'application/x-www-form-urlencoded' },
                 body: 'scope=global&reason=forged' }).then(r => done(r.status));",
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(status, Value::from(403));
    assert!(fleet.switch.active().is_empty(), "nothing paused");

    // Find a message and read its timeline.
    browser
        .goto(&format!("{base}/console/messages"))
        .await
        .expect("messages");
    fill(&browser, "#q", "held-1").await;
    click(&browser, "form[action='/console/messages'] button").await;
    let timeline = page(&browser).await;
    for step in ["held", "released", "sent"] {
        assert!(
            timeline.contains(&format!("<strong class=\"event\">{step}</strong>")),
            "{step}: {timeline}"
        );
    }
    accessible(&browser, "message page").await;
    screenshots(&browser, "message").await;
    sign_out(&browser).await;

    // The owner approves one message and rejects another with a reason, then closes a task.
    for (key, kind) in [("ok-1", "incident_notice"), ("no-1", "report_digest")] {
        let mut request = sms_request(key, PHONE, fleet.client_id);
        request["kind"] = json!(kind);
        fleet.send(&request).await;
        assert!(fleet.reaches(key, "awaiting_approval").await);
    }
    sign_in(&browser, &base, &owner.key).await;
    browser
        .goto(&format!("{base}/console/approvals"))
        .await
        .expect("approvals");
    let approvals = page(&browser).await;
    assert!(approvals.contains("+14•••71") && !approvals.contains(PHONE));
    accessible(&browser, "approvals page").await;
    screenshots(&browser, "approvals").await;
    click(&browser, "form[action$='/approve'] button").await;
    assert!(
        fleet.reaches("ok-1", "sent").await,
        "approved from the page"
    );
    fill(
        &browser,
        "form[action$='/reject'] input[name=reason]",
        "stale figures",
    )
    .await;
    click(&browser, "form[action$='/reject'] button").await;
    assert!(
        fleet.reaches("no-1", "blocked").await,
        "rejected from the page"
    );

    browser
        .goto(&format!("{base}/console/tasks"))
        .await
        .expect("tasks");
    accessible(&browser, "tasks page").await;
    screenshots(&browser, "tasks").await;
    let open_before = fleet.open_tasks("no-1").await + fleet.open_tasks("ok-1").await;
    let task: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO comms.tasks (owner, title, next_action) VALUES ('ana', 'Call Acme back', 'call')
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("task");
    browser.refresh().await.expect("reload");
    click(
        &browser,
        &format!("form[action='/console/tasks/{task}/close'] button"),
    )
    .await;
    let state: String = sqlx::query_scalar("SELECT state FROM comms.tasks WHERE id = $1")
        .bind(task)
        .fetch_one(&pool)
        .await
        .expect("task");
    assert_eq!(state, "done", "closed from the page");
    assert_eq!(open_before, 0, "deciding closed the approval tasks");

    // The session expires: once its time has passed the console asks for a key again.
    sqlx::query("UPDATE comms.console_sessions SET expires_at = now() WHERE ended_at IS NULL")
        .execute(&pool)
        .await
        .expect("expire");
    browser
        .goto(&format!("{base}/console"))
        .await
        .expect("home");
    let url = browser.current_url().await.expect("url");
    assert_eq!(url.path(), "/console/login", "an expired session signs out");

    browser.close().await.expect("browser closes");
    drop(driver);
    console.stop().await;
    fleet.stop().await;
}
