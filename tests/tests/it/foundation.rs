//! Migrations, the append-only event log and configuration against the real PostgreSQL, and how
//! broker connections are made.

use comms_tests::TestEnv;

#[tokio::test]
async fn migrations_apply_once_and_again_without_effect() {
    let env = TestEnv::new().await;
    // TestEnv::new already migrated this fresh database; a second run must find nothing to do.
    let applied = comms_domain::schema::migrate(&env.settings.database)
        .await
        .expect("second migrate");
    assert_eq!(applied, 0);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_schema IN ('comms', 'internal')",
    )
    .fetch_one(&env.pool)
    .await
    .expect("count tables");
    assert!(
        tables >= 16,
        "expected the data model, found {tables} tables"
    );
    env.teardown().await;
}

#[tokio::test]
async fn two_concurrent_migrations_into_a_missing_database_both_succeed() {
    let env = TestEnv::new().await;
    let fresh = format!("{}_fresh", env.database);
    let url = {
        use secrecy::ExposeSecret;
        let url = env.settings.database.url.expose_secret().to_string();
        let server = url
            .rsplit_once('/')
            .map(|(s, _)| s.to_string())
            .unwrap_or(url);
        format!("{server}/{fresh}")
    };
    let mut settings = env.settings.database.clone();
    settings.url = url.into();
    let (a, b) = tokio::join!(
        comms_domain::schema::migrate(&settings),
        comms_domain::schema::migrate(&settings)
    );
    a.expect("first pod migrates");
    b.expect("second pod migrates");
    let total = comms_domain::schema::MIGRATOR.iter().count();
    let pool = comms_runtime::db::connect(&settings)
        .await
        .expect("connect");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("bookkeeping");
    assert_eq!(
        applied as usize, total,
        "each migration recorded exactly once"
    );
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE \"{fresh}\" WITH (FORCE)"))
        .execute(&env.pool)
        .await
        .expect("drop fresh database");
    env.teardown().await;
}

#[tokio::test]
async fn the_event_log_refuses_update_delete_and_truncate() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO comms.message_events (event_type, actor, source) VALUES ('note', 'test', 'test')",
    )
    .execute(&env.pool)
    .await
    .expect("append is allowed");
    for statement in [
        "UPDATE comms.message_events SET actor = 'someone else'",
        "DELETE FROM comms.message_events",
        "TRUNCATE comms.message_events",
    ] {
        let err = sqlx::query(statement)
            .execute(&env.pool)
            .await
            .expect_err(statement);
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.message_events")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
    env.teardown().await;
}

#[tokio::test]
async fn an_approved_template_never_changes() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO comms.templates (name, version, channel, body, state, created_by, approved_by, approved_at)
         VALUES ('welcome', 1, 'sms', 'Hi', 'approved', 'ana', 'ana', now())",
    )
    .execute(&env.pool)
    .await
    .expect("insert");
    let err = sqlx::query("UPDATE comms.templates SET body = 'Changed' WHERE name = 'welcome'")
        .execute(&env.pool)
        .await
        .expect_err("approved body is frozen");
    assert!(err.to_string().contains("cannot change"), "{err}");
    env.teardown().await;
}

#[tokio::test]
async fn a_config_error_names_the_key() {
    let vars = [(
        "COMMS__CONSUMER__CONCURRENCY".to_string(),
        "many".to_string(),
    )]
    .into_iter()
    .collect();
    let err = comms_runtime::settings::Settings::load_from(&vars).expect_err("bad value");
    assert!(err.to_string().contains("consumer.concurrency"), "{err}");
}

#[tokio::test]
async fn connections_use_small_frames_and_a_large_message_still_crosses_intact() {
    let env = TestEnv::new().await;
    assert_eq!(
        env.connection.configuration().frame_max(),
        16 * 1024,
        "the broker accepted the proposed frame size"
    );
    // 200 KiB: thirteen frames of 16 KiB.
    let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    env.publish(&env.topology.send_exchange(), "send.email", &body)
        .await;
    let drained = env.drain(&env.topology.send_queue("email").name).await;
    assert_eq!(drained.len(), 1);
    assert!(drained[0].0 == body, "the body arrived byte for byte");
    env.teardown().await;
}

/// The strings a CHECK constraint of `comms.messages` on `column` allows, read from the database.
async fn allowed_by_check(pool: &sqlx::PgPool, column: &str) -> Vec<String> {
    let definition: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
         WHERE c.conrelid = 'comms.messages'::regclass AND c.contype = 'c'
           AND pg_get_constraintdef(c.oid) LIKE '%' || $1 || ' = ANY%'",
    )
    .bind(column)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("the CHECK constraint on {column}: {e}"));
    definition
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn message_states_in_code_are_exactly_those_the_database_allows() {
    use comms_domain::messages::state::{DeliveryState, OptOutState, ReplyState};
    let env = TestEnv::new().await;
    let names = |all: &[&str]| {
        all.iter()
            .map(|s| s.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        allowed_by_check(&env.pool, "delivery_state").await,
        names(
            &DeliveryState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        allowed_by_check(&env.pool, "reply_state").await,
        names(
            &ReplyState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        allowed_by_check(&env.pool, "opt_out_state").await,
        names(
            &OptOutState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    env.teardown().await;
}
