//! The five figures as metrics: a real `comms-sequences` process (health and metrics server and
//! all) reads them from the report's fixed data set, and a scrape of its `/metrics` shows the
//! hand-computed values, with no owner or client anywhere in a label.

use comms_runtime::shutdown::Shutdown;
use comms_tests::{TestEnv, eventually, on_free_ports};

use super::WAIT;
use super::outcomes::fixed_data_set;

/// What the data set must show (all time: metrics are not cut by period).
const EXPECTED: &[&str] = &[
    // Replies answered after 30, 60 and 180 s; one not answered.
    r#"comms_figures_response_seconds_bucket{channel="sms",le="60"} 2"#,
    r#"comms_figures_response_seconds_bucket{channel="sms",le="300"} 3"#,
    r#"comms_figures_response_seconds_sum{channel="sms"} 270"#,
    r#"comms_figures_response_seconds_count{channel="sms"} 3"#,
    r#"comms_figures_replies_unanswered{channel="sms"} 1"#,
    // Approvals after 10, 600 and 1800 s.
    r#"comms_figures_approval_seconds_bucket{channel="sms",decision="approved",le="60"} 1"#,
    r#"comms_figures_approval_seconds_bucket{channel="sms",decision="approved",le="900"} 2"#,
    r#"comms_figures_approval_seconds_bucket{channel="sms",decision="approved",le="1800"} 3"#,
    r#"comms_figures_approval_seconds_sum{channel="sms",decision="approved"} 2410"#,
    // Reviews not attributed to a message (no channel).
    r#"comms_figures_review_outcomes_total{result="declined",channel="none"} 1"#,
    r#"comms_figures_review_outcomes_total{result="reviewed",channel="none"} 2"#,
    // A sale and a meeting attributed to messages, a meeting to a sequence only.
    r#"comms_figures_booked_total{kind="meeting",attributed="message"} 1"#,
    r#"comms_figures_booked_total{kind="sale",attributed="message"} 1"#,
    r#"comms_figures_booked_total{kind="meeting",attributed="sequence"} 1"#,
    r#"comms_figures_booked_value_total{currency="USD"} 1200.5"#,
];

#[tokio::test]
async fn a_scrape_of_comms_sequences_shows_the_five_figures_of_the_records() {
    let env = TestEnv::with(&[("COMMS__SEQUENCES__FIGURES_INTERVAL", "100ms")]).await;
    let client = fixed_data_set(&env).await;
    let settings = on_free_ports(&env.settings);
    let url = format!("http://{}/metrics", settings.http.listen);
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(comms_sequences::run_standalone(settings, shutdown.clone()));
    let http = reqwest::Client::new();
    let scrape = || async {
        let Ok(response) = http.get(&url).send().await else {
            return String::new();
        };
        response.text().await.unwrap_or_default()
    };
    // Other tests in this process refresh the same metrics from their own databases now and then;
    // wait until one scrape shows this database's figures.
    let shown = eventually(WAIT, || async {
        let text = scrape().await;
        EXPECTED.iter().all(|line| text.lines().any(|l| l == *line))
    })
    .await;
    let last = scrape().await;
    let figures: Vec<&str> = last
        .lines()
        .filter(|l| l.starts_with("comms_figures_"))
        .collect();
    assert!(shown, "expected {EXPECTED:#?}\nscraped {figures:#?}");
    assert!(
        last.contains("comms_figures_refreshed_timestamp_seconds"),
        "{figures:#?}"
    );
    for line in &figures {
        assert!(
            !line.contains("owner") && !line.contains(&client.to_string()),
            "no owner or client label: {line}"
        );
    }
    shutdown.cancel();
    worker
        .await
        .expect("worker task")
        .expect("comms-sequences stops cleanly");
    env.teardown().await;
}
