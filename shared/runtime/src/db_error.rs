//! Which database errors a retry can fix, decided once for every worker.
//!
//! A handler whose database work fails must choose between retrying the message and rejecting
//! it. Retrying an error that only this message's content causes (a character PostgreSQL cannot
//! store, a constraint the row breaks) never succeeds: the message waits for hours in the delay
//! tiers, is in none of the places an operator looks, and, inside a group, takes its neighbours
//! with it. Rejecting an error the database would have got over (a restart, a dropped connection,
//! a deadlock) loses a good message. So the rule lives here, and the sender, the status and
//! replies workers and the approvals housekeeping all ask [`classify`]:
//!
//! - **transient**: the connection or the server's availability — I/O and TLS failures, the
//!   pool timing out or closing, SQLSTATE class `08` (connection), `53` (insufficient
//!   resources), `57` (operator intervention: shutdown, `cannot_connect_now`, a cancelled or
//!   timed-out statement), `58` (system error), `40001` and `40P01` (serialization failure,
//!   deadlock), `55P03` (lock not available), and `23505` (a unique violation: the only one the
//!   fleet can meet is a concurrent insert of the same key, and the retry finds that row);
//! - **permanent** for the message: everything else — data errors (class `22`, e.g. `22021`
//!   invalid byte sequence, `22P05` unsupported Unicode escape), the other integrity
//!   violations (class `23`), and errors a retry of the same message cannot change (a value
//!   that does not decode, a statement the schema refuses).

use crate::runtime::Outcome;

/// Whether a failed database operation can succeed if the same message is tried again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database was unreachable or busy: try the message again later.
    Transient,
    /// The message itself cannot be stored or applied: retrying it cannot succeed.
    Permanent,
}

/// SQLSTATE classes (first two characters) that say the server or the connection failed.
const TRANSIENT_CLASSES: &[&str] = &["08", "53", "57", "58"];
/// Single SQLSTATEs that a later attempt gets over.
const TRANSIENT_CODES: &[&str] = &["40001", "40P01", "55P03", "23505"];

/// Decides whether `error` is transient or permanent (see the module docs).
pub fn classify(error: &sqlx::Error) -> DbFailure {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => DbFailure::Transient,
        sqlx::Error::Database(db) => match db.code() {
            Some(code) if is_transient_code(&code) => DbFailure::Transient,
            _ => DbFailure::Permanent,
        },
        _ => DbFailure::Permanent,
    }
}

fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code) || TRANSIENT_CLASSES.iter().any(|c| code.starts_with(c))
}

/// Whether a retry may succeed.
pub fn is_transient(error: &sqlx::Error) -> bool {
    classify(error) == DbFailure::Transient
}

/// The reason a message is rejected with when the database refused it for good:
/// `database_refused: SQLSTATE <code> (<condition>)`, with the constraint and column when
/// PostgreSQL names them. PostgreSQL's own message is left out on purpose: some of them quote
/// the value (`invalid input syntax for type uuid: "…"`), and this reason is logged and kept.
pub fn refused_reason(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = error else {
        return format!("database_refused: {}", kind(error));
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let mut reason = format!("database_refused: SQLSTATE {code} ({})", condition(&code));
    if let Some(constraint) = db.constraint() {
        reason.push_str(&format!("; constraint {constraint}"));
    }
    let column = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.column());
    if let Some(column) = column {
        reason.push_str(&format!("; column {column}"));
    }
    reason
}

/// PostgreSQL's condition name for the codes a message can cause, else its class.
fn condition(code: &str) -> &'static str {
    match code {
        "22021" => "character_not_in_repertoire: a character the database cannot store",
        "22P05" => "untranslatable_character: a character the database cannot store",
        "22001" => "string_data_right_truncation: a value too long for its column",
        "22003" => "numeric_value_out_of_range",
        "22P02" => "invalid_text_representation",
        "23502" => "not_null_violation",
        "23503" => "foreign_key_violation",
        "23514" => "check_violation",
        "23P01" => "exclusion_violation",
        _ => match code.get(..2) {
            Some("22") => "data exception",
            Some("23") => "integrity constraint violation",
            Some("42") => "syntax error or access rule violation",
            _ => "see PostgreSQL's error codes",
        },
    }
}

/// What went wrong, without anything the error may quote from the data.
fn kind(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::RowNotFound => "a row it needs does not exist",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            "a stored value does not decode"
        }
        sqlx::Error::Encode(_) => "a value cannot be encoded",
        _ => "the query cannot succeed for this message",
    }
}

/// The outcome of a message whose handling failed with `error`: a retry when the database was
/// unavailable, a rejection (kept in `internal.rejected_input` and `comms.dead` with
/// [`refused_reason`]) when the message itself cannot be stored.
pub fn outcome(error: &sqlx::Error) -> Outcome {
    match classify(error) {
        DbFailure::Transient => Outcome::retry(format!("database unavailable: {error}")),
        DbFailure::Permanent => Outcome::reject(refused_reason(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&sqlx::Error::Io(io)), DbFailure::Transient);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbFailure::Transient);
        assert_eq!(classify(&sqlx::Error::PoolClosed), DbFailure::Transient);
    }

    #[test]
    fn sqlstates_are_sorted_by_whether_a_retry_helps() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "57014", "40001", "40P01", "55P03",
            "23505", "58030",
        ] {
            assert!(is_transient_code(code), "{code} is transient");
        }
        for code in [
            "22021", "22P05", "22001", "23502", "23503", "23514", "42P01", "XX000",
        ] {
            assert!(!is_transient_code(code), "{code} is permanent");
        }
    }

    #[test]
    fn decoding_problems_are_permanent() {
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbFailure::Permanent);
        let decode = sqlx::Error::Decode("not a uuid".into());
        assert!(matches!(outcome(&decode), Outcome::Reject { .. }));
    }
}
