//! Distributed execution: one job across several processes — the pods of a
//! StatefulSet, or `weir cluster` on one machine. Each worker runs the subtasks its
//! ordinal owns and exchanges records with the others over TCP (`exchange::net`);
//! worker 0 also coordinates checkpoints and restarts and serves the REST API.

pub mod identity;
pub(crate) mod protocol;
pub mod supervisor;
pub mod worker;

pub use identity::WorkerIdentity;
pub use worker::{WorkerServer, WorkerSettings, run_worker, run_worker_on, write_termination_log};

/// Why a worker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("worker configuration: {0}")]
    Config(String),
}
