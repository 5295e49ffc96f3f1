//! Email through an SMTP relay (`COMMS__PROVIDERS__EMAIL=smtp`) instead of SendGrid, against a
//! real SMTP conversation with a loopback sink.

use comms_tests::fleet::SendFleet;
use comms_tests::smtp_sink::SmtpSink;
use mailparse::MailHeaderMap;
use serde_json::json;

async fn fleet(sink: &SmtpSink) -> SendFleet {
    fleet_with(sink, &[]).await
}

async fn fleet_with(sink: &SmtpSink, extra: &[(&str, &str)]) -> SendFleet {
    let port = sink.port().to_string();
    let mut overrides = vec![
        ("COMMS__PROVIDERS__EMAIL", "smtp"),
        ("COMMS__PROVIDERS__SMTP__HOST", "127.0.0.1"),
        ("COMMS__PROVIDERS__SMTP__PORT", port.as_str()),
        ("COMMS__PROVIDERS__SMTP__TLS", "none"),
    ];
    overrides.extend_from_slice(extra);
    let fleet = SendFleet::start(&overrides).await;
    fleet
        .approved_template(
            "report",
            "email",
            Some("Your {{ month }} report"),
            "Hello {{ name }}",
        )
        .await;
    fleet
}

fn email(key: &str, fleet: &SendFleet) -> serde_json::Value {
    json!({
        "idempotency_key": key, "channel": "email", "kind": "review_request",
        "recipient": { "email": "dana@example.com" },
        "template": { "name": "report", "vars": { "name": "Dana", "month": "March" } },
        "record": { "type": "client", "id": fleet.client_id.to_string() },
        "consent": { "basis": "express", "source": "checkout", "captured_at": "2026-11-01T10:00:00Z" },
        "owner": "ana", "source": "reporting", "trigger": "report.published"
    })
}

#[tokio::test]
async fn email_goes_out_through_the_smtp_relay_with_reply_and_unsubscribe_headers() {
    let sink = SmtpSink::start().await;
    let fleet = fleet(&sink).await;
    fleet.send(&email("smtp-1", &fleet)).await;
    assert!(fleet.reaches("smtp-1", "sent").await);
    let received = sink.received();
    assert_eq!(received.len(), 1);
    let data = &received[0];
    for expected in [
        "Subject: Your March report",
        "Reply-To: reply+",
        "Message-ID: <comms.",
        "List-Unsubscribe: <http",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Hello Dana",
    ] {
        assert!(data.contains(expected), "{expected} missing in:\n{data}");
    }
    let provider: String =
        sqlx::query_scalar("SELECT provider FROM comms.messages WHERE idempotency_key = 'smtp-1'")
            .fetch_one(&fleet.env.pool)
            .await
            .expect("provider");
    assert_eq!(provider, "smtp");
    fleet.stop().await;
}

#[tokio::test]
async fn a_relay_refusal_fails_at_once_and_a_temporary_one_is_retried() {
    let sink = SmtpSink::start().await;
    let fleet = fleet(&sink).await;
    sink.refuse_next_recipient("550 5.1.1 no such user");
    fleet.send(&email("smtp-refused", &fleet)).await;
    assert!(fleet.reaches("smtp-refused", "failed").await);
    let (reason, attempts) = fleet.failure("smtp-refused").await;
    assert!(
        reason
            .expect("reason")
            .starts_with("provider_rejected: smtp relay refused")
    );
    assert_eq!(attempts, 1);

    sink.refuse_next_recipient("451 4.3.0 try again later");
    fleet.send(&email("smtp-later", &fleet)).await;
    assert!(fleet.reaches("smtp-later", "sent").await);
    assert_eq!(
        fleet.failure("smtp-later").await.1,
        2,
        "retried once, then accepted"
    );
    fleet.stop().await;
}

/// What a mail client sees: the raw message through a MIME parser, not string matching.
#[tokio::test]
async fn the_relayed_message_is_valid_mime_with_the_sendgrid_display_name() {
    let sink = SmtpSink::start().await;
    let fleet = fleet_with(
        &sink,
        &[
            ("COMMS__PROVIDERS__SENDGRID__FROM_NAME", "Acme Agency"),
            ("COMMS__PROVIDERS__SMTP__FROM", "updates@example.com"),
        ],
    )
    .await;
    fleet
        .approved_template(
            "greeting",
            "email",
            Some("Grüße, {{ name }}"),
            "Hello {{ name }}, your report is ready. Grüße, à bientôt ✓",
        )
        .await;
    let mut request = email("smtp-mime", &fleet);
    request["template"] = json!({ "name": "greeting", "vars": { "name": "Dana" } });
    fleet.send(&request).await;
    assert!(fleet.reaches("smtp-mime", "sent").await);
    let received = sink.received();
    let raw = received.first().expect("one message relayed");
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("a MIME message");
    let header = |name: &str| {
        parsed
            .headers
            .get_first_value(name)
            .unwrap_or_else(|| panic!("{name} missing in:\n{raw}"))
    };
    assert_eq!(header("MIME-Version"), "1.0");
    assert_eq!(parsed.ctype.mimetype, "text/plain");
    assert!(parsed.ctype.charset.eq_ignore_ascii_case("utf-8"));
    // Mostly ASCII text with a few accents: lettre picks quoted-printable, as the issue saw.
    assert_eq!(
        header("Content-Transfer-Encoding").to_ascii_lowercase(),
        "quoted-printable"
    );
    assert_eq!(
        parsed.get_body().expect("decodable body").trim_end(),
        "Hello Dana, your report is ready. Grüße, à bientôt ✓"
    );
    assert_eq!(header("Subject"), "Grüße, Dana");
    let from = mailparse::addrparse_header(parsed.headers.get_first_header("From").expect("From"))
        .expect("a From address");
    match from.clone().extract_single_info() {
        Some(info) => {
            assert_eq!(info.display_name.as_deref(), Some("Acme Agency"));
            assert_eq!(info.addr, "updates@example.com");
        }
        None => panic!("From is not one mailbox: {from:?}"),
    }
    fleet.stop().await;
}
