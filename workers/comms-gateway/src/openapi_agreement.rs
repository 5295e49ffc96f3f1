//! Keeps `docs/openapi.json` in agreement with the router and with the request schemas.
//!
//! The router cannot be asked for its routes, so the test reads the `.route(…)` calls of the
//! files that build it (the gateway's, the console's and the shared health routes) and compares
//! every (method, path) with the document's operations, both ways. The request bodies of the
//! enqueue, enrolment and outcome endpoints must be exactly the committed JSON Schemas, with their
//! `$defs` references pointing into the document.

use std::collections::BTreeSet;

use serde_json::Value;

const ROUTER_SOURCES: [&str; 3] = [
    include_str!("lib.rs"),
    include_str!("console/mod.rs"),
    include_str!("../../../shared/runtime/src/health.rs"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Every (method, path) routed by a `.route("path", get(…).post(…))` call in `source`.
fn routes(source: &str) -> BTreeSet<(String, String)> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = BTreeSet::new();
    for (at, _) in compact.match_indices(".route(\"") {
        let rest = &compact[at + ".route(\"".len()..];
        let Some((path, after)) = rest.split_once('"') else {
            continue;
        };
        let Some(handlers) = after.strip_prefix(',') else {
            continue;
        };
        // The method chain runs to the `)` that closes `.route(`.
        let mut depth = 0usize;
        let mut end = handlers.len();
        for (i, c) in handlers.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let chain = &handlers[..end];
        let mut depth = 0usize;
        let mut word_start = 0usize;
        for (i, c) in chain.char_indices() {
            match c {
                '(' => {
                    let word = &chain[word_start..i];
                    if depth == 0 && METHODS.contains(&word) {
                        found.insert((word.to_string(), path.to_string()));
                    }
                    depth += 1;
                }
                ')' => depth = depth.saturating_sub(1),
                '.' | ',' if depth == 0 => word_start = i + 1,
                _ => {}
            }
        }
    }
    found
}

fn document() -> Value {
    serde_json::from_str(super::DOCUMENT).expect("docs/openapi.json is JSON")
}

#[test]
fn the_route_reader_reads_chains_and_multiline_calls() {
    let source = r#"
        .route("/a/{id}", get(x::one).post(x::two))
        .route(
            "/b",
            post(webhooks::get_thing),
        )
        .route("/healthz", get(healthz))
    "#;
    let read: Vec<_> = routes(source).into_iter().collect();
    let expected = [
        ("get", "/a/{id}"),
        ("get", "/healthz"),
        ("post", "/a/{id}"),
        ("post", "/b"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(read, expected);
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let routed: BTreeSet<_> = ROUTER_SOURCES.iter().flat_map(|s| routes(s)).collect();
    assert!(routed.len() > 60, "the route reader found only {routed:?}");
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in docs/openapi.json: {undocumented:?}; documented but not routed: {unrouted:?}"
    );
}

#[test]
fn every_operation_names_its_security_and_an_id_once() {
    let doc = document();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "{id} is used twice");
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no security"));
            for requirement in security {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    assert!(schemes.contains_key(scheme), "{method} {path}: {scheme}");
                }
            }
        }
    }
}

/// The committed schema as the document must hold it: no `$schema`/`$id`, and its `#/$defs/…`
/// references made to point into the document.
fn embedded(schema: &str, name: &str) -> Value {
    let mut value: Value = serde_json::from_str(schema).expect("schema is JSON");
    let object = value.as_object_mut().expect("schema object");
    object.remove("$schema");
    object.remove("$id");
    let text = serde_json::to_string(&value).expect("serialises").replace(
        "\"#/$defs/",
        &format!("\"#/components/schemas/{name}/$defs/"),
    );
    serde_json::from_str(&text).expect("still JSON")
}

#[test]
fn request_bodies_are_the_committed_json_schemas() {
    let doc = document();
    let cases = [
        (
            include_str!("../../../docs/send-request.schema.json"),
            "SendRequest",
            "/v1/messages",
        ),
        (
            include_str!("../../../docs/enrolment.schema.json"),
            "EnrolmentRequest",
            "/v1/enrolments",
        ),
        (
            include_str!("../../../docs/outcome.schema.json"),
            "OutcomeRequest",
            "/v1/outcomes",
        ),
    ];
    for (schema, name, path) in cases {
        assert_eq!(
            doc["components"]["schemas"][name],
            embedded(schema, name),
            "components.schemas.{name} differs from its JSON Schema file"
        );
        assert_eq!(
            doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{name}"),
            "POST {path} must take {name}"
        );
    }
}

#[test]
fn the_served_document_is_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
}
