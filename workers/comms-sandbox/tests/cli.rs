//! `comms-sandbox`'s command line, run as a person runs it, with the checks every binary shares.

#[path = "../../../tests/src/binary.rs"]
mod binary;

const BIN: &str = env!("CARGO_BIN_EXE_comms-sandbox");
const TOKEN: (&str, &str) = ("COMMS_SANDBOX_TWILIO_AUTH_TOKEN", "sandbox-token-secret-1");

#[test]
fn help_and_version_print_and_exit_0() {
    binary::assert_help_and_version(BIN, "comms-sandbox", env!("CARGO_PKG_VERSION"));
    let help = binary::run(BIN, &["--help"], &[TOKEN]);
    assert!(
        !help.stdout.contains(TOKEN.1),
        "--help never shows a secret taken from the environment: {help:?}"
    );
}

#[test]
fn unknown_arguments_exit_2_and_start_nothing() {
    binary::assert_refuses_unknown(BIN, "comms-sandbox", &["COMMS_SANDBOX_LISTEN"]);
}

#[test]
fn check_config_prints_the_configuration_with_its_secrets_masked() {
    binary::assert_check_config_masks(
        BIN,
        &[
            TOKEN,
            ("COMMS_SANDBOX_GATEWAY_URL", "http://127.0.0.1:8080"),
        ],
        &[
            "# comms-sandbox: the configuration is valid",
            "gateway_url = http://127.0.0.1:8080",
            "twilio_auth_token = ********",
        ],
    );
    binary::assert_check_config_refuses(
        BIN,
        &[("COMMS_SANDBOX_GATEWAY_URL", "not a url")],
        "--gateway-url",
    );
}
