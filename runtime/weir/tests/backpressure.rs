//! Backpressure: a slow sink slows its sources down instead of growing memory, and
//! the backpressure metric (the signal an autoscaler reads) reports it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::connector::collection::VecSource;
use weir::connector::{ConnectorError, Sink};
use weir::{JobConfig, Rec, StreamEnv, WatermarkStrategy};

/// Takes about `per_record` per record it writes.
struct SlowSink {
    per_record: Duration,
    written: Arc<AtomicU64>,
}

impl Sink<u64> for SlowSink {
    fn write(&mut self, batch: &[Rec<u64>]) -> Result<(), ConnectorError> {
        std::thread::sleep(self.per_record * batch.len() as u32);
        self.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn a_slow_sink_backpressures_the_source_with_bounded_buffers() {
    const P: u32 = 2;
    let env = StreamEnv::new(JobConfig { name: "slow".into(), parallelism: P, ..Default::default() });
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    // ~20 k records/s per sink subtask; the source could produce millions per second
    env.source("numbers", |ctx| VecSource::new((0..5_000_000u64).map(|i| (0, i)).collect(), ctx.subtask), WatermarkStrategy::none())
        .rebalance()
        .map(|x| x + 1)
        .sink("slow", move |_| SlowSink { per_record: Duration::from_micros(50), written: w.clone() });
    let job = env.launch().expect("launch");
    let source = job.metrics.iter().find(|m| m.is_source).expect("source task").clone();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let (emitted0, written0) = (source.records_out.load(Ordering::Relaxed), written.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(2));
    let secs = t0.elapsed().as_secs_f64();
    let emitted = source.records_out.load(Ordering::Relaxed);
    let written_now = written.load(Ordering::Relaxed);
    let backpressured = source.backpressured_ns.load(Ordering::Relaxed) as f64 / 1e9;
    job.cancel();
    let _ = job.wait();

    // in flight between source and sink: at most the bounded queues and buffers
    // (per channel 8 batches of 1024, P×P channels, plus a batch per buffer)
    let bound = (P * P) as u64 * (8 + 2) * 1024 + 4 * 1024 * P as u64;
    assert!(emitted - written_now <= bound, "in flight {} > bound {bound}", emitted - written_now);
    // the source runs at the sink's pace
    let source_rate = (emitted - emitted0) as f64 / secs;
    let sink_rate = (written_now - written0) as f64 / secs;
    assert!(sink_rate > 1000.0, "the sink makes progress ({sink_rate:.0}/s)");
    assert!(source_rate < sink_rate * 1.5 + 5000.0, "source {source_rate:.0}/s vs sink {sink_rate:.0}/s");
    // and its time is mostly spent blocked on the full queues
    assert!(backpressured > 1.0, "the source reports backpressure ({backpressured:.2}s of ~2.5s)");
}
