//! The gateway's `/readyz` follows its broker connection: a gateway that would answer every
//! webhook 503 reports itself not ready, so a load balancer stops routing to it, and ready again
//! once the broker is back — without any request having to notice first. The broker is cut with a
//! proxy in front of the shared RabbitMQ, never stopped.

use std::time::Duration;

use comms_tests::eventually;

use super::Gateway;

const WAIT: Duration = Duration::from_secs(30);

/// `/readyz`'s status and its `gateway.broker` check (`None` when absent).
async fn readiness(gw: &Gateway) -> (u16, Option<bool>) {
    let Ok(response) = gw.http.get(format!("{}/readyz", gw.url)).send().await else {
        return (0, None);
    };
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["checks"]["gateway.broker"]["ok"].as_bool())
}

#[tokio::test]
async fn readyz_turns_503_while_the_broker_is_unreachable_and_200_when_it_is_back() {
    let (gw, proxy) = Gateway::behind_proxy().await;
    let ready = eventually(WAIT, || async { readiness(&gw).await == (200, Some(true)) }).await;
    assert!(ready, "ready once connected: {:?}", readiness(&gw).await);

    proxy.cut();
    let not_ready = eventually(WAIT, || async {
        readiness(&gw).await == (503, Some(false))
    })
    .await;
    assert!(
        not_ready,
        "with the broker unreachable /readyz is 503: {:?}",
        readiness(&gw).await
    );
    // Liveness does not follow the broker: a restart would not cure it.
    let live = gw.http.get(format!("{}/healthz", gw.url)).send().await;
    assert_eq!(live.expect("answer").status(), 200);

    proxy.restore();
    let back = eventually(WAIT, || async { readiness(&gw).await == (200, Some(true)) }).await;
    assert!(
        back,
        "ready again once the broker is back: {:?}",
        readiness(&gw).await
    );
    gw.stop().await;
}
