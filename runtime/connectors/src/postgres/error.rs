//! Errors of the connector, and which database errors are worth a retry.

use postgres::error::SqlState;
use weir::connector::ConnectorError;

/// A failure talking to PostgreSQL, naming the connector, the table and what was done.
/// Messages never hold the password (the URL is shown redacted).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("connector '{connector}', table '{table}': cannot connect to {target}: {message}")]
    Connect { connector: String, table: String, target: String, message: String, retryable: bool },
    #[error("connector '{connector}', table '{table}' ({table_name}): {statement} failed: {message}")]
    Statement { connector: String, table: String, table_name: String, statement: String, message: String, retryable: bool },
    #[error("connector '{connector}', table '{table}': {message}")]
    Other { connector: String, table: String, message: String },
}

impl PgError {
    /// Whether trying again (on a new connection) may succeed: connection failures,
    /// a server shutting down, serialization failures and deadlocks.
    pub fn retryable(&self) -> bool {
        match self {
            PgError::Connect { retryable, .. } | PgError::Statement { retryable, .. } => *retryable,
            PgError::Other { .. } => false,
        }
    }
}

impl From<PgError> for ConnectorError {
    fn from(e: PgError) -> Self {
        ConnectorError::Other(e.to_string())
    }
}

/// The message of a client error: the server's message with its SQLSTATE, detail
/// and hint, or the client's error with its causes.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

/// Whether an error may go away on a new connection.
pub fn is_retryable(e: &postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08") // connection exception
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS;
    }
    if e.is_closed() {
        return true;
    }
    // I/O errors (refused, reset, timed out) and the client's timeout
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        if c.is::<std::io::Error>() {
            return true;
        }
        src = c.source();
    }
    e.to_string().starts_with("timeout")
}
