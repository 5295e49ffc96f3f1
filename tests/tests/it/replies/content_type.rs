//! The replies worker reads a Twilio inbound message by the content type the gateway forwarded,
//! through the same `comms_domain::webhook_body` the gateway verified it with: a form body
//! labelled JSON is never read as a form (no forged STOP), and what cannot be read is rejected
//! with its reason and kept.

use comms_tests::eventually;

use super::{OUR_NUMBER, PHONE, Replies, WAIT, sent_sms};

async fn rejected(r: &Replies) -> Vec<String> {
    sqlx::query_scalar("SELECT reason FROM internal.rejected_input ORDER BY id")
        .fetch_all(&r.fleet.env.pool)
        .await
        .expect("rejected")
}

#[tokio::test]
async fn an_inbound_sms_is_read_by_its_content_type_and_a_form_labelled_json_is_rejected() {
    let r = Replies::start().await;
    sent_sms(&r, "content-type-1").await;
    let stop = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", "SMct1")
        .append_pair("From", PHONE)
        .append_pair("To", OUR_NUMBER)
        .append_pair("Body", "STOP")
        .finish();
    r.inbound("inbound.twilio", "application/json", stop.as_bytes())
        .await;
    r.inbound("inbound.twilio", "text/plain", stop.as_bytes())
        .await;
    assert!(eventually(WAIT, || async { rejected(&r).await.len() == 2 }).await);
    // The two are decided side by side, so their rows may land in either order.
    let reasons = rejected(&r).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("unreadable_inbound: the body is not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("unsupported_content_type:")),
        "{reasons:?}"
    );
    assert_ne!(r.consent(PHONE).await.as_deref(), Some("opted_out"));

    // The same STOP as JSON, labelled JSON, is read and honoured.
    let json = serde_json::json!({
        "MessageSid": "SMct2", "From": PHONE, "To": OUR_NUMBER, "Body": "STOP"
    });
    r.inbound(
        "inbound.twilio",
        "application/json",
        json.to_string().as_bytes(),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            r.consent(PHONE).await.as_deref() == Some("opted_out")
        })
        .await
    );
    r.stop().await;
}
