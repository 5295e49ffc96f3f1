//! The home page with a million messages: every figure comes from an index, so it renders in
//! under 100 ms. Seeding takes a while, so this runs on demand (`make console-speed`), not in the
//! default suite.

use std::time::{Duration, Instant};

use comms_domain::api_keys::{self, Role};
use comms_tests::TestEnv;
use reqwest::StatusCode;

use super::Console;

const MESSAGES: i64 = 1_000_000;

#[tokio::test]
#[ignore = "seeds a million messages; run with `make console-speed`"]
async fn the_home_page_renders_in_under_100ms_with_a_million_messages() {
    let env = TestEnv::new().await;
    let contact: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('x') RETURNING id")
            .fetch_one(&env.pool)
            .await
            .expect("contact");
    // Spread over a month, mostly delivered, with some failed and held, as a busy fleet has.
    sqlx::query(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
             owner, source, trigger, record_type, record_id, template_name, delivery_state, request,
             created_at, updated_at, dispatched_at)
         SELECT 'speed-' || n, (ARRAY['sms', 'email'])[1 + n % 2], 'transactional', $1,
                '+14155550000', 'ana', 'speed', 'speed', 'client', gen_random_uuid(), 'welcome',
                CASE WHEN n % 100 = 0 THEN 'failed' WHEN n % 1000 = 1 THEN 'held' ELSE 'delivered' END,
                '{}'::jsonb, t, t, t
         FROM generate_series(1, $2) AS n,
              LATERAL (SELECT now() - (n * interval '2.5 seconds')) AS s (t)",
    )
    .bind(contact)
    .bind(MESSAGES)
    .execute(&env.pool)
    .await
    .expect("seed");
    sqlx::query("ANALYZE comms.messages")
        .execute(&env.pool)
        .await
        .expect("analyze");
    let key = api_keys::create(&env.pool, "olu", Role::Oncall)
        .await
        .expect("key");
    let mut console = Console::start(&env).await;
    console.login(&key.key).await;

    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let page = console.get("/console").await;
        times.push(started.elapsed());
        assert_eq!(page.status, StatusCode::OK);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!("home page with {MESSAGES} messages: median {median:?}, all {times:?}");
    assert!(
        median < Duration::from_millis(100),
        "median {median:?} (all {times:?})"
    );
    console.stop().await;
    env.teardown().await;
}
