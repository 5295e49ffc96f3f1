//! The operator console (`/console`) over real HTTP, against the real broker and database: signing
//! in with API keys, the session cookie and its expiry, CSRF refusals and role limits
//! ([`session`]); pausing and resuming the real switch, approvals, tasks and a message's timeline
//! from the pages ([`actions`]). The browser-driven end-to-end run is not part of this suite.

mod actions;
mod browser;
mod dead;
mod records;
mod session;
mod speed;

use std::time::Duration;

use comms_domain::pause::Scope;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::fleet::SendFleet;
use comms_tests::{TestEnv, eventually};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A gateway serving `env`, and a browser-like client that keeps the console's cookies.
pub struct Console {
    pub url: String,
    http: reqwest::Client,
    /// The session token, once signed in.
    pub session: Option<String>,
    /// The session's CSRF token, read from a page's form.
    pub csrf: Option<String>,
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

/// An answer, read whole.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Page {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let set_cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let body = response.text().await.expect("body");
        Self {
            status,
            location,
            set_cookies,
            body,
        }
    }

    /// The value of the `Set-Cookie` for `name` (the part before the attributes), and the whole.
    pub fn cookie(&self, name: &str) -> Option<(String, String)> {
        self.set_cookies.iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| (value.to_string(), c.clone()))
        })
    }

    /// The first `csrf` hidden field of the page.
    pub fn csrf(&self) -> Option<String> {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_string())
    }

    pub fn is_login_redirect(&self) -> bool {
        self.status == StatusCode::SEE_OTHER && self.location.as_deref() == Some("/console/login")
    }
}

impl Console {
    pub async fn start(env: &TestEnv) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(comms_gateway::serve(listener, runtime, shutdown.clone()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            url,
            http,
            session: None,
            csrf: None,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("gateway task")
            .expect("gateway stops cleanly");
    }

    fn cookie_header(&self, extra: Option<&str>) -> String {
        let mut cookies: Vec<String> = self
            .session
            .iter()
            .map(|t| format!("comms_console={t}"))
            .collect();
        cookies.extend(extra.map(str::to_string));
        cookies.join("; ")
    }

    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header(COOKIE, self.cookie_header(None))
            .send()
            .await
            .expect("gateway answers");
        Page::read(response).await
    }

    /// POSTs a form as it is (no CSRF token added).
    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header(COOKIE, self.cookie_header(None))
            .form(form)
            .send()
            .await
            .expect("gateway answers");
        Page::read(response).await
    }

    /// POSTs a form with the session's CSRF token, as the console's own pages do.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().expect("signed in");
        let mut all = form.to_vec();
        all.push(("csrf", csrf.as_str()));
        self.post_raw(path, &all).await
    }

    /// Opens the login form and sends `key` with it; on success keeps the session.
    pub async fn login(&mut self, key: &str) -> Page {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let (login_token, _) = form.cookie("comms_console_login").expect("login cookie");
        let csrf = form.csrf().expect("login form token");
        assert_eq!(csrf, login_token, "the form repeats its cookie");
        let response = self
            .http
            .post(format!("{}/console/login", self.url))
            .header(COOKIE, format!("comms_console_login={login_token}"))
            .form(&[("key", key), ("csrf", csrf.as_str())])
            .send()
            .await
            .expect("gateway answers");
        let page = Page::read(response).await;
        if let Some((token, _)) = page.cookie("comms_console").filter(|(t, _)| !t.is_empty()) {
            self.session = Some(token);
            let home = self.get("/console").await;
            self.csrf = home.csrf();
        }
        page
    }
}

/// Waits (bounded) until the fleet's sender has applied a global pause; whether it did.
pub async fn sender_paused(fleet: &SendFleet) -> bool {
    eventually(Duration::from_secs(10), || async {
        fleet
            .switch
            .active()
            .iter()
            .any(|p| p.scope == Scope::Global)
    })
    .await
}

/// The audit rows of the console for `path`: (key name, allowed).
pub async fn audited(env: &TestEnv, path: &str) -> Vec<(String, bool)> {
    sqlx::query_as("SELECT key_name, allowed FROM comms.api_audit WHERE path = $1 ORDER BY id")
        .bind(path)
        .fetch_all(&env.pool)
        .await
        .expect("audit")
}
