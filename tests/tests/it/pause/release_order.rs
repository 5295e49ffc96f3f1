//! The check that keeps released messages in creation order per recipient reads only the
//! released messages still on their way, never the recipient's whole history.

use comms_domain::pause::release::OLDER_RELEASE_PENDING;
use uuid::Uuid;

#[tokio::test]
async fn the_release_order_check_reads_the_index_of_releases_on_their_way() {
    let env = comms_tests::TestEnv::new().await;
    let mut conn = comms_tests::planner_without_seqscan(&env.pool).await;
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT m.id FROM comms.messages m WHERE m.id = ANY($1) AND {OLDER_RELEASE_PENDING}"
    ))
    .bind(vec![Uuid::new_v4(), Uuid::new_v4()])
    .fetch_all(&mut *conn)
    .await
    .expect("plan");
    comms_tests::assert_plan_reads(
        "the release order check",
        &plan,
        "messages_release_order_idx",
        "messages_contact_idx",
    );
    drop(conn);
    env.teardown().await;
}
