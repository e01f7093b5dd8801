//! Errors of building and running jobs.

/// Why a job could not be built, started or completed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("{0}")]
    TaskFailed(String),
    #[error("the job was cancelled")]
    Cancelled,
    #[error("state: {0}")]
    State(String),
}
