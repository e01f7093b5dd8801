//! The operator's own metrics and its `/metrics` + `/healthz` HTTP server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::Result;

/// Counters and histograms of the controller.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    pub errors: IntCounterVec,
    pub duration: Histogram,
    pub jobs: IntGaugeVec,
    pub transitions: HistogramVec,
    /// How long processing paused in an upgrade, rescale, restart or rollback.
    pub pauses: HistogramVec,
    phases: Mutex<HashMap<String, String>>,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounter::with_opts(Opts::new("weir_operator_reconciles_total", "Reconciles of StreamJobs"))?;
        let errors = IntCounterVec::new(Opts::new("weir_operator_reconcile_errors_total", "Failed reconciles, by error"), &["error"])?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("weir_operator_reconcile_duration_seconds", "Duration of a reconcile")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let jobs = IntGaugeVec::new(Opts::new("weir_operator_jobs", "StreamJobs by phase"), &["phase"])?;
        let transitions = HistogramVec::new(
            HistogramOpts::new("weir_operator_transition_duration_seconds", "Duration of upgrades, rescales, suspends, ... by kind")
                .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
            &["kind"],
        )?;
        let pauses = HistogramVec::new(
            HistogramOpts::new(
                "weir_operator_processing_pause_seconds",
                "Upgrades, rescales, restarts, rollbacks: from the start of the transition to the new job's subtasks restored and started, by kind",
            )
            .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            &["kind"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        registry.register(Box::new(pauses.clone()))?;
        Ok(Metrics { registry, reconciles, errors, duration, jobs, transitions, pauses, phases: Mutex::new(HashMap::new()) })
    }

    /// Records the phase of job `key` (None: gone) and refreshes the per-phase gauge.
    pub fn set_phase(&self, key: &str, phase: Option<&str>) {
        let Ok(mut phases) = self.phases.lock() else { return };
        match phase {
            Some(p) => phases.insert(key.to_string(), p.to_string()),
            None => phases.remove(key),
        };
        self.jobs.reset();
        for p in phases.values() {
            self.jobs.with_label_values(&[p.as_str()]).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
