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

/// Longest accepted `requestId`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request id names a savepoint in URLs: 1 to 128 of `[A-Za-z0-9._-]`.
fn validate_request_id(id: &str) -> Result<(), String> {
    let ok_chars = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN || !ok_chars || id == "." || id == ".." {
        return Err(format!("requestId '{}' must be 1 to {MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ - (and not . or ..)", id.escape_debug()));
    }
    Ok(())
}

/// Whether savepoint target `url` already holds a snapshot (a `_metadata`).
/// An unreachable store is not an answer: the savepoint itself will report it.
async fn target_taken(url: &str) -> bool {
    let url = url.to_string();
    let check = tokio::task::spawn_blocking(move || crate::checkpoint::CheckpointStorage::open(&url).and_then(|s| s.has_metadata("")));
    matches!(tokio::time::timeout(std::time::Duration::from_secs(10), check).await, Ok(Ok(Ok(true))))
}

fn accepted(id: String) -> Response {
    (StatusCode::ACCEPTED, Json(Triggered { id })).into_response()
}

async fn trigger_savepoint(State(s): State<RestState>, body: Result<Json<SavepointRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    let tx = match coordinator(&s) {
        Ok(tx) => tx.clone(),
        Err(r) => return r,
    };
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body must be {{\"stop\": bool, \"target\": url?, \"requestId\": string?}}: {e}")),
    };
    if let Some(id) = &req.request_id {
        if let Err(e) = validate_request_id(id) {
            return error(StatusCode::BAD_REQUEST, e);
        }
        // a repeated request: the same savepoint, whatever its state (even once the job ended)
        if s.board.savepoint(id).is_some() {
            return accepted(id.clone());
        }
    }
    if let Some(t) = &req.target {
        if let Err(e) = validate_target(t) {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    if let Err(r) = running(&s) {
        return r;
    }
    if let Some(t) = &req.target
        && target_taken(t).await
    {
        return error(StatusCode::CONFLICT, format!("target '{t}' already holds a savepoint (_metadata): a target is the savepoint's own directory, choose a new one"));
    }
    let id = match s.board.register_savepoint(req.request_id.as_deref(), req.stop) {
        board::Registered::New(id) => id,
        board::Registered::Existing(id) => return accepted(id),
        board::Registered::StopInProgress(other) => {
            return error(StatusCode::CONFLICT, format!("a stop-with-savepoint is already in progress (request '{other}'); ask for its status at {}", paths::savepoint(&other)));
        }
    };
    if tx.send(Request::Savepoint { id: id.clone(), stop: req.stop, target: req.target }).is_err() {
        s.board.fail_savepoint_request(&id, "the coordinator is not running");
        return error(StatusCode::SERVICE_UNAVAILABLE, "the coordinator is not running");
    }
    accepted(id)
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

    use crate::checkpoint::coordinator::{CheckpointEvent, CompletedCheckpoint};
    use crate::rest::client::request;
    use weir_api::{OperationStatus, SavepointStatus};

    fn server() -> (String, Arc<StatusBoard>, crossbeam_channel::Receiver<Request>) {
        let board = StatusBoard::new("q5", 2, 720);
        let (tx, rx) = crossbeam_channel::unbounded();
        let state = RestState { board: board.clone(), requests: Some(tx), exporter: Arc::default() };
        let addr = serve("127.0.0.1:0".parse().unwrap(), state).unwrap();
        (addr.to_string(), board, rx)
    }

    fn post(addr: &str, body: &str) -> (u16, serde_json::Value) {
        let (code, body) = request(addr, "POST", paths::SAVEPOINTS, Some(body)).unwrap();
        (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
    }

    #[test]
    fn savepoint_requests_are_idempotent_by_request_id() {
        let (addr, board, rx) = server();
        let (code, body) = post(&addr, r#"{"stop": true, "requestId": "j1-sp-1"}"#);
        assert_eq!((code, body), (202, serde_json::json!({"id": "j1-sp-1"})));
        match rx.try_recv() {
            Ok(Request::Savepoint { id, stop: true, target: None }) => assert_eq!(id, "j1-sp-1"),
            other => panic!("{other:?}"),
        }
        // the client lost the answer and asks again: the same savepoint, no second one
        assert_eq!(post(&addr, r#"{"stop": true, "requestId": "j1-sp-1"}"#), (202, serde_json::json!({"id": "j1-sp-1"})));
        assert!(rx.try_recv().is_err(), "no second savepoint");
        // another stop while this one is in flight
        let (code, body) = post(&addr, r#"{"stop": true, "requestId": "j1-sp-2"}"#);
        assert_eq!(code, 409);
        assert!(body["error"].as_str().unwrap().contains("j1-sp-1"), "{body}");
        // completed: still the same answer, and its status names it
        let c = CompletedCheckpoint { id: 4, url: "s3://b/savepoints/sp-j1-1".into(), bytes: 1, duration: std::time::Duration::ZERO, savepoint: true, uploaded: Default::default() };
        board.on_event(&CheckpointEvent::Completed { checkpoint: &c, request: Some("j1-sp-1") });
        board.set_state(JobState::Finished, None);
        assert_eq!(post(&addr, r#"{"stop": true, "requestId": "j1-sp-1"}"#), (202, serde_json::json!({"id": "j1-sp-1"})));
        assert!(rx.try_recv().is_err());
        let (code, body) = request(&addr, "GET", &paths::savepoint("j1-sp-1"), None).unwrap();
        let st: SavepointStatus = serde_json::from_str(&body).unwrap();
        assert_eq!((code, st.status, st.url.as_deref()), (200, OperationStatus::Completed, Some("s3://b/savepoints/sp-j1-1")));
        // a new request once the job ended is refused
        assert_eq!(post(&addr, r#"{"requestId": "j1-sp-3"}"#).0, 409);
    }

    #[test]
    fn failed_savepoints_stay_failed_for_repeated_requests() {
        let (addr, board, rx) = server();
        assert_eq!(post(&addr, r#"{"requestId": "x.1"}"#).0, 202);
        assert!(rx.try_recv().is_ok());
        board.on_event(&CheckpointEvent::Failed { id: 3, savepoint: true, request: Some("x.1"), error: "writing s3://b/sp/_metadata: connection refused" });
        assert_eq!(post(&addr, r#"{"requestId": "x.1"}"#), (202, serde_json::json!({"id": "x.1"})));
        assert!(rx.try_recv().is_err());
        let (_, body) = request(&addr, "GET", &paths::savepoint("x.1"), None).unwrap();
        let st: SavepointStatus = serde_json::from_str(&body).unwrap();
        assert_eq!(st.status, OperationStatus::Failed);
        assert!(st.error.unwrap().contains("s3://b/sp"));
        let (_, body) = request(&addr, "GET", paths::CHECKPOINTS, None).unwrap();
        let list: CheckpointList = serde_json::from_str(&body).unwrap();
        assert_eq!(list.checkpoints[0].status, OperationStatus::Failed);
        assert!(list.checkpoints[0].error.as_deref().unwrap().contains("connection refused"));
    }

    #[test]
    fn bad_request_ids_and_taken_targets_are_refused() {
        let (addr, _board, rx) = server();
        for bad in [r#""""#, r#""a b""#, r#""a/b""#, r#"".."""#, &format!("\"{}\"", "a".repeat(129))] {
            let (code, body) = post(&addr, &format!(r#"{{"requestId": {bad}}}"#));
            assert_eq!(code, 400, "{bad}: {body}");
            assert!(body["error"].as_str().unwrap().contains("requestId"), "{body}");
        }
        assert_eq!(post(&addr, &format!(r#"{{"requestId": "{}"}}"#, "a".repeat(128))).0, 202);
        assert!(rx.try_recv().is_ok());
        let dir = std::env::temp_dir().join(format!("weir-rest-taken-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("_metadata"), "{}").unwrap();
        let (code, body) = post(&addr, &format!(r#"{{"target": "file://{}", "requestId": "t-1"}}"#, dir.display()));
        assert_eq!(code, 409, "{body}");
        assert!(body["error"].as_str().unwrap().contains("_metadata"), "{body}");
        assert!(rx.try_recv().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn targets_are_validated() {
        assert!(validate_target("s3://bucket/sp").is_ok());
        assert!(validate_target("file:///tmp/x").is_ok());
        assert!(validate_target("/tmp/x").is_err());
        assert!(validate_target("http://x").is_err());
        assert!(validate_target("s3://a\nb").is_err());
    }
}
