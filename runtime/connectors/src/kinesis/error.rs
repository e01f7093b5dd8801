//! Errors of the `kinesis` connector: each names the stream (and the shard where one
//! is involved) and carries the service's own message; never a credential.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use weir::connector::ConnectorError;

/// What a failed request means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ProvisionedThroughputExceededException`, `LimitExceededException`,
    /// throttling: retried with backoff, never a job failure
    Throttled,
    /// `ExpiredIteratorException`: a new iterator is made from the position
    ExpiredIterator,
    /// a timeout, a connection failure or an internal failure of the service:
    /// retried a bounded number of times
    Transient,
    /// anything else (a missing stream or shard, bad credentials, a bad request)
    Fatal,
}

/// A failed Kinesis request.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error("kinesis {stream}{}: {what}: {message}", shard.as_ref().map(|s| format!(", shard {s}")).unwrap_or_default())]
    Request { stream: String, shard: Option<String>, what: &'static str, kind: ErrorKind, message: String },
    #[error("kinesis {stream}: {message}")]
    Client { stream: String, message: String },
}

impl KinesisError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KinesisError::Request { kind, .. } => *kind,
            KinesisError::Client { .. } => ErrorKind::Fatal,
        }
    }

    /// A failed request `what` of `stream` (and `shard`), classified.
    pub fn from_sdk<E, R>(stream: &str, shard: Option<&str>, what: &'static str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let kind = match &e {
            SdkError::ServiceError(se) => classify_code(se.err().code()),
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ErrorKind::Transient,
            _ => ErrorKind::Fatal,
        };
        let message = match &e {
            SdkError::ServiceError(se) => match (se.err().code(), se.err().message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => DisplayErrorContext(&e).to_string(),
            },
            _ => DisplayErrorContext(&e).to_string(),
        };
        KinesisError::Request { stream: stream.to_string(), shard: shard.map(str::to_string), what, kind, message }
    }
}

/// The kind of an error code of the service.
pub fn classify_code(code: Option<&str>) -> ErrorKind {
    match code {
        Some("ProvisionedThroughputExceededException" | "LimitExceededException" | "ThrottlingException" | "KMSThrottlingException" | "TooManyRequestsException") => ErrorKind::Throttled,
        Some("ExpiredIteratorException") => ErrorKind::ExpiredIterator,
        Some("InternalFailure" | "InternalFailureException" | "InternalServerError" | "ServiceUnavailable" | "ServiceUnavailableException") => ErrorKind::Transient,
        _ => ErrorKind::Fatal,
    }
}

impl From<KinesisError> for ConnectorError {
    fn from(e: KinesisError) -> Self {
        ConnectorError::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(classify_code(Some("ProvisionedThroughputExceededException")), ErrorKind::Throttled);
        assert_eq!(classify_code(Some("LimitExceededException")), ErrorKind::Throttled);
        assert_eq!(classify_code(Some("ExpiredIteratorException")), ErrorKind::ExpiredIterator);
        assert_eq!(classify_code(Some("InternalFailure")), ErrorKind::Transient);
        assert_eq!(classify_code(Some("ResourceNotFoundException")), ErrorKind::Fatal);
        assert_eq!(classify_code(None), ErrorKind::Fatal);
        let e =
            KinesisError::Request { stream: "stream 's'".into(), shard: Some("shardId-000000000001".into()), what: "GetRecords", kind: ErrorKind::Fatal, message: "AccessDeniedException: no".into() };
        assert_eq!(e.to_string(), "kinesis stream 's', shard shardId-000000000001: GetRecords: AccessDeniedException: no");
    }
}
