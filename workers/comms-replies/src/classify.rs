//! What an inbound message is: an SMS keyword (opt-out, opt-in, help), an email auto-reply, or a
//! reply a person must answer. Keywords count only when they are the whole message, as carriers
//! and Twilio match them; "please stop texting me" is a reply for an owner, whose task says it may
//! be a revocation. Before matching, a body is normalised the way a person would read it: Unicode
//! NFKC (full-width `ＳＴＯＰ` and compatibility forms become `STOP`), invisible format characters
//! (zero-width spaces and joiners, word joiners, byte-order marks) removed, whitespace trimmed and
//! collapsed, and case folded — a phone keyboard or a copy-paste must not turn an opt-out into an
//! ordinary reply.

use unicode_normalization::UnicodeNormalization;

/// The SMS keywords (Twilio's defaults plus the FCC's two-word `OPT OUT`).
pub const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
];
pub const OPT_IN: &[&str] = &["START", "YES", "UNSTOP"];
pub const HELP: &[&str] = &["HELP", "INFO"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

/// Invisible characters that some keyboards and copy-pastes put around or inside a word.
const INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
];

/// The body as keywords are matched: NFKC, invisible characters removed, whitespace trimmed and
/// collapsed to one space, upper case.
pub fn normalise(body: &str) -> String {
    let composed: String = body.nfkc().filter(|c| !INVISIBLE.contains(c)).collect();
    composed
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// The keyword an SMS body is, if it is exactly one.
pub fn keyword(body: &str) -> Option<(Keyword, String)> {
    let normalised = normalise(body);
    let found = |list: &[&str]| list.contains(&normalised.as_str());
    let kind = if found(OPT_OUT) {
        Keyword::OptOut
    } else if found(OPT_IN) {
        Keyword::OptIn
    } else if found(HELP) {
        Keyword::Help
    } else {
        return None;
    };
    Some((kind, normalised))
}

/// Whether a reply that is not a keyword still mentions stopping (the owner should check).
pub fn mentions_stopping(body: &str) -> bool {
    let normalised = normalise(body);
    ["STOP", "UNSUBSCRIBE", "OPT OUT", "REMOVE ME"]
        .iter()
        .any(|w| normalised.contains(w))
}

/// RFC 3834 and the common vendor headers and subjects of automatic replies.
pub fn is_auto_reply(headers: &[(String, String)], subject: &str) -> bool {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    if header("auto-submitted").is_some_and(|v| v != "no") {
        return true;
    }
    if header("x-autoreply").is_some()
        || header("x-autorespond").is_some()
        || header("x-autoresponder").is_some()
    {
        return true;
    }
    if header("precedence").is_some_and(|v| ["auto_reply", "bulk", "junk"].contains(&v.as_str())) {
        return true;
    }
    let subject = subject.to_lowercase();
    [
        "out of office",
        "automatic reply",
        "auto-reply",
        "autoreply",
        "away from the office",
        "on vacation",
    ]
    .iter()
    .any(|p| subject.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_in_any_case_with_surrounding_whitespace() {
        for word in OPT_OUT {
            assert_eq!(
                keyword(&format!("  {}\n", word.to_lowercase())).map(|k| k.0),
                Some(Keyword::OptOut),
                "{word}"
            );
        }
        for word in OPT_IN {
            assert_eq!(
                keyword(&format!("\t{word} ")).map(|k| k.0),
                Some(Keyword::OptIn),
                "{word}"
            );
        }
        assert_eq!(keyword("Help").map(|k| k.0), Some(Keyword::Help));
        assert_eq!(keyword("sToP").map(|k| k.1), Some("STOP".to_string()));
        assert_eq!(keyword("opt   out").map(|k| k.0), Some(Keyword::OptOut));
    }

    #[test]
    fn keywords_written_in_other_unicode_forms_still_count() {
        for (body, expected) in [
            ("ＳＴＯＰ", Keyword::OptOut),             // full-width
            ("ｓｔｏｐ", Keyword::OptOut),             // full-width lower case
            ("\u{200B}STOP\u{200B}", Keyword::OptOut), // zero-width spaces around it
            ("S\u{200D}TOP", Keyword::OptOut),         // a zero-width joiner inside it
            ("\u{FEFF}stop", Keyword::OptOut),         // a byte-order mark in front
            ("\u{3000}Stop\u{00A0}", Keyword::OptOut), // ideographic and no-break spaces
            ("ＵＮＳＵＢＳＣＲＩＢＥ", Keyword::OptOut),
            ("opt\u{2003}out", Keyword::OptOut), // an em space between the words
            ("ＳＴＡＲＴ", Keyword::OptIn),
            ("ｈｅｌｐ", Keyword::Help),
        ] {
            assert_eq!(keyword(body).map(|k| k.0), Some(expected), "{body:?}");
        }
        assert_eq!(keyword("ＳＴＯＰ").map(|k| k.1), Some("STOP".to_string()));
        assert!(mentions_stopping("please ＳＴＯＰ texting me"));
        assert_eq!(keyword("STOPS"), None);
    }

    #[test]
    fn a_sentence_with_stop_is_not_a_keyword_but_is_flagged() {
        assert_eq!(keyword("please stop texting me"), None);
        assert_eq!(keyword("Stop please"), None);
        assert!(mentions_stopping("please stop texting me"));
        assert!(!mentions_stopping("Thanks, see you Tuesday"));
    }

    #[test]
    fn auto_replies_by_header_and_subject() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(is_auto_reply(
            &h("Auto-Submitted", "auto-replied"),
            "Re: report"
        ));
        assert!(!is_auto_reply(&h("Auto-Submitted", "no"), "Re: report"));
        assert!(is_auto_reply(&h("Precedence", "bulk"), ""));
        assert!(is_auto_reply(&h("X-Autoreply", "yes"), ""));
        assert!(is_auto_reply(&[], "Automatic reply: Out of Office"));
        assert!(!is_auto_reply(&[], "Re: your March report"));
    }
}
