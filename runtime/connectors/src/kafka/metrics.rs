//! Prometheus metrics of the Kafka connector, in the engine's connector registry
//! ([`weir::metrics::connector_registry`], rendered by `GET /metrics`):
//!
//! - `weir_kafka_records_in_total{table}`, `weir_kafka_bytes_in_total{table}`:
//!   records (and key + value bytes) read by the table's sources;
//! - `weir_kafka_records_out_total{table,topic}`, `weir_kafka_bytes_out_total{table,topic}`:
//!   records written (acknowledged by the broker) by the table's sinks;
//! - `weir_kafka_consumer_lag{table,topic,partition}`: the partition's high watermark
//!   (from the client's statistics, every `statistics.interval.ms`, default 5 s)
//!   minus the source's position (the next offset it reads);
//! - `weir_kafka_consumer_position{table,topic,partition}`: that position.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use weir::metrics::prometheus::{IntCounterVec, IntGaugeVec, Opts};

struct Families {
    records_in: IntCounterVec,
    bytes_in: IntCounterVec,
    records_out: IntCounterVec,
    bytes_out: IntCounterVec,
    lag: IntGaugeVec,
    position: IntGaugeVec,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let counter = |n: &str, h: &str, l: &[&str]| IntCounterVec::new(Opts::new(n, h), l).expect("valid metric");
        let gauge = |n: &str, h: &str| IntGaugeVec::new(Opts::new(n, h), &["table", "topic", "partition"]).expect("valid metric");
        let f = Families {
            records_in: counter("weir_kafka_records_in_total", "Records read from Kafka", &["table"]),
            bytes_in: counter("weir_kafka_bytes_in_total", "Key and value bytes read from Kafka", &["table"]),
            records_out: counter("weir_kafka_records_out_total", "Records written to Kafka (acknowledged)", &["table", "topic"]),
            bytes_out: counter("weir_kafka_bytes_out_total", "Key and value bytes written to Kafka (acknowledged)", &["table", "topic"]),
            lag: gauge("weir_kafka_consumer_lag", "High watermark minus the source's position, per partition"),
            position: gauge("weir_kafka_consumer_position", "The next offset the source reads, per partition"),
        };
        let r = weir::metrics::connector_registry();
        for c in [
            Box::new(f.records_in.clone()) as Box<dyn weir::metrics::prometheus::core::Collector>,
            Box::new(f.bytes_in.clone()),
            Box::new(f.records_out.clone()),
            Box::new(f.bytes_out.clone()),
            Box::new(f.lag.clone()),
            Box::new(f.position.clone()),
        ] {
            let _ = r.register(c);
        }
        f
    })
}

/// The metrics of one source subtask.
pub struct SourceMetrics {
    table: String,
    records: weir::metrics::prometheus::IntCounter,
    bytes: weir::metrics::prometheus::IntCounter,
    /// (topic, partition) → (high watermark, position)
    parts: Mutex<HashMap<(String, i32), (i64, i64)>>,
}

impl SourceMetrics {
    pub fn new(table: &str) -> Arc<Self> {
        let f = families();
        Arc::new(SourceMetrics { table: table.to_string(), records: f.records_in.with_label_values(&[table]), bytes: f.bytes_in.with_label_values(&[table]), parts: Mutex::new(HashMap::new()) })
    }

    #[inline]
    pub fn records_in(&self, n: u64, bytes: u64) {
        self.records.inc_by(n);
        self.bytes.inc_by(bytes);
    }

    fn update(&self, topic: &str, partition: i32, hw: Option<i64>, pos: Option<i64>) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let e = match parts.get_mut(&(topic.to_string(), partition)) {
            Some(e) => e,
            None => parts.entry((topic.to_string(), partition)).or_insert((-1, -1)),
        };
        if let Some(h) = hw {
            e.0 = h;
        }
        if let Some(p) = pos {
            if e.1 == p && hw.is_none() {
                return;
            }
            e.1 = p;
        }
        let (h, p) = *e;
        drop(parts);
        let f = families();
        let ps = partition.to_string();
        if p >= 0 {
            f.position.with_label_values(&[&self.table, topic, &ps]).set(p);
            if h >= 0 {
                f.lag.with_label_values(&[&self.table, topic, &ps]).set((h - p).max(0));
            }
        }
    }

    /// The partition's high watermark, from the client's statistics.
    pub fn high_watermark(&self, topic: &str, partition: i32, hw: i64) {
        self.update(topic, partition, Some(hw), None);
    }

    /// The next offset the source reads of the partition.
    pub fn position(&self, topic: &str, partition: i32, next: i64) {
        self.update(topic, partition, None, Some(next));
    }
}

/// The metrics of one sink subtask (updated from the client's delivery callbacks).
pub struct SinkMetrics {
    records: weir::metrics::prometheus::IntCounter,
    bytes: weir::metrics::prometheus::IntCounter,
}

impl SinkMetrics {
    pub fn new(table: &str, topic: &str) -> Self {
        let f = families();
        SinkMetrics { records: f.records_out.with_label_values(&[table, topic]), bytes: f.bytes_out.with_label_values(&[table, topic]) }
    }

    #[inline]
    pub fn delivered(&self, bytes: usize) {
        self.records.inc();
        self.bytes.inc_by(bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_high_watermark_minus_the_position_labelled_by_partition() {
        let m = SourceMetrics::new("metrics_test");
        m.position("t", 2, 10);
        m.high_watermark("t", 2, 25);
        m.records_in(3, 30);
        let text = {
            let mut out = Vec::new();
            let enc = weir::metrics::prometheus::TextEncoder::new();
            weir::metrics::prometheus::Encoder::encode(&enc, &weir::metrics::connector_registry().gather(), &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(text.contains(r#"weir_kafka_consumer_lag{partition="2",table="metrics_test",topic="t"} 15"#), "{text}");
        assert!(text.contains(r#"weir_kafka_consumer_position{partition="2",table="metrics_test",topic="t"} 10"#), "{text}");
        assert!(text.contains(r#"weir_kafka_records_in_total{table="metrics_test"} 3"#), "{text}");
    }
}
