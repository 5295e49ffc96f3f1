//! U+0000 (NUL) is the one character PostgreSQL cannot store in text. A value carrying it went
//! through to the database and came back as a 503 "retry", inviting a client to repeat a request
//! that can never succeed. The API (`/v1/…`) refuses it up front instead, with a 4xx naming the
//! problem: 400 in the path or query, 422 in a JSON body. The enqueue API checks its own bodies
//! (the contract's `unstorable_character`, with the field), so its body is left to it.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::reply;

/// Refuses a `/v1/` request holding a NUL; runs every other request as it is.
pub async fn refuse_nul(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !path.starts_with("/v1/") {
        return next.run(request).await;
    }
    let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
    if holds_encoded_nul(target) {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the path or query holds U+0000 (NUL), which cannot be stored: remove it",
        );
    }
    // Bodies are read only where the handler would read them: an authenticated JSON request
    // (an anonymous one gets its 401 and a wrong type its 415 from the handler, as before).
    let headers = request.headers();
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let own_checks = request.method() == Method::POST && path == "/v1/messages";
    if own_checks
        || request.method() == Method::GET
        || !json
        || !headers.contains_key(AUTHORIZATION)
    {
        return next.run(request).await;
    }
    let declared_too_large = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|length| length > max_body);
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, max_body).await {
        Ok(bytes) => bytes,
        Err(_) if declared_too_large => {
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than gateway.max_body_bytes",
            );
        }
        Err(_) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body could not be read whole (larger than gateway.max_body_bytes, or cut off)",
            );
        }
    };
    if holds_json_nul(&bytes) {
        return reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unstorable_character",
            "a value holds U+0000 (NUL), which cannot be stored: remove it",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `%00` anywhere in a path or query (the percent-encoded NUL; a raw one cannot reach here).
fn holds_encoded_nul(target: &str) -> bool {
    target.as_bytes().windows(3).any(|w| w == b"%00")
}

/// A raw NUL byte, or a JSON escape `\u0000` (an odd run of backslashes before the `u`, so an
/// escaped backslash followed by the text `u0000` is not one).
fn holds_json_nul(body: &[u8]) -> bool {
    if body.contains(&0) {
        return true;
    }
    let mut backslashes = 0usize;
    for (at, byte) in body.iter().enumerate() {
        if *byte == b'\\' {
            backslashes += 1;
            continue;
        }
        if backslashes % 2 == 1
            && body[at..].len() >= 5
            && body[at] == b'u'
            && &body[at + 1..at + 5] == b"0000"
        {
            return true;
        }
        backslashes = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_nul_is_found_and_an_escaped_backslash_before_the_text_is_not() {
        assert!(holds_json_nul(br#"{"reason":"a\u0000b"}"#));
        assert!(holds_json_nul(br#"{"reason":"a\\\u0000b"}"#));
        assert!(holds_json_nul(b"{\"reason\":\"a\0b\"}"));
        assert!(!holds_json_nul(br#"{"reason":"a\\u0000b"}"#));
        assert!(!holds_json_nul(br#"{"reason":"u0000"}"#));
        assert!(holds_encoded_nul("/v1/messages/%00"));
        assert!(!holds_encoded_nul("/v1/messages/a%20b?x=%2000"));
    }
}
