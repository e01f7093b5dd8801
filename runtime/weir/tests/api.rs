//! The job API's building blocks end to end: state kinds and TTL, processing-time
//! timers, global windows with a count trigger, union, connect, idle sources.

use std::time::Duration;

use weir::connector::collection::{CollectSink, ScriptSource, Scripted, VecSource};
use weir::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
use weir::state::{AggregateFunction, AggregatingState, ListState, MapState, OpenContext, ReducingState, StateConfig, ValueState};
use weir::window::{Count, CountTrigger, GlobalWindows, PurgingTrigger, TumblingEventTimeWindows};
use weir::{Collector, CoProcessFunction, JobConfig, JobError, KeyedContext, KeyedProcessFunction, StreamEnv, TimeDomain, WatermarkStrategy};

fn env(p: u32) -> StreamEnv {
    StreamEnv::new(JobConfig { name: "api".into(), parallelism: p, ..Default::default() })
}

#[derive(Clone)]
struct Avg;
impl AggregateFunction for Avg {
    type In = i64;
    type Acc = (i64, i64);
    type Out = i64;
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, i64), v: &i64) {
        acc.0 += v;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, i64)) -> i64 {
        acc.0 / acc.1
    }
    fn merge(&self, acc: &mut (i64, i64), o: (i64, i64)) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
}

/// Every state kind, checked against what it must hold after each record.
#[derive(Clone, Default)]
struct AllStates {
    list: Option<ListState<i64>>,
    map: Option<MapState<i64, u32>>,
    sum: Option<ReducingState<i64>>,
    avg: Option<AggregatingState<Avg>>,
}

impl KeyedProcessFunction<u8, (u8, i64), (u8, usize, usize, i64, i64)> for AllStates {
    fn open(&mut self, ctx: &mut OpenContext<'_, u8>) -> Result<(), JobError> {
        self.list = Some(ctx.list_state("list")?);
        self.map = Some(ctx.map_state("map")?);
        self.sum = Some(ctx.reducing_state("sum", |a: i64, b: i64| a + b)?);
        self.avg = Some(ctx.aggregating_state("avg", Avg)?);
        Ok(())
    }
    fn process(&mut self, (k, v): (u8, i64), ctx: &mut KeyedContext<'_, u8, (u8, usize, usize, i64, i64)>) {
        let (list, map, sum, avg) = (self.list.clone().unwrap(), self.map.clone().unwrap(), self.sum.clone().unwrap(), self.avg.clone().unwrap());
        list.add(ctx, v);
        let seen = map.get(ctx, &(v % 3)).copied().unwrap_or(0);
        map.put(ctx, v % 3, seen + 1);
        sum.add(ctx, v);
        avg.add(ctx, v);
        let n = list.get(ctx).len();
        let distinct = map.entries(ctx).len();
        let s = *sum.get(ctx).unwrap();
        let a = avg.get(ctx).unwrap();
        ctx.emit((k, n, distinct, s, a));
    }
}

#[test]
fn list_map_reducing_and_aggregating_state() {
    let env = env(2);
    let out = CollectSink::new();
    let o = out.clone();
    let items: Vec<(i64, (u8, i64))> = (0..100).map(|i| (i, ((i % 2) as u8, i))).collect();
    env.source("n", move |c| VecSource::new(items.clone(), c.subtask), WatermarkStrategy::none())
        .key_by(|e: &(u8, i64)| e.0)
        .process(AllStates::default())
        .sink("out", move |_| o.clone());
    env.execute().unwrap();
    let got = out.take();
    let last = |k: u8| got.iter().filter(|r| r.value.0 == k).map(|r| r.value).max_by_key(|v| v.1).unwrap();
    // key 0: evens 0..98 (50 of them, sum 2450, avg 49); key 1: odds (sum 2500, avg 50)
    assert_eq!(last(0), (0, 50, 3, 2450, 49));
    assert_eq!(last(1), (1, 50, 3, 2500, 50));
}

/// Counts with a 150 ms time-to-live, reporting the count before each update.
#[derive(Clone, Default)]
struct TtlCount {
    count: Option<ValueState<u32>>,
}

impl KeyedProcessFunction<u8, u8, u32> for TtlCount {
    fn open(&mut self, ctx: &mut OpenContext<'_, u8>) -> Result<(), JobError> {
        self.count = Some(ctx.value_state(StateConfig::new("count").ttl(Duration::from_millis(150)))?);
        Ok(())
    }
    fn process(&mut self, _v: u8, ctx: &mut KeyedContext<'_, u8, u32>) {
        let c = self.count.clone().unwrap();
        let n = c.value(ctx).unwrap_or(0);
        ctx.emit(n);
        c.update(ctx, n + 1);
    }
}

/// Emits a record, waits, emits more: for processing-time behaviour.
struct Paced {
    steps: Vec<(u64, u8)>,
    next: usize,
    started: Option<std::time::Instant>,
}

impl Source<u8> for Paced {
    fn poll(&mut self, out: &mut SourceOutput<'_, u8>) -> Result<SourcePoll, ConnectorError> {
        let t0 = *self.started.get_or_insert_with(std::time::Instant::now);
        while let Some(&(at, v)) = self.steps.get(self.next) {
            if t0.elapsed() < Duration::from_millis(at) {
                return Ok(SourcePoll::Idle);
            }
            out.collect(v);
            self.next += 1;
        }
        Ok(SourcePoll::Finished)
    }
}

#[test]
fn state_expires_after_its_ttl() {
    let env = env(1);
    let out = CollectSink::new();
    let o = out.clone();
    // two records, then 400 ms of silence (> TTL), then one more
    env.source("paced", |_| Paced { steps: vec![(0, 1), (10, 1), (410, 1)], next: 0, started: None }, WatermarkStrategy::none())
        .key_by(|v: &u8| *v)
        .process(TtlCount::default())
        .sink("out", move |_| o.clone());
    env.execute().unwrap();
    let got: Vec<u32> = out.take().into_iter().map(|r| r.value).collect();
    assert_eq!(got, vec![0, 1, 0], "the count expired during the silence");
}

/// Emits "fired" from a processing-time timer 50 ms after each key's first record.
#[derive(Clone, Default)]
struct ProcTimer;

impl KeyedProcessFunction<u8, u8, (u8, String)> for ProcTimer {
    fn process(&mut self, v: u8, ctx: &mut KeyedContext<'_, u8, (u8, String)>) {
        let t = ctx.current_processing_time() + 50;
        ctx.register_processing_time_timer(t);
        ctx.emit((v, "seen".into()));
    }
    fn on_timer(&mut self, t: i64, domain: TimeDomain, ctx: &mut KeyedContext<'_, u8, (u8, String)>) {
        assert_eq!(domain, TimeDomain::ProcessingTime);
        assert!(ctx.current_processing_time() >= t);
        let k = *ctx.key();
        ctx.emit((k, "fired".into()));
    }
}

#[test]
fn processing_time_timers_fire_while_the_source_is_quiet() {
    let env = env(1);
    let out = CollectSink::new();
    let o = out.clone();
    env.source("paced", |_| Paced { steps: vec![(0, 1), (0, 2), (300, 3)], next: 0, started: None }, WatermarkStrategy::none())
        .key_by(|v: &u8| *v)
        .process(ProcTimer)
        .sink("out", move |_| o.clone());
    env.execute().unwrap();
    let got: Vec<(u8, String)> = out.take().into_iter().map(|r| r.value).collect();
    // keys 1 and 2 fire during the 300 ms pause, before key 3 is seen
    let pos = |x: (u8, &str)| got.iter().position(|g| g.0 == x.0 && g.1 == x.1).unwrap_or_else(|| panic!("{x:?} missing in {got:?}"));
    assert!(pos((1, "fired")) < pos((3, "seen")));
    assert!(pos((2, "fired")) < pos((3, "seen")));
}

#[test]
fn global_windows_with_a_purging_count_trigger() {
    let env = env(2);
    let out = CollectSink::new();
    let o = out.clone();
    let items: Vec<(i64, (u8, i64))> = (0..25).map(|i| (i, (0u8, i))).collect();
    env.source("n", move |c| VecSource::new(items.clone(), c.subtask), WatermarkStrategy::none())
        .key_by(|e: &(u8, i64)| e.0)
        .window(GlobalWindows::create())
        .trigger(PurgingTrigger(CountTrigger::of(10)))
        .aggregate(Count::new())
        .sink("out", move |_| o.clone());
    env.execute().unwrap();
    let got: Vec<u64> = out.take().into_iter().map(|r| r.value).collect();
    assert_eq!(got, vec![10, 10], "fires every 10 records; the 5 left never fire");
}

#[derive(Clone)]
struct Tag;
impl CoProcessFunction<i64, String, String> for Tag {
    fn process1(&mut self, v: i64, out: &mut Collector<'_, String>) {
        out.emit(format!("n{v}"))
    }
    fn process2(&mut self, v: String, out: &mut Collector<'_, String>) {
        out.emit(format!("s{v}"))
    }
}

#[test]
fn union_and_connect() {
    let env = env(2);
    let out = CollectSink::new();
    let o = out.clone();
    let a = env.source("a", |c| VecSource::new((0..50).map(|i| (i, i)).collect(), c.subtask), WatermarkStrategy::none());
    let b = env.source("b", |c| VecSource::new((100..150).map(|i| (i, i)).collect(), c.subtask), WatermarkStrategy::none());
    let s = env.source("s", |c| VecSource::new(vec![(0, "x".to_string()), (1, "y".to_string())], c.subtask), WatermarkStrategy::none());
    a.union(&[b]).connect(&s).process(Tag).sink("out", move |_| o.clone());
    env.execute().unwrap();
    let mut got: Vec<String> = out.take().into_iter().map(|r| r.value).collect();
    got.sort();
    let mut want: Vec<String> = (0..50).chain(100..150).map(|i| format!("n{i}")).collect();
    want.extend(["sx".to_string(), "sy".to_string()]);
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn an_idle_source_does_not_hold_back_the_watermark() {
    // source 0 emits a record at event time 1 s then a watermark past its window;
    // source 1 stays silent (but open) for 600 ms and is marked idle after 100 ms.
    // The window must fire before source 1 ends.
    let env = env(1);
    let out = CollectSink::new();
    let o = out.clone();
    let started = std::time::Instant::now();
    struct Silent(std::time::Instant);
    impl Source<(u8, i64)> for Silent {
        fn poll(&mut self, _out: &mut SourceOutput<'_, (u8, i64)>) -> Result<SourcePoll, ConnectorError> {
            Ok(if self.0.elapsed() > Duration::from_millis(600) { SourcePoll::Finished } else { SourcePoll::Idle })
        }
    }
    let busy = env
        .source("busy", |c| ScriptSource::new(vec![Scripted::Record(1000, (0u8, 1000i64)), Scripted::Watermark(20_000)], c.subtask), WatermarkStrategy::none())
        .parallelism(1);
    let silent = env
        .source("silent", |_| Silent(std::time::Instant::now()), WatermarkStrategy::<(u8, i64)>::none().with_idleness(Duration::from_millis(100)))
        .parallelism(1);
    busy.union(&[silent])
        .key_by(|e: &(u8, i64)| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(Count::new())
        .map(move |n| (n, started.elapsed().as_millis() as u64))
        .sink("out", move |_| o.clone());
    env.execute().unwrap();
    let got: Vec<(u64, u64)> = out.take().into_iter().map(|r| r.value).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 1);
    assert!(got[0].1 < 550, "fired after {} ms: the idle source held the watermark back", got[0].1);
}
