//! End-to-end pipelines through the engine: chaining, exchanges, windows, state, timers.

use std::time::Duration;

use weir::connector::collection::{CollectSink, ScriptSource, Scripted, VecSource};
use weir::state::{OpenContext, ValueState};
use weir::window::{Count, TumblingEventTimeWindows, TimeWindow};
use weir::{JobConfig, JobError, KeyedContext, KeyedProcessFunction, OutputTag, StreamEnv, TimeDomain, WatermarkStrategy};

fn env(p: u32) -> StreamEnv {
    StreamEnv::new(JobConfig { name: "test".into(), parallelism: p, ..Default::default() })
}

fn words(n: usize) -> Vec<(i64, String)> {
    (0..n).map(|i| (i as i64 * 100, format!("w{}", i % 7))).collect()
}

#[test]
fn map_filter_chain_and_rebalance() {
    for p in [1, 3] {
        let env = env(p);
        let sink = CollectSink::new();
        let s = sink.clone();
        env.source("numbers", |ctx| VecSource::new((0..10_000i64).map(|i| (i, i)).collect(), ctx.subtask), WatermarkStrategy::none())
            .map(|x| x * 2)
            .filter(|x| x % 3 == 0)
            .rebalance()
            .map(|x| x + 1)
            .sink("collect", move |_| s.clone());
        env.execute().unwrap();
        let mut got: Vec<i64> = sink.take().into_iter().map(|r| r.value).collect();
        got.sort();
        let want: Vec<i64> = (0..10_000i64).map(|x| x * 2).filter(|x| x % 3 == 0).map(|x| x + 1).collect();
        assert_eq!(got, want, "parallelism {p}");
    }
}

#[test]
fn tumbling_count_per_key_is_independent_of_parallelism() {
    let run = |p: u32| {
        let env = env(p);
        let sink = CollectSink::new();
        let s = sink.clone();
        env.source("words", |ctx| VecSource::new(words(5000), ctx.subtask), WatermarkStrategy::source_timestamps(Duration::ZERO).with_interval(Duration::ZERO))
            .key_by(|w: &String| w.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
            .aggregate_with(Count::new(), |k: &String, w: &TimeWindow, n, out| out.emit((k.clone(), w.start, n)))
            .sink("collect", move |_| s.clone());
        env.execute().unwrap();
        let mut v: Vec<_> = sink.take().into_iter().map(|r| (r.ts, r.value)).collect();
        v.sort();
        v
    };
    let one = run(1);
    assert_eq!(one.len(), 7 * 50, "500 s of data in 10 s windows, 7 keys");
    assert!(one.iter().all(|(ts, (_, start, n))| *ts == start + 9_999 && (14..=15).contains(n)));
    assert_eq!(run(4), one);
}

/// Counts per key and emits the count 1 s (event time) after the key's first record.
#[derive(Clone, Default)]
struct DelayedCount {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<String, String, (String, u64)> for DelayedCount {
    fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), JobError> {
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }
    fn process(&mut self, _v: String, ctx: &mut KeyedContext<'_, String, (String, u64)>) {
        let st = self.count.clone().unwrap();
        let n = st.value(ctx).unwrap_or(0);
        if n == 0 {
            let t = ctx.timestamp() + 1000;
            ctx.register_event_time_timer(t);
        }
        st.update(ctx, n + 1);
    }
    fn on_timer(&mut self, _t: i64, d: TimeDomain, ctx: &mut KeyedContext<'_, String, (String, u64)>) {
        assert_eq!(d, TimeDomain::EventTime);
        let st = self.count.clone().unwrap();
        let n = st.value(ctx).unwrap_or(0);
        let k = ctx.key().clone();
        ctx.emit((k, n));
        st.clear(ctx);
    }
}

#[test]
fn keyed_state_and_event_timers() {
    for p in [1, 2] {
        let env = env(p);
        let sink = CollectSink::new();
        let s = sink.clone();
        // every key appears every 700 ms: each timer sees the records of its 1 s
        let script: Vec<Scripted<String>> = words(700).into_iter().flat_map(|(ts, w)| [Scripted::Record(ts, w), Scripted::Watermark(ts - 1)]).collect();
        env.source("words", move |ctx| ScriptSource::new(script.clone(), ctx.subtask), WatermarkStrategy::none())
            .parallelism(1)
            .key_by(|w: &String| w.clone())
            .process(DelayedCount::default())
            .sink("collect", move |_| s.clone());
        env.execute().unwrap();
        let got = sink.take();
        let total: u64 = got.iter().map(|r| r.value.1).sum();
        assert_eq!(total, 700, "every record counted once (p={p})");
        assert!(got.iter().all(|r| r.value.1 == 2 || r.value.1 == 1));
    }
}

/// Collects what `process` and `on_timer` see and emits it once per batch or round
/// of timers from `finish_batch`: (RECORDS, n) and (TIMERS, n).
#[derive(Clone, Default)]
struct Collecting {
    records: u64,
    timers: u64,
}

const RECORDS: bool = true;
const TIMERS: bool = false;

impl KeyedProcessFunction<String, String, (bool, u64)> for Collecting {
    fn process(&mut self, _w: String, ctx: &mut KeyedContext<'_, String, (bool, u64)>) {
        self.records += 1;
        ctx.register_event_time_timer(ctx.timestamp() + 1);
    }
    fn on_timer(&mut self, _t: i64, _d: TimeDomain, _ctx: &mut KeyedContext<'_, String, (bool, u64)>) {
        self.timers += 1;
    }
    fn finish_batch(&mut self, out: &mut weir::record::Collector<'_, (bool, u64)>) {
        for (what, n) in [(RECORDS, std::mem::take(&mut self.records)), (TIMERS, std::mem::take(&mut self.timers))] {
            if n > 0 {
                out.emit((what, n));
            }
        }
    }
}

#[test]
fn finish_batch_emits_what_a_batch_and_a_round_of_timers_collected() {
    for p in [1, 2] {
        let env = env(p);
        let sink = CollectSink::new();
        let s = sink.clone();
        env.source("words", |ctx| VecSource::new(words(5000), ctx.subtask), WatermarkStrategy::source_timestamps(Duration::ZERO))
            .key_by(|w: &String| w.clone())
            .process(Collecting::default())
            .sink("collect", move |_| s.clone());
        env.execute().unwrap();
        let got = sink.take();
        let sum = |what: bool| got.iter().filter(|r| r.value.0 == what).map(|r| r.value.1).sum::<u64>();
        assert_eq!(sum(RECORDS), 5000, "every record once (p={p})");
        assert_eq!(sum(TIMERS), 5000, "every timer once (p={p})");
        // nothing stays collected, and it leaves per batch, not per record
        let outputs = got.iter().filter(|r| r.value.0 == RECORDS).count();
        assert!(outputs < 100, "one output per batch of records (p={p}): {outputs}");
    }
}

#[test]
fn late_records_go_to_the_side_output() {
    let env = env(2);
    let late = OutputTag::<(String, i64)>::new("late");
    let main = CollectSink::new();
    let side = CollectSink::new();
    let (m, s) = (main.clone(), side.clone());
    let r = |ts: i64| Scripted::Record(ts, ("a".to_string(), ts));
    let items = vec![r(1000), r(25_000), Scripted::Watermark(24_999), r(2000), r(15_000)];
    let windowed = env
        .source("events", move |ctx| ScriptSource::new(items.clone(), ctx.subtask), WatermarkStrategy::none())
        .parallelism(1) // one scripted source: lateness must not depend on empty siblings' timing
        .key_by(|e: &(String, i64)| e.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .side_output_late_data(&late)
        .aggregate(Count::new());
    windowed.sink("main", move |_| m.clone());
    windowed.side_output(&late).sink("late", move |_| s.clone());
    env.execute().unwrap();
    let mut counts: Vec<u64> = main.take().into_iter().map(|r| r.value).collect();
    counts.sort();
    // window [0,10) fired with 1 record when the watermark jumped to 25 s; 2000 and 15000 are late
    assert_eq!(counts, vec![1, 1]);
    let mut late_ts: Vec<i64> = side.take().into_iter().map(|r| r.value.1).collect();
    late_ts.sort();
    assert_eq!(late_ts, vec![2000, 15_000]);
}

#[test]
fn arrow_batches_are_keyed_by_key_group() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use weir::arrow::{KeyGroupBatch, KeyGroupId, split_by_key_group};
    for p in [1, 3] {
        let env = env(p);
        let sink = CollectSink::new();
        let s = sink.clone();
        let batches: Vec<(i64, weir::arrow::ArrowBatch)> =
            (0..20).map(|b| (b, weir::arrow::ArrowBatch(weir::arrow::int64_batch("k", (0..500).map(|i| (i * 31 + b) % 97).collect())))).collect();
        env.source("batches", move |ctx| VecSource::new(batches.clone(), ctx.subtask), WatermarkStrategy::none())
            .flat_map(|b: weir::arrow::ArrowBatch, out| {
                for part in split_by_key_group(&b.0, 0, 720).expect("Int64 key column") {
                    out.emit(part);
                }
            })
            .key_by(|b: &KeyGroupBatch| b.key_group)
            // debug builds assert that each key group reaches the subtask that owns it
            .process(|b: KeyGroupBatch, ctx: &mut KeyedContext<'_, KeyGroupId, (u32, i64, usize)>| {
                let sum: i64 = b.batch.0.column(0).as_primitive::<Int64Type>().values().iter().sum();
                ctx.emit((b.key_group.0, sum, b.batch.0.num_rows()))
            })
            .sink("collect", move |_| s.clone());
        let _ = KeyGroupId(0);
        env.execute().unwrap();
        let got = sink.take();
        assert_eq!(got.iter().map(|r| r.value.2).sum::<usize>(), 20 * 500, "every row arrives once (p={p})");
        let want_sum: i64 = (0..20i64).flat_map(|b| (0..500i64).map(move |i| (i * 31 + b) % 97)).sum();
        assert_eq!(got.iter().map(|r| r.value.1).sum::<i64>(), want_sum);
    }
}

/// Every sink subtask is given its input's watermarks: they only advance, there are
/// some during the run, and the input's end brings `MAX_WATERMARK`.
#[test]
fn sinks_see_the_watermarks_of_their_input() {
    use std::sync::{Arc, Mutex};
    use weir::connector::{ConnectorError, Sink};
    use weir::record::Rec;

    /// What one sink subtask saw.
    #[derive(Default)]
    struct Seen {
        max_ts: i64,
        marks: Vec<(i64, i64)>, // (watermark, greatest ts written before it)
    }
    struct WmSink(Arc<Mutex<Seen>>);
    impl Sink<String> for WmSink {
        fn write(&mut self, batch: &[Rec<String>]) -> Result<(), ConnectorError> {
            let mut s = self.0.lock().unwrap();
            for r in batch {
                s.max_ts = s.max_ts.max(r.ts);
            }
            Ok(())
        }
        fn on_watermark(&mut self, wm: i64) -> Result<(), ConnectorError> {
            let mut s = self.0.lock().unwrap();
            let m = s.max_ts;
            s.marks.push((wm, m));
            Ok(())
        }
    }
    for p in [1, 3] {
        // one record of what it saw per sink subtask
        let seen: Arc<Vec<Arc<Mutex<Seen>>>> = Arc::new((0..p).map(|_| Arc::default()).collect());
        let env = env(p);
        let s2 = seen.clone();
        env.source("words", |ctx| VecSource::new(words(30_000), ctx.subtask), WatermarkStrategy::source_timestamps(Duration::ZERO).with_interval(Duration::ZERO))
            .key_by(|w: &String| w.clone())
            .process(|w: String, ctx: &mut KeyedContext<'_, String, String>| ctx.emit(w))
            .sink("wm", move |ctx| WmSink(s2[ctx.subtask as usize].clone()));
        env.execute().unwrap();
        let mut total = 0;
        for (i, s) in seen.iter().enumerate() {
            let s = s.lock().unwrap();
            assert_eq!(s.marks.last().map(|m| m.0), Some(weir::time::MAX_WATERMARK), "parallelism {p}, sink {i}: the end");
            assert!(s.marks.windows(2).all(|w| w[0].0 < w[1].0), "parallelism {p}, sink {i}: watermarks advance: {:?}", s.marks);
            total += s.marks.len();
        }
        assert!(total > 2 * p as usize, "parallelism {p}: watermarks during the run: {total}");
    }
}
