//! Text the fleet computes from untrusted variables: template rendering (variables are data,
//! never template code), the SMS segmenter (what a message costs) and the portal-safe check
//! (what a client may see). Any input gives an answer, never a panic, and the answers keep
//! their promises.

use comms_domain::contract::Kind;
use comms_domain::sms::{Encoding, analyse, gsm7_septets};
use comms_sender::portal_safe::{Wording, check};
use comms_sender::render::render_strict;
use proptest::prelude::*;
use serde_json::json;

use crate::inputs::{hostile, json_value, seeds};

fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

fn sms_body() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile(seeds("sms")).prop_map(text_of),
        "[ -~\n€£ΔΩ{}\\[\\]~|^]{0,400}",
        ".{0,200}",
    ]
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn rendering_any_template_with_any_vars_answers(
        source in hostile(seeds("template")).prop_map(text_of),
        vars in json_value(),
    ) {
        if let Err(error) = render_strict(&source, &vars) {
            prop_assert!(!error.to_string().is_empty());
            prop_assert!(!error.code().is_empty());
        }
    }

    #[test]
    fn variables_are_data_never_template_code(name in ".{0,40}", month in ".{0,20}", url in ".{0,60}") {
        let source = text_of(seeds("template")[0].clone());
        let vars = json!({ "name": name, "month": month, "url": url });
        let rendered = render_strict(&source, &vars).expect("every variable is given");
        prop_assert_eq!(rendered, format!("Hi {name}, your report for {month} is ready: {url}"));
    }

    #[test]
    fn a_missing_variable_is_named(name in "[a-z]{1,12}") {
        prop_assume!(name != "known");
        let error = render_strict(&format!("{{{{ known }}}} {{{{ {name} }}}}"), &json!({ "known": 1 }))
            .expect_err("undefined variable");
        prop_assert!(!error.to_string().is_empty());
    }

    #[test]
    fn the_segmenter_counts_what_the_network_sends(body in sms_body()) {
        let analysis = analyse(&body);
        let gsm: Option<Vec<usize>> = body.chars().map(gsm7_septets).collect();
        let (encoding, costs): (Encoding, Vec<usize>) = match gsm {
            Some(costs) => (Encoding::Gsm7, costs),
            None => (Encoding::Ucs2, body.chars().map(char::len_utf16).collect()),
        };
        prop_assert_eq!(analysis.encoding, encoding);
        prop_assert_eq!(analysis.units, costs.iter().sum::<usize>());
        prop_assert!(analysis.segments >= 1);
        if analysis.units <= encoding.single_segment_units() {
            prop_assert_eq!(analysis.segments, 1);
        } else {
            // Whole characters per segment: never fewer segments than the units need, and
            // never more than when every segment lost one unit to a character that did not fit.
            let per = encoding.concat_segment_units();
            prop_assert!(analysis.segments >= analysis.units.div_ceil(per));
            prop_assert!(analysis.segments <= analysis.units.div_ceil(per - 1));
        }
    }

    #[test]
    fn the_portal_check_answers_anything(
        body in hostile(seeds("portal")).prop_map(text_of),
        subject in proptest::option::of(".{0,60}"),
        contains_roi in any::<bool>(),
        kind in proptest::sample::select(vec![Kind::PortalUpdate, Kind::IncidentNotice, Kind::ReportDigest]),
    ) {
        let wording = Wording { kind, contains_roi, subject: subject.as_deref(), body: &body };
        for problem in check(&wording, 2000) {
            prop_assert!(!problem.code.is_empty() && !problem.detail.is_empty());
        }
    }

    #[test]
    fn a_personal_address_anywhere_in_safe_wording_is_caught(
        user in "[a-z]{1,10}(\\.[a-z]{1,8})?",
        domain in "[a-z]{2,12}\\.(com|org|co\\.uk|io)",
        at in any::<proptest::sample::Index>(),
    ) {
        let safe = text_of(seeds("portal")[0].clone());
        let words: Vec<&str> = safe.split(' ').collect();
        let cut = at.index(words.len() + 1);
        let leaked = [&words[..cut], &[format!("{user}@{domain}").as_str()], &words[cut..]]
            .concat()
            .join(" ");
        let clean = Wording { kind: Kind::PortalUpdate, contains_roi: false, subject: None, body: &safe };
        prop_assert!(check(&clean, 2000).is_empty(), "the safe seed is safe");
        let wording = Wording { kind: Kind::PortalUpdate, contains_roi: false, subject: None, body: &leaked };
        let problems = check(&wording, 2000);
        prop_assert!(problems.iter().any(|p| p.code == "email_address"), "not caught in {:?}: {:?}", leaked, problems);
    }
}
