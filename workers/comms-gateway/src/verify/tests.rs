//! The verifiers against the providers' own published test vectors (Twilio's SDK suites:
//! twilio-python, twilio-node, twilio-go; SendGrid's: sendgrid-python, sendgrid-nodejs), copied
//! from the team's providers reference, plus the negative cases those suites assert.

use comms_domain::webhook_body::{self, Fields, Format, JSON};

use super::{sendgrid, twilio};

pub(super) const T_TOKEN: &[u8] = b"12345";
pub(super) const T_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

pub(super) fn default_params() -> Vec<(String, String)> {
    params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ])
}

/// A form request: the body's fields are `params` (the raw body only matters to `bodySHA256`).
fn twilio_ok(url: &str, params: &[(String, String)], body: &[u8], signature: &str) -> bool {
    let fields = Fields {
        format: Format::Form,
        fields: params.to_vec(),
    };
    twilio::verify(T_TOKEN, url, &fields, body, signature).is_ok()
}

/// A request with `body` read as `content_type` says, exactly as the gateway and workers read it.
pub(super) fn twilio_read(
    url: &str,
    content_type: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), twilio::Refusal> {
    let fields = webhook_body::twilio_fields(Some(content_type), body).expect("readable body");
    twilio::verify(T_TOKEN, url, &fields, body, signature)
}

#[test]
fn t1_the_basic_vector_signs_and_verifies() {
    let p = default_params();
    assert_eq!(
        twilio::sign(T_TOKEN, T_URL, &p),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    assert!(twilio_ok(T_URL, &p, b"", "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
}

#[test]
fn t1_negatives_are_refused() {
    let p = default_params();
    assert!(!twilio_ok(T_URL, &p, b"", "WRONG_SIGNATURE"));
    assert!(!twilio_ok(T_URL, &p, b"", ""));
    let unexpected = format!("{T_URL}&somethingUnexpected=true");
    assert!(!twilio_ok(
        &unexpected,
        &p,
        b"",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
    // A parameter added after signing breaks it too: every received parameter counts.
    let mut more = default_params();
    more.push(("Extra".into(), "1".into()));
    assert!(!twilio_ok(
        T_URL,
        &more,
        b"",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
    // Another token, same inputs.
    let form = Fields {
        format: Format::Form,
        fields: p.clone(),
    };
    assert!(twilio::verify(b"54321", T_URL, &form, b"", "RSOYDt4T1cUTdK1PDd93/VVr8B8=").is_err());
}

#[test]
fn t2_to_t5_port_forms_are_tolerated() {
    let p = default_params();
    // T2: the request URL has a port the signer left out.
    let t2 = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert!(twilio_ok(t2, &p, b"", "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    // T3: the signer added :443.
    assert!(twilio_ok(T_URL, &p, b"", "kvajT1Ptam85bY51eRf/AJRuM3w="));
    // T4: an explicit non-default port, signed as is.
    let t4 = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert!(twilio_ok(t4, &p, b"", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
    // T5: the signer added :80.
    let t5 = "http://mycompany.com/myapp.php?foo=1&bar=2";
    assert!(twilio_ok(t5, &p, b"", "0ZXoZLH/DfblKGATFgpif+LLRf4="));
}

#[test]
fn t6_t7_repeated_names_are_sorted_and_deduplicated() {
    let t6 = params(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]);
    assert!(twilio_ok(T_URL, &t6, b"", "IK+Dwps556ElfBT0I3Rgjkr1wJU="));
    for order in [
        [
            ("MessagingBinding.Address", "+1325xxxxxxx"),
            ("MessagingBinding.Address", "+1415xxxxxxx"),
        ],
        [
            ("MessagingBinding.Address", "+1415xxxxxxx"),
            ("MessagingBinding.Address", "+1325xxxxxxx"),
        ],
    ] {
        assert!(twilio_ok(
            T_URL,
            &params(&order),
            b"",
            "83O6e2vORAoJHUNzJjDWN1jz+BA="
        ));
    }
}

#[test]
fn t8_the_query_is_percent_encoded_like_a_whatwg_url() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazing";
    assert!(twilio_ok(
        url,
        &default_params(),
        b"",
        "TfZzewPq8wqrGlMfyAud8+/IvJ0="
    ));
}

#[test]
fn t9_to_t11_userinfo_is_part_of_the_url() {
    let p = default_params();
    let t9 = "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2";
    assert!(twilio_ok(t9, &p, b"", "CukzLTc1tT5dXEDIHm/tKBanW10="));
    assert!(twilio_ok(t9, &p, b"", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="));
    let t11 = "https://user@mycompany.com/myapp.php?foo=1&bar=2";
    assert!(twilio_ok(t11, &p, b"", "2YRLlVAflCqxaNicjMpJcSTgzSs="));
}

#[test]
fn t12_to_t14_json_bodies_are_checked_against_body_sha256() {
    let body = br#"{"property": "value", "boolean": true}"#;
    let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    let t12 = format!("{T_URL}&bodySHA256={hash}");
    assert_eq!(
        twilio_read(&t12, JSON, body, "a9nBmqA0ju/hNViExpshrM61xv4="),
        Ok(())
    );
    let t13 = format!("https://mycompany.com/myapp.php?bodySHA256={hash}");
    assert_eq!(
        twilio_read(&t13, JSON, body, "y77kIzt2vzLz71DgmJGsen2scGs="),
        Ok(())
    );
    let empty = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    let t14 = format!("{T_URL}&bodySHA256={empty}");
    assert_eq!(
        twilio_read(&t14, JSON, b"{}", "Ldidvp12m26NI7eqEvxnEpkd9Hc="),
        Ok(())
    );
    let charset = "application/json; charset=utf-8";
    assert_eq!(
        twilio_read(&t12, charset, body, "a9nBmqA0ju/hNViExpshrM61xv4="),
        Ok(())
    );

    // Negatives: a body that does not match the hash, and a URL cut short.
    assert_eq!(
        twilio_read(&t12, JSON, b"{}", "a9nBmqA0ju/hNViExpshrM61xv4="),
        Err(twilio::Refusal::BodyHashMismatch)
    );
    let cut = &t12[..t12.len() - 1];
    assert!(twilio_read(cut, JSON, body, "a9nBmqA0ju/hNViExpshrM61xv4=").is_err());
}

const S1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
const S1_SIGNATURE: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
const S1_TIMESTAMP: &str = "1600112502";
const S1_PAYLOAD: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

const S2_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
const S2_SIGNATURE: &str = "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5";
const S2_TIMESTAMP: &str = "1619651159";
const S2_PAYLOAD: &str = "[{\"email\":\"invalid@gmail.com\",\"event\":\"processed\",\"send_at\":0,\"sg_event_id\":\"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"timestamp\":1619651146},\r\n{\"email\":\"invalid@gmail.com\",\"event\":\"bounce\",\"ip\":\"167.89.101.76\",\"reason\":\"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp\",\"sg_event_id\":\"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"status\":\"5.2.2\",\"timestamp\":1619651147,\"tls\":1,\"type\":\"blocked\"}]\r\n";

#[test]
fn the_payloads_are_byte_exact() {
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    assert_eq!(S1_PAYLOAD.len(), 327);
    assert_eq!(
        hex(S1_PAYLOAD.as_bytes()),
        "ef3e4606385ea6adbc55fceb6117cf2784040cf145a010e5ef4afc2bc7c70452"
    );
    assert_eq!(S2_PAYLOAD.len(), 889);
    assert_eq!(
        hex(S2_PAYLOAD.as_bytes()),
        "fb73c7e6c15dd29e59ec6669322fab6b0e022d1e73cc60172807bca38e337822"
    );
}

#[test]
fn s1_verifies() {
    let key = sendgrid::parse_public_key(S1_KEY).expect("S1 key parses");
    assert!(sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        S1_PAYLOAD.as_bytes(),
        S1_SIGNATURE
    ));
}

#[test]
fn s1_negatives_are_refused() {
    let key = sendgrid::parse_public_key(S1_KEY).expect("S1 key parses");
    // (a) the payload without its trailing CRLF
    let trimmed = S1_PAYLOAD.trim_end_matches("\r\n");
    assert!(!sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        trimmed.as_bytes(),
        S1_SIGNATURE
    ));
    // (b) another payload
    assert!(!sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        b"payload",
        S1_SIGNATURE
    ));
    // (c) another timestamp
    assert!(!sendgrid::verify(
        &key,
        "timestamp",
        S1_PAYLOAD.as_bytes(),
        S1_SIGNATURE
    ));
    // (d) another signature
    let other = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
    assert!(!sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        S1_PAYLOAD.as_bytes(),
        other
    ));
    // (e) another public key
    let other_key = sendgrid::parse_public_key(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==",
    )
    .expect("key parses");
    assert!(!sendgrid::verify(
        &other_key,
        S1_TIMESTAMP,
        S1_PAYLOAD.as_bytes(),
        S1_SIGNATURE
    ));
    // Not base64, not DER.
    assert!(!sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        S1_PAYLOAD.as_bytes(),
        "%%%"
    ));
    assert!(!sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        S1_PAYLOAD.as_bytes(),
        "AAAA"
    ));
}

#[test]
fn s2_two_events_with_crlf_verify() {
    let key = sendgrid::parse_public_key(S2_KEY).expect("S2 key parses");
    assert!(sendgrid::verify(
        &key,
        S2_TIMESTAMP,
        S2_PAYLOAD.as_bytes(),
        S2_SIGNATURE
    ));
    let s1_key = sendgrid::parse_public_key(S1_KEY).expect("S1 key parses");
    assert!(!sendgrid::verify(
        &s1_key,
        S2_TIMESTAMP,
        S2_PAYLOAD.as_bytes(),
        S2_SIGNATURE
    ));
}

#[test]
fn a_pem_wrapped_key_is_accepted_and_garbage_is_not() {
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &S1_KEY[..64],
        &S1_KEY[64..]
    );
    let key = sendgrid::parse_public_key(&pem).expect("PEM parses");
    assert!(sendgrid::verify(
        &key,
        S1_TIMESTAMP,
        S1_PAYLOAD.as_bytes(),
        S1_SIGNATURE
    ));
    assert!(sendgrid::parse_public_key("not a key!").is_err());
    assert!(sendgrid::parse_public_key("AAAA").is_err());
}

#[test]
fn timestamps_outside_the_tolerance_are_stale() {
    use std::time::Duration;
    let five_minutes = Duration::from_secs(300);
    assert_eq!(
        sendgrid::timestamp_is_fresh("1000", 1200, five_minutes),
        Some(true)
    );
    assert_eq!(
        sendgrid::timestamp_is_fresh("1000", 1301, five_minutes),
        Some(false)
    );
    assert_eq!(
        sendgrid::timestamp_is_fresh("1400", 1000, five_minutes),
        Some(false)
    );
    assert_eq!(
        sendgrid::timestamp_is_fresh("soon", 1000, five_minutes),
        None
    );
}
