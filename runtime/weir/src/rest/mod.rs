//! The HTTP server of every worker (port 8081): `/healthz`, `/readyz`, `/metrics`,
//! and on the coordinator (worker 0) the REST API of DESIGN.md, whose types live in
//! `weir-api` (shared with the operator). Errors are `{"error": "..."}` with a proper
//! status code. Bodies are validated here, at the boundary.

pub mod board;
pub mod client;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::Sender;
use weir_api::{CheckpointList, DisposeRequest, ErrorBody, JobState, SavepointRequest, Triggered, paths};

use crate::checkpoint::coordinator::Request;
use board::StatusBoard;

/// What the server needs.
#[derive(Clone)]
pub struct RestState {
    pub board: Arc<StatusBoard>,
    /// Requests to the coordinator; `None` on workers other than 0.
    pub requests: Option<Sender<Request>>,
    pub exporter: Arc<crate::metrics::Exporter>,
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ErrorBody::new(msg))).into_response()
}

/// The router of a worker.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route(paths::HEALTHZ, get(|| async { "ok" }))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics))
        .route(paths::JOB, get(job))
        .route(paths::CHECKPOINTS, get(checkpoints).post(trigger_checkpoint))
        .route(paths::SAVEPOINTS, post(trigger_savepoint))
        .route(paths::SAVEPOINT_ROUTE, get(savepoint))
        .route(paths::SAVEPOINT_DISPOSALS, post(dispose))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint (see DESIGN.md, \"Processes and the REST API\")") })
        .with_state(state)
}

/// Serves `router(state)` on `addr` from a background thread with its own runtime.
/// Returns the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, state: RestState) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("weir-http").enable_all().build()?;
    std::thread::Builder::new().name("weir-http".into()).spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve HTTP");
                    return;
                }
            };
            if let Err(e) = axum::serve(listener, router(state)).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        })
    })?;
    Ok(local)
}

async fn readyz(State(s): State<RestState>) -> Response {
    if s.board.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: job {}", s.board.job().state)).into_response()
    }
}

async fn metrics(State(s): State<RestState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.exporter.render(&s.board)).into_response()
}

fn coordinator(s: &RestState) -> Result<&Sender<Request>, Response> {
    s.requests.as_ref().ok_or_else(|| error(StatusCode::NOT_FOUND, "the REST API is served by the coordinator (pod 0), not by this worker"))
}

async fn job(State(s): State<RestState>) -> Response {
    if let Err(r) = coordinator(&s) {
        return r;
    }
    Json(s.board.job()).into_response()
}

async fn checkpoints(State(s): State<RestState>) -> Response {
    if let Err(r) = coordinator(&s) {
        return r;
    }
    Json(CheckpointList { checkpoints: s.board.checkpoints() }).into_response()
}

fn running(s: &RestState) -> Result<(), Response> {
    let state = s.board.job().state;
    if state.is_terminal() {
        return Err(error(StatusCode::CONFLICT, format!("the job is {state}: it takes no more checkpoints")));
    }
    Ok(())
}

async fn trigger_checkpoint(State(s): State<RestState>) -> Response {
    let tx = match coordinator(&s) {
        Ok(tx) => tx,
        Err(r) => return r,
    };
    if let Err(r) = running(&s) {
        return r;
    }
    let id = s.board.new_checkpoint_request();
    if tx.send(Request::Checkpoint).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the coordinator is not running");
    }
    (StatusCode::ACCEPTED, Json(Triggered { id })).into_response()
}

/// A savepoint target must be a storage URL the runtime can write to.
fn validate_target(t: &str) -> Result<(), String> {
    const SCHEMES: [&str; 4] = ["s3://", "gs://", "az://", "file://"];
    if !SCHEMES.iter().any(|s| t.starts_with(s)) {
        return Err(format!("target '{t}' must be a URL starting with one of {}", SCHEMES.join(", ")));
    }
    if t.len() > 1024 || t.chars().any(|c| c.is_control()) {
        return Err("target is not a valid URL".into());
    }
    Ok(())
}

async fn trigger_savepoint(State(s): State<RestState>, body: Result<Json<SavepointRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    let tx = match coordinator(&s) {
        Ok(tx) => tx,
        Err(r) => return r,
    };
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body must be {{\"stop\": bool, \"target\": url?}}: {e}")),
    };
    if let Some(t) = &req.target {
        if let Err(e) = validate_target(t) {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    if let Err(r) = running(&s) {
        return r;
    }
    let id = s.board.new_savepoint_request();
    if tx.send(Request::Savepoint { id: id.clone(), stop: req.stop, target: req.target }).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the coordinator is not running");
    }
    (StatusCode::ACCEPTED, Json(Triggered { id })).into_response()
}

async fn savepoint(State(s): State<RestState>, Path(id): Path<String>) -> Response {
    if let Err(r) = coordinator(&s) {
        return r;
    }
    match s.board.savepoint(&id) {
        Some(st) => Json(st).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no savepoint request '{id}'")),
    }
}

async fn dispose(State(s): State<RestState>, body: Result<Json<DisposeRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    if let Err(r) = coordinator(&s) {
        return r;
    }
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body must be {{\"url\": savepoint url}}: {e}")),
    };
    if let Err(e) = validate_target(&req.url) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let url = req.url.clone();
    let r = tokio::task::spawn_blocking(move || crate::checkpoint::dispose_savepoint(&url)).await;
    match r {
        Ok(Ok(())) => (StatusCode::ACCEPTED, Json(serde_json::json!({}))).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The job state reported while the coordinator is (re)starting an attempt.
pub fn restarting_state(restarts: u32) -> JobState {
    if restarts == 0 { JobState::Created } else { JobState::Restarting }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_validated() {
        assert!(validate_target("s3://bucket/sp").is_ok());
        assert!(validate_target("file:///tmp/x").is_ok());
        assert!(validate_target("/tmp/x").is_err());
        assert!(validate_target("http://x").is_err());
        assert!(validate_target("s3://a\nb").is_err());
    }
}
