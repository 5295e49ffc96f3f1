//! Twilio's signature over exactly what the workers read: every content type, with and without
//! `bodySHA256`, through the same reader the gateway and the workers use
//! (`comms_domain::webhook_body`), including the forged-callback attack of issue 12.

use comms_domain::webhook_body::{self, JSON};

use super::tests::{T_TOKEN, T_URL, default_params, twilio_read};
use super::twilio;

#[test]
fn json_without_body_sha256_is_refused_even_when_the_url_alone_is_signed() {
    // The forged-callback attack: the signed string of a form callback (URL + sorted fields) is
    // moved into the query of a URL, so the signature over "the URL alone" is valid; the body is
    // then anything. As JSON without bodySHA256 it must be refused.
    let signed = twilio::sign(T_TOKEN, T_URL, &default_params());
    let shifted = format!(
        "{T_URL}CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
    );
    assert_eq!(twilio::sign(T_TOKEN, &shifted, &[]), signed);
    let forged = br#"{"MessageSid":"SM1","MessageStatus":"undelivered","ErrorCode":"21610"}"#;
    assert_eq!(
        twilio_read(&shifted, JSON, forged, &signed),
        Err(twilio::Refusal::BodyNotSigned)
    );
    // Sent as a form instead, the forged fields are signed over too, and do not match.
    let form = "application/x-www-form-urlencoded";
    let forged_form = b"MessageSid=SM1&MessageStatus=undelivered&ErrorCode=21610";
    assert_eq!(
        twilio_read(&shifted, form, forged_form, &signed),
        Err(twilio::Refusal::InvalidSignature)
    );
    // T12's signed URL, with a form body: bodySHA256 still binds the body.
    let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    let t12 = format!("{T_URL}&bodySHA256={hash}");
    assert_eq!(
        twilio_read(&t12, form, b"", "a9nBmqA0ju/hNViExpshrM61xv4="),
        Err(twilio::Refusal::BodyHashMismatch)
    );
}

#[test]
fn every_content_type_is_read_as_it_says_or_refused() {
    // T1 as a form body, read by the shared reader: the published algorithm, end to end.
    let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    for form in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=UTF-8",
    ] {
        assert_eq!(
            twilio_read(T_URL, form, body.as_bytes(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            Ok(())
        );
    }
    // The same signed bytes as JSON (no bodySHA256): not JSON at all, and never read as a form.
    assert!(webhook_body::twilio_fields(Some(JSON), body.as_bytes()).is_err());
    for other in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
    ] {
        let refused = webhook_body::twilio_fields(Some(other), body.as_bytes())
            .expect_err("refused content type");
        assert_eq!(refused.code(), "unsupported_content_type", "{other}");
    }
    assert!(webhook_body::twilio_fields(None, body.as_bytes()).is_err());
}
