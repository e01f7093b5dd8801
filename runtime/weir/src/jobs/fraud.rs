//! Fraud detection (the event-driven example): a small transaction (< 1.00) followed
//! by a large one (> 500.00) on the same account within one minute of event time
//! raises an alert. Keyed state remembers the small transaction; an event-time timer
//! forgets it after the minute.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BuiltinJob, JobParams};
use crate::connector::jsonl::LinesSource;
use crate::connector::sequence::SequenceSource;
use crate::error::JobError;
use crate::operator::keyed::{KeyedContext, KeyedProcessFunction, TimeDomain};
use crate::record::Timestamp;
use crate::state::{MapState, OpenContext, ValueState};
use crate::stream::StreamEnv;
use crate::time::WatermarkStrategy;

/// Amounts are in cents.
pub const SMALL: i64 = 100;
pub const LARGE: i64 = 50_000;
pub const WINDOW_MS: i64 = 60_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub account_id: i64,
    /// cents
    pub amount: i64,
    /// epoch milliseconds
    pub timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub account_id: i64,
    pub small_amount: i64,
    pub small_timestamp: i64,
    pub large_amount: i64,
    pub large_timestamp: i64,
}

/// The detector. Transactions of an account are evaluated in event-time order (they
/// wait in state until the watermark passes them), so the alerts do not depend on
/// the order in which parallel sources deliver them.
#[derive(Clone, Default)]
pub struct FraudDetector {
    /// the last small transaction: (amount, timestamp)
    small: Option<ValueState<(i64, i64)>>,
    /// transactions waiting for the watermark, by timestamp
    pending: Option<MapState<i64, Vec<Transaction>>>,
}

impl FraudDetector {
    fn evaluate(&self, tx: Transaction, ctx: &mut KeyedContext<'_, i64, Alert>) {
        let Some(small) = &self.small else { return };
        if let Some((amount, ts)) = small.value(ctx) {
            if tx.timestamp - ts > WINDOW_MS {
                small.clear(ctx);
            } else if tx.amount > LARGE {
                ctx.emit(Alert {
                    account_id: tx.account_id,
                    small_amount: amount,
                    small_timestamp: ts,
                    large_amount: tx.amount,
                    large_timestamp: tx.timestamp,
                });
                small.clear(ctx);
            }
        }
        if tx.amount < SMALL {
            small.update(ctx, (tx.amount, tx.timestamp));
            // forget it when the minute is over
            ctx.register_event_time_timer(tx.timestamp + WINDOW_MS + 1);
        }
    }
}

impl KeyedProcessFunction<i64, Transaction, Alert> for FraudDetector {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.small = Some(ctx.value_state("last-small")?);
        self.pending = Some(ctx.map_state("pending")?);
        Ok(())
    }

    fn process(&mut self, tx: Transaction, ctx: &mut KeyedContext<'_, i64, Alert>) {
        let Some(pending) = &self.pending else { return };
        let ts = tx.timestamp;
        let mut at = pending.remove(ctx, &ts).unwrap_or_default();
        at.push(tx);
        pending.put(ctx, ts, at);
        ctx.register_event_time_timer(ts);
    }

    fn on_timer(&mut self, t: Timestamp, _d: TimeDomain, ctx: &mut KeyedContext<'_, i64, Alert>) {
        let (Some(pending), Some(small)) = (self.pending.clone(), self.small.clone()) else { return };
        for tx in pending.remove(ctx, &t).unwrap_or_default() {
            self.evaluate(tx, ctx);
        }
        if small.value(ctx).is_some_and(|(_, ts)| t - ts > WINDOW_MS) {
            small.clear(ctx);
        }
    }
}

/// The alerts of a sequence of transactions, computed directly (the test oracle).
pub fn reference_alerts(txs: &[Transaction]) -> Vec<Alert> {
    let mut sorted: Vec<&Transaction> = txs.iter().collect();
    sorted.sort_by_key(|t| t.timestamp);
    let mut small: std::collections::HashMap<i64, (i64, i64)> = std::collections::HashMap::new();
    let mut alerts = Vec::new();
    for tx in sorted {
        if let Some(&(amount, ts)) = small.get(&tx.account_id) {
            if tx.timestamp - ts <= WINDOW_MS && tx.amount > LARGE {
                alerts.push(Alert { account_id: tx.account_id, small_amount: amount, small_timestamp: ts, large_amount: tx.amount, large_timestamp: tx.timestamp });
                small.remove(&tx.account_id);
            } else if tx.timestamp - ts > WINDOW_MS {
                small.remove(&tx.account_id);
            }
        }
        if tx.amount < SMALL {
            small.insert(tx.account_id, (tx.amount, tx.timestamp));
        }
    }
    alerts
}

pub const BASE_TIME: i64 = 1_700_000_000_000;

pub fn transaction(n: u64, accounts: u64) -> Transaction {
    let h = xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes());
    let account_id = (h % accounts) as i64;
    let r = (h >> 32) % 1000;
    let amount = if r < 20 {
        (h >> 12) as i64 % SMALL
    } else if r < 45 {
        LARGE + 1 + (h >> 14) as i64 % 100_000
    } else {
        SMALL + (h >> 16) as i64 % 20_000
    };
    Transaction { account_id, amount, timestamp: BASE_TIME + n as i64 * 10 }
}

fn build(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let accounts = p.extra.get("accounts").and_then(|v| v.as_u64()).unwrap_or(1000);
    let strategy = || WatermarkStrategy::<Transaction>::bounded_out_of_orderness(Duration::from_secs(5), |t: &Transaction| t.timestamp);
    let txs = match &p.input {
        Some(path) => {
            let path = path.clone();
            env.source(
                "transactions",
                move |_| LinesSource::new(&path, |l: &str| serde_json::from_str::<Transaction>(l).map_err(|e| e.to_string())),
                strategy(),
            )
            .parallelism(1)
        }
        None => {
            let (events, rate) = (p.events, p.rate);
            env.source(
                "transactions",
                move |ctx| {
                    // deterministic transactions: one every 10 ms of event time; about 1 in 50 small, 1 in 40 large
                    SequenceSource::new(ctx.subtask, ctx.parallelism, events, rate, move |n| {
                        let t = transaction(n, accounts);
                        (t.timestamp, t)
                    })
                },
                strategy(),
            )
        }
    }
    .uid("transactions");
    let alerts = txs.key_by(|t: &Transaction| t.account_id).process(FraudDetector::default()).uid("fraud-detector");
    super::sink_output(&alerts, p)
}

pub fn job() -> BuiltinJob {
    BuiltinJob {
        name: "fraud-detection",
        description: "alert when a transaction under 1.00 is followed by one over 500.00 on the same account within a minute",
        build,
    }
}
