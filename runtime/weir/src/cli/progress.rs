//! Live progress of a running job on the terminal, and the closing summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{si, thousands};
use crate::exec::plan::RunningJob;
use crate::time::{MAX_WATERMARK, MIN_WATERMARK};

/// Totals of a job run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Records produced by the sources.
    pub records_in: u64,
    /// Records written by the sinks.
    pub records_out: u64,
    /// Lowest watermark among sink tasks.
    pub watermark: i64,
}

pub fn totals(job: &RunningJob) -> Totals {
    let mut t = Totals { watermark: MAX_WATERMARK, ..Default::default() };
    let mut any_sink = false;
    for m in &job.metrics {
        if m.is_source {
            t.records_in += m.records_in.load(Ordering::Relaxed);
        }
        if m.is_sink {
            any_sink = true;
            t.records_out += m.records_out.load(Ordering::Relaxed);
            t.watermark = t.watermark.min(m.watermark.load(Ordering::Relaxed));
        }
    }
    if !any_sink {
        t.watermark = MIN_WATERMARK;
    }
    t
}

fn watermark_text(wm: i64) -> String {
    match wm {
        MIN_WATERMARK => "-".into(),
        MAX_WATERMARK => "end".into(),
        w => weir_nexmark::time::format_timestamp(w),
    }
}

/// Shows progress until the job's tasks have all finished.
pub fn watch(job: &RunningJob, label: &str, live: bool) {
    let tty = live && std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = (start, 0u64);
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(if tty { 250 } else { 100 }));
        if !tty {
            continue;
        }
        let t = totals(job);
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = (t.records_in.saturating_sub(last.1)) as f64 / dt;
        last = (now, t.records_in);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{label}  {:>6.1}s  in {} ({}ev/s)  out {}  watermark {}",
            start.elapsed().as_secs_f64(),
            thousands(t.records_in),
            si(rate),
            thousands(t.records_out),
            watermark_text(t.watermark)
        );
        let _ = err.flush();
    }
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}
