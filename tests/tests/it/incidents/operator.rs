//! `commsctl incident …` driven as the on-call engineer and the owner would: declare, verify,
//! resume-automation, resolve, show and list, against the real worker, broker and database.

use comms_domain::approvals::Decision;
use comms_domain::pause::Scope;
use comms_tests::eventually;
use uuid::Uuid;

use super::setup::{IncidentFleet, WAIT};
use crate::approvals::ctl_with;

async fn ctl(f: &IncidentFleet, args: &[&str]) -> anyhow::Result<()> {
    ctl_with(&f.fleet.env.settings, args).await
}

/// `commsctl incident declare --id ID --title Outage --severity major --owner ana`, then `extra`.
async fn declare(f: &IncidentFleet, id: &str, extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec![
        "incident",
        "declare",
        "--id",
        id,
        "--title",
        "Outage",
        "--severity",
        "major",
        "--owner",
        "ana",
    ];
    args.extend_from_slice(extra);
    ctl(f, &args).await
}

async fn incident_paused(f: &IncidentFleet, client: Uuid, incident: Uuid) -> bool {
    f.fleet
        .switch
        .active()
        .iter()
        .any(|p| p.scope == Scope::Client(client) && p.incident == Some(incident))
}

#[tokio::test]
async fn commsctl_declares_verifies_resumes_and_resolves_an_incident() {
    let f = IncidentFleet::start(&[]).await;
    let (client, _) = f.client("Acme", 1, "express").await;
    let id = Uuid::new_v4();
    let (id_arg, client_arg) = (id.to_string(), client.to_string());

    // A declaration naming no one is refused before anything is published.
    let refused = declare(&f, &id_arg, &[]).await;
    let why = format!("{:#}", refused.expect_err("no affected client"));
    assert!(
        why.contains("affected must name at least one client"),
        "{why}"
    );
    assert_eq!(f.notice_state(id, 1).await, None);
    // So is one naming a client the fleet does not know: the operator is told which.
    let stranger = Uuid::new_v4().to_string();
    let refused = declare(&f, &id_arg, &["--client", &stranger]).await;
    let why = format!("{:#}", refused.expect_err("unknown client"));
    assert!(
        why.contains(&format!("affected: unknown client {stranger}")),
        "{why}"
    );

    declare(
        &f,
        &id_arg,
        &[
            "--client",
            &client_arg,
            "--template",
            "incident-notice",
            "--var",
            "what=conversion tracking is delayed",
            "--summary-internal",
            "db-7 failover",
        ],
    )
    .await
    .expect("declare");
    assert!(
        eventually(WAIT, || incident_paused(&f, client, id)).await,
        "the declared, unverified incident pauses its client"
    );
    let early = ctl(
        &f,
        &["incident", "resume-automation", &id_arg, "--by", "ana"],
    )
    .await;
    let why = format!("{:#}", early.expect_err("facts not verified"));
    assert!(why.contains("not verified"), "{why}");

    ctl(&f, &["incident", "verify", &id_arg])
        .await
        .expect("verify");
    assert!(f.wait_notice(id, 2, "awaiting_approval").await);
    assert!(
        incident_paused(&f, client, id).await,
        "verify does not lift the pause by itself"
    );
    f.decide_proof(id, 2, Decision::Approve).await;
    assert!(f.wait_notice(id, 2, "done").await);

    let stranger = ctl(
        &f,
        &["incident", "resume-automation", &id_arg, "--by", "bo"],
    )
    .await;
    assert!(stranger.is_err(), "only the owner or a delegate resumes");
    ctl(
        &f,
        &["incident", "resume-automation", &id_arg, "--by", "ana"],
    )
    .await
    .expect("resume");
    // The decision is committed; the sender's switch hears of it by notification or its poll.
    assert!(
        eventually(WAIT, || async { !incident_paused(&f, client, id).await }).await,
        "the decision lifts it"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.pause_events WHERE action = 'resume' AND actor = 'ana' AND scope_value = $1",
    )
    .bind(&client_arg)
    .fetch_one(f.pool())
    .await
    .expect("audit");
    assert_eq!(audited, 1);

    ctl(
        &f,
        &[
            "incident",
            "resolve",
            &id_arg,
            "--var",
            "what=tracking is back",
        ],
    )
    .await
    .expect("resolve");
    let shown = comms_incidents::ops::show(f.pool(), id)
        .await
        .expect("show");
    assert_eq!(shown.incident.state, "resolved");
    assert_eq!(shown.incident.sequence, 3);
    assert!(shown.time_to_resolution_seconds.is_some());
    // The resolution notice takes the resolution template (not the incident's own, whose wording
    // is for an ongoing incident), with the latest variables and the ones given.
    let resolution = eventually(WAIT, || async {
        let notice: Option<(String, String, serde_json::Value)> = sqlx::query_as(
            "SELECT purpose, template_base, vars FROM comms.incident_notices
             WHERE incident_id = $1 AND sequence = 3",
        )
        .bind(id)
        .fetch_optional(f.pool())
        .await
        .expect("notice");
        notice.is_some_and(|(purpose, base, vars)| {
            purpose == "resolution"
                && base == "incident-resolved"
                && vars["what"] == "tracking is back"
        })
    })
    .await;
    assert!(resolution, "the resolution notice uses incident-resolved");
    let after = ctl(&f, &["incident", "update", &id_arg, "--severity", "minor"]).await;
    let why = format!("{:#}", after.expect_err("resolved"));
    assert!(why.contains("resolved"), "{why}");
    // Declaring it again would publish a stale first event that changes nothing: refused.
    let again = declare(&f, &id_arg, &["--client", &client_arg]).await;
    let why = format!("{:#}", again.expect_err("declared before"));
    assert!(why.contains("is already declared"), "{why}");
    ctl(&f, &["incident", "show", &id_arg, "--json"])
        .await
        .expect("show");
    ctl(&f, &["incident", "list"]).await.expect("list");
    let unknown = Uuid::new_v4().to_string();
    let missing = ctl(&f, &["incident", "show", &unknown]).await;
    assert!(format!("{:#}", missing.expect_err("unknown")).contains("no incident"));
    f.stop().await;
}
