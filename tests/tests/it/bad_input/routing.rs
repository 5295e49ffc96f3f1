//! The routing key must match the request's channel (docs/contract.md, "Publishing a request").

use comms_tests::fleet::{SendFleet, sms_request};

use super::{dead, rejected_reach};

#[tokio::test]
async fn an_sms_request_published_as_email_is_refused_not_sent() {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    let misrouted = sms_request("misrouted", "+14155552671", fleet.client_id);
    let body = serde_json::to_vec(&misrouted).expect("json");
    fleet.send_raw("send.email", &body).await;
    fleet
        .send(&sms_request("routed", "+14155552672", fleet.client_id))
        .await;

    assert!(
        fleet.reaches("routed", "sent").await,
        "a matching key is sent"
    );
    let rows = rejected_reach(&fleet.env, 1).await;
    let expected = "routing_key_mismatch: published with routing key `send.email` but channel \
                    is `sms`; publish it with routing key `send.sms`";
    assert_eq!(rows, [(expected.to_owned(), body.clone())]);
    assert_eq!(dead(&fleet.env, 1).await, [(body, expected.to_owned())]);
    assert_eq!(fleet.state("misrouted").await, None, "never recorded");
    let sent = fleet.sandbox().messages().await.expect("sandbox");
    assert!(sent.iter().all(|m| m.to != "+14155552671"), "never sent");
    fleet.stop().await;
}
