//! The gateway fuzzed from its own description: schemathesis (PyPI, `tests/api-fuzz/`) reads
//! `GET /openapi.json` from a live gateway on 127.0.0.1 with the real database and broker, and
//! sends a bounded number of generated requests per operation — valid and invalid, with an
//! enqueue, an oncall and an owner key, each where the document says it is accepted. It checks
//! that no answer is a server error and that every answer (status, content type, headers, body)
//! is one the document describes.
//!
//! Ignored by `cargo test`: `make api-fuzz` runs it long (`API_FUZZ_EXAMPLES`, default 100 per
//! operation) and `make api-fuzz-short` (in `make ci`) runs 5 per operation.

use comms_domain::api_keys::{self, Role};
use std::path::PathBuf;
use std::process::Command;

use super::Gateway;

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("api-fuzz/.venv/bin/schemathesis"),
        PathBuf::from,
    )
}

/// The fuzzer's configuration: which key goes with which security scheme of the document.
const CONFIG: &str = r#"
[auth.openapi.enqueueKey]
bearer = "${API_FUZZ_ENQUEUE_KEY}"

[auth.openapi.oncallKey]
bearer = "${API_FUZZ_ONCALL_KEY}"

[auth.openapi.ownerKey]
bearer = "${API_FUZZ_OWNER_KEY}"
"#;

#[tokio::test]
#[ignore = "needs tests/api-fuzz/.venv: run with `make api-fuzz` or `make api-fuzz-short`"]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let bin = schemathesis();
    assert!(
        bin.exists(),
        "{} is missing: `make api-fuzz-venv` installs it",
        bin.display()
    );
    let gw = Gateway::start(&[]).await;
    let enqueue = api_keys::create(&gw.env.pool, "fuzz-app", Role::Enqueue)
        .await
        .expect("enqueue key");
    let oncall = api_keys::create(&gw.env.pool, "fuzz-oncall", Role::Oncall)
        .await
        .expect("oncall key");
    let owner = api_keys::create(&gw.env.pool, "fuzz-owner", Role::Owner)
        .await
        .expect("owner key");
    let examples = std::env::var("API_FUZZ_EXAMPLES").unwrap_or_else(|_| "5".into());
    let dir = std::env::temp_dir().join(format!("api-fuzz-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("work dir");
    std::fs::write(dir.join("schemathesis.toml"), CONFIG).expect("config");
    let report =
        std::env::var_os("API_FUZZ_REPORT").map_or_else(|| dir.join("report"), PathBuf::from);
    let schema_url = format!("{}/openapi.json", gw.url);
    let mut command = Command::new(&bin);
    command
        .current_dir(&dir)
        .env("API_FUZZ_ENQUEUE_KEY", &enqueue.key)
        .env("API_FUZZ_ONCALL_KEY", &oncall.key)
        .env("API_FUZZ_OWNER_KEY", &owner.key)
        .env("NO_COLOR", "1")
        .args([
            "run",
            &schema_url,
            "--url",
            &gw.url,
            "--max-examples",
            &examples,
            "--seed",
            "18",
            "--workers",
            "2",
            "--max-redirects",
            "0",
            "--request-timeout",
            "10",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("fuzzer task")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); its report is above",
        output.status.code()
    );
}
