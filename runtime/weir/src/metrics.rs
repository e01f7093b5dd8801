//! Prometheus metrics of a worker (`GET /metrics`): per task records in/out, busy and
//! backpressured ratios and watermark lag (the signals an autoscaler needs), bytes per
//! peer on the data port, and the coordinator's checkpoint and restart metrics. The
//! names are the contract documented in docs/operations.md.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use prometheus::{Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::record::now_ms;
use crate::rest::board::StatusBoard;

pub use prometheus;

/// The registry of connector metrics (e.g. Kafka records, bytes and consumer lag per
/// partition): connectors register their collectors here once per process, and
/// `GET /metrics` renders them with the task metrics.
pub fn connector_registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(Registry::new)
}

/// Metrics the coordinator updates as things happen (kept across scrapes).
pub(crate) struct CoordinatorMetrics {
    registry: Registry,
    duration: Histogram,
    size: IntGauge,
    checkpoints: IntCounterVec,
    last: Gauge,
    pub(crate) restarts: IntCounter,
}

impl CoordinatorMetrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let duration = Histogram::with_opts(
            HistogramOpts::new("weir_checkpoint_duration_seconds", "Barrier injection to _metadata written")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
        )
        .expect("valid histogram");
        let size = IntGauge::new("weir_checkpoint_size_bytes", "Size of the last completed checkpoint").expect("valid gauge");
        let checkpoints = IntCounterVec::new(Opts::new("weir_checkpoints_total", "Checkpoints by outcome"), &["status"]).expect("valid counter");
        let last = Gauge::new("weir_last_checkpoint_timestamp_seconds", "Completion time of the newest checkpoint").expect("valid gauge");
        let restarts = IntCounter::new("weir_job_restarts_total", "Restarts of the job by its restart strategy").expect("valid counter");
        for c in [Box::new(duration.clone()) as Box<dyn prometheus::core::Collector>, Box::new(size.clone()), Box::new(checkpoints.clone()), Box::new(last.clone()), Box::new(restarts.clone())] {
            let _ = registry.register(c);
        }
        CoordinatorMetrics { registry, duration, size, checkpoints, last, restarts }
    }

    pub(crate) fn completed(&self, seconds: f64, bytes: u64, at_ms: i64) {
        self.duration.observe(seconds);
        self.size.set(bytes as i64);
        self.checkpoints.with_label_values(&["completed"]).inc();
        self.last.set(at_ms as f64 / 1000.0);
    }

    pub(crate) fn failed(&self) {
        self.checkpoints.with_label_values(&["failed"]).inc();
    }
}

/// Renders the metrics text; remembers the previous scrape to turn busy and
/// backpressured time into ratios over the scrape interval.
#[derive(Default)]
pub struct Exporter {
    /// (task name, subtask) → (when, idle ns, backpressured ns)
    last: Mutex<HashMap<(String, u32), (Instant, u64, u64)>>,
}

impl Exporter {
    pub fn render(&self, board: &StatusBoard) -> String {
        let registry = Registry::new();
        let records_in = IntCounterVec::new(Opts::new("weir_records_in_total", "Records that entered a task"), &["operator", "operator_kind", "subtask"]).expect("valid");
        let records_out = IntCounterVec::new(Opts::new("weir_records_out_total", "Records a task emitted"), &["operator", "subtask"]).expect("valid");
        let busy = GaugeVec::new(Opts::new("weir_busy_ratio", "Share of time a task spends processing"), &["task", "subtask"]).expect("valid");
        let bp = GaugeVec::new(Opts::new("weir_backpressured_ratio", "Share of time a task waits for room downstream"), &["task", "subtask"]).expect("valid");
        let lag = GaugeVec::new(Opts::new("weir_watermark_lag_seconds", "Wall clock minus the task's event-time watermark"), &["operator", "subtask"]).expect("valid");
        let sent = IntCounterVec::new(Opts::new("weir_exchange_bytes_sent_total", "Bytes sent on the data port"), &["peer"]).expect("valid");
        let recv = IntCounterVec::new(Opts::new("weir_exchange_bytes_received_total", "Bytes received on the data port"), &["peer"]).expect("valid");
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for t in board.tasks() {
            let sub = t.subtask.to_string();
            let kind = if t.is_source { "source" } else if t.is_sink { "sink" } else { "operator" };
            records_in.with_label_values(&[&t.name, kind, &sub]).inc_by(t.records_in.load(Ordering::Relaxed));
            records_out.with_label_values(&[&t.name, &sub]).inc_by(t.records_out.load(Ordering::Relaxed));
            let (idle, back) = (t.idle_ns.load(Ordering::Relaxed), t.backpressured_ns.load(Ordering::Relaxed));
            let (since, idle0, back0) = match last.get(&(t.name.clone(), t.subtask)) {
                Some(&(at, i, b)) if at >= t.started && i <= idle && b <= back => (at, i, b),
                _ => (t.started, 0, 0),
            };
            let window = now.duration_since(since).as_nanos().max(1) as f64;
            let back_r = ((back - back0) as f64 / window).clamp(0.0, 1.0);
            let idle_r = ((idle - idle0) as f64 / window).clamp(0.0, 1.0);
            let finished = t.finished.load(Ordering::Relaxed);
            busy.with_label_values(&[&t.name, &sub]).set(if finished { 0.0 } else { (1.0 - idle_r - back_r).max(0.0) });
            bp.with_label_values(&[&t.name, &sub]).set(if finished { 0.0 } else { back_r });
            last.insert((t.name.clone(), t.subtask), (now, idle, back));
            let wm = t.watermark.load(Ordering::Relaxed);
            if wm > i64::MIN && wm < i64::MAX {
                lag.with_label_values(&[&t.name, &sub]).set((now_ms() - wm) as f64 / 1000.0);
            }
        }
        for (peer, c) in board.network() {
            let p = peer.to_string();
            sent.with_label_values(&[&p]).inc_by(c.sent.load(Ordering::Relaxed));
            recv.with_label_values(&[&p]).inc_by(c.received.load(Ordering::Relaxed));
        }
        drop(last);
        for c in [
            Box::new(records_in) as Box<dyn prometheus::core::Collector>,
            Box::new(records_out),
            Box::new(busy),
            Box::new(bp),
            Box::new(lag),
            Box::new(sent),
            Box::new(recv),
        ] {
            let _ = registry.register(c);
        }
        let mut families = registry.gather();
        families.extend(board.metrics.registry.gather());
        families.extend(connector_registry().gather());
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::TaskMetrics;
    use std::sync::Arc;

    #[test]
    fn renders_task_and_coordinator_metrics() {
        let board = StatusBoard::new("q5", 1, 720);
        let t = Arc::new(TaskMetrics::new("window -> sink".into(), 0, false, true));
        t.add_in(42);
        t.add_backpressure(std::time::Duration::from_millis(1));
        board.set_tasks(vec![t]);
        board.metrics.completed(0.3, 1234, 1_700_000_000_000);
        let text = Exporter::default().render(&board);
        assert!(text.contains(r#"weir_records_in_total{operator="window -> sink",operator_kind="sink",subtask="0"} 42"#), "{text}");
        assert!(text.contains("weir_backpressured_ratio{"), "{text}");
        assert!(text.contains("weir_checkpoint_size_bytes 1234"), "{text}");
        assert!(text.contains("weir_checkpoint_duration_seconds_count 1"), "{text}");
    }
}
