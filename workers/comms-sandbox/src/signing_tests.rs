//! Signature tests against the providers' official vectors (copied from the Twilio and SendGrid
//! SDK test suites via the team's providers reference) plus round trips of our own signer.

use super::*;

const T_TOKEN: &str = "12345";
const T_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const T_PARAMS: [(&str, &str); 5] = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
];

#[test]
fn twilio_official_vector_t1() {
    assert_eq!(
        twilio_signature(T_TOKEN, T_URL, &T_PARAMS),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    assert!(verify_twilio_signature(
        T_TOKEN,
        T_URL,
        &T_PARAMS,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
    assert!(!verify_twilio_signature(
        T_TOKEN,
        T_URL,
        &T_PARAMS,
        "WRONG_SIGNATURE"
    ));
    let unexpected = format!("{T_URL}&somethingUnexpected=true");
    assert!(!verify_twilio_signature(
        T_TOKEN,
        &unexpected,
        &T_PARAMS,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
}

#[test]
fn twilio_official_vectors_port_forms() {
    let with_443 = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(
        twilio_signature(T_TOKEN, with_443, &T_PARAMS),
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    ); // T3
    let http_1234 = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(
        twilio_signature(T_TOKEN, http_1234, &T_PARAMS),
        "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
    ); // T4
}

#[test]
fn twilio_official_vectors_repeated_keys() {
    let t6 = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ];
    assert_eq!(
        twilio_signature(T_TOKEN, T_URL, &t6),
        "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    );
    let t7 = [
        ("MessagingBinding.Address", "+1415xxxxxxx"),
        ("MessagingBinding.Address", "+1325xxxxxxx"),
    ];
    assert_eq!(
        twilio_signature(T_TOKEN, T_URL, &t7),
        "83O6e2vORAoJHUNzJjDWN1jz+BA="
    );
}

const S1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
const S1_SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
const S1_TS: &str = "1600112502";
const S1_PAYLOAD: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

const S2_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
const S2_SIG: &str = "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5";
const S2_TS: &str = "1619651159";
const S2_PAYLOAD: &str = "[{\"email\":\"invalid@gmail.com\",\"event\":\"processed\",\"send_at\":0,\"sg_event_id\":\"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"timestamp\":1619651146},\r\n{\"email\":\"invalid@gmail.com\",\"event\":\"bounce\",\"ip\":\"167.89.101.76\",\"reason\":\"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp\",\"sg_event_id\":\"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"status\":\"5.2.2\",\"timestamp\":1619651147,\"tls\":1,\"type\":\"blocked\"}]\r\n";

#[test]
fn sendgrid_official_vector_s1() -> Result<(), KeyError> {
    assert_eq!(S1_PAYLOAD.len(), 327);
    let key = sendgrid_verifying_key(S1_KEY)?;
    assert!(verify_sendgrid_signature(
        &key,
        S1_TS,
        S1_PAYLOAD.as_bytes(),
        S1_SIG
    ));
    // Negatives from the same SDK tests.
    let trimmed = S1_PAYLOAD.trim_end_matches("\r\n");
    assert!(!verify_sendgrid_signature(
        &key,
        S1_TS,
        trimmed.as_bytes(),
        S1_SIG
    ));
    assert!(!verify_sendgrid_signature(&key, S1_TS, b"payload", S1_SIG));
    assert!(!verify_sendgrid_signature(
        &key,
        "timestamp",
        S1_PAYLOAD.as_bytes(),
        S1_SIG
    ));
    let other_sig = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
    assert!(!verify_sendgrid_signature(
        &key,
        S1_TS,
        S1_PAYLOAD.as_bytes(),
        other_sig
    ));
    let other_key = sendgrid_verifying_key(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==",
    )?;
    assert!(!verify_sendgrid_signature(
        &other_key,
        S1_TS,
        S1_PAYLOAD.as_bytes(),
        S1_SIG
    ));
    Ok(())
}

#[test]
fn sendgrid_official_vector_s2() -> Result<(), KeyError> {
    assert_eq!(S2_PAYLOAD.len(), 889);
    let key = sendgrid_verifying_key(S2_KEY)?;
    assert!(verify_sendgrid_signature(
        &key,
        S2_TS,
        S2_PAYLOAD.as_bytes(),
        S2_SIG
    ));
    Ok(())
}

#[test]
fn sendgrid_own_signature_round_trips() -> Result<(), KeyError> {
    let signer = SendGridSigner::generate()?;
    let key = sendgrid_verifying_key(signer.public_key_base64())?;
    let body = br#"[{"email":"a@example.com","event":"delivered"}]"#;
    let signature = signer.sign("1700000000", body);
    assert!(
        signature.starts_with("ME"),
        "DER signature expected, got {signature}"
    );
    assert!(verify_sendgrid_signature(
        &key,
        "1700000000",
        body,
        &signature
    ));
    assert!(!verify_sendgrid_signature(
        &key,
        "1700000001",
        body,
        &signature
    ));
    assert!(!verify_sendgrid_signature(
        &key,
        "1700000000",
        b"[]",
        &signature
    ));
    assert!(!verify_sendgrid_signature(
        &key,
        "1700000000",
        body,
        "not base64!"
    ));
    Ok(())
}

#[test]
fn sendgrid_signer_loads_pkcs8_pem_and_base64_der() -> Result<(), KeyError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let original = SendGridSigner::generate()?;
    let pem = original
        .key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Format(e.to_string()))?;
    let from_pem = SendGridSigner::from_encoded(&pem)?;
    assert_eq!(from_pem.public_key_base64(), original.public_key_base64());
    let der = original
        .key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Format(e.to_string()))?;
    let from_der = SendGridSigner::from_encoded(&STANDARD.encode(der.as_bytes()))?;
    assert_eq!(from_der.public_key_base64(), original.public_key_base64());
    assert!(SendGridSigner::from_encoded("not a key").is_err());
    Ok(())
}
