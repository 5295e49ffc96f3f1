//! What a dead letter may show an operator: its first bytes with every phone number, email
//! address and secret-looking value masked. Dead letters are bad input, and bad input often holds
//! personal data; a listing must let an operator recognise a message without copying it.
//!
//! The whole text is masked before it is cut, so a number split by the cut is never half shown.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Characters of payload a listing shows.
pub const PREVIEW_CHARS: usize = 120;
/// Characters of payload `dead show` shows.
pub const DETAIL_CHARS: usize = 1024;
/// Bytes of payload read at most before masking (previews never need more).
const READ_BYTES: usize = 8 * 1024;

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("mask pattern {pattern} is malformed: {e}"))
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| compile(r"\+?\d[\d ().-]{5,}\d"));
static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?i)((?:token|secret|password|passwd|api[_-]?key|authorization|signature|sig)"?\s*[:=]\s*"?)([^"&,;\s}]+)"#,
    )
});

/// An email address as `d***@***.com`: the first letter and the top-level domain.
fn mask_email(found: &str) -> String {
    let first = found.chars().next().unwrap_or('*');
    let tld = found.rsplit('.').next().filter(|t| !t.contains('@'));
    match tld {
        Some(tld) => format!("{first}***@***.{tld}"),
        None => format!("{first}***@***"),
    }
}

/// A phone number as `+1********71`: its leading `+` and digit, and its last two digits. Digit
/// runs that cannot be a phone number (too few or too many digits) are left as they are.
fn mask_phone(found: &str) -> String {
    let digits: Vec<char> = found.chars().filter(char::is_ascii_digit).collect();
    let plus = found.starts_with('+');
    let phone = if plus {
        (8..=15).contains(&digits.len())
    } else {
        (10..=15).contains(&digits.len())
    };
    if !phone {
        return found.to_string();
    }
    let tail: String = digits[digits.len() - 2..].iter().collect();
    let head = if plus {
        format!("+{}", digits[0])
    } else {
        String::new()
    };
    let hidden = "*".repeat(digits.len() - 2 - usize::from(plus));
    format!("{head}{hidden}{tail}")
}

/// `text` with every email address, phone number and secret-looking value masked.
pub fn mask(text: &str) -> String {
    let text = SECRET.replace_all(text, |c: &Captures| format!("{}***", &c[1]));
    let text = EMAIL.replace_all(&text, |c: &Captures| mask_email(&c[0]));
    PHONE
        .replace_all(&text, |c: &Captures| mask_phone(&c[0]))
        .into_owned()
}

/// The first `chars` characters of `payload` (as UTF-8, invalid bytes replaced), masked; `…`
/// marks a cut.
pub fn preview(payload: &[u8], chars: usize) -> String {
    let read = &payload[..payload.len().min(READ_BYTES)];
    let masked = mask(&String::from_utf8_lossy(read));
    let mut shown: String = masked.chars().take(chars).collect();
    if masked.chars().count() > chars || payload.len() > read.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_and_emails_are_masked_and_ids_are_not() {
        let raw = r#"{"recipient":{"phone":"+14155552671","email":"dana.smith@acme-dental.example"},"idempotency_key":"welcome-0001","n":42,"record":"00000000-0000-4000-8000-000000000001","local":"(415) 555-2671"}"#;
        let shown = mask(raw);
        assert!(!shown.contains("4155552671"), "{shown}");
        assert!(!shown.contains("555-2671"), "{shown}");
        assert!(!shown.contains("dana"), "{shown}");
        assert!(!shown.contains("acme-dental"), "{shown}");
        assert!(shown.contains("+1********71"), "{shown}");
        assert!(shown.contains("d***@***.example"), "{shown}");
        assert!(shown.contains("welcome-0001"), "{shown}");
        assert!(shown.contains(r#""n":42"#), "{shown}");
        assert!(
            shown.contains("00000000-0000-4000-8000-000000000001"),
            "{shown}"
        );
    }

    #[test]
    fn secret_values_are_masked() {
        let shown = mask(r#"{"auth_token":"abc123xyz","api_key":"k-999"} Signature=zzz&To=x"#);
        for secret in ["abc123xyz", "k-999", "zzz"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_preview_is_cut_after_masking() {
        let payload = format!(r#"{{"phone":"+14155552671","pad":"{}"}}"#, "x".repeat(300));
        let shown = preview(payload.as_bytes(), 20);
        assert_eq!(shown.chars().count(), 21, "{shown}");
        assert!(shown.ends_with('…'));
        assert!(!shown.contains("4155552671"));
        assert_eq!(preview(b"\xff\xfeok", 10), "\u{fffd}\u{fffd}ok");
    }
}
