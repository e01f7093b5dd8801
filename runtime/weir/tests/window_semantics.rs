//! Window, session-merge, lateness and timer semantics checked against a simple
//! reference model on random out-of-order inputs, at parallelism 1 and 4.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::connector::collection::{CollectSink, ScriptSource, Scripted};
use weir::state::AggregateFunction;
use weir::window::{EventTimeSessionWindows, SlidingEventTimeWindows, TimeWindow, TumblingEventTimeWindows, Window};
use weir::{JobConfig, OutputTag, StreamEnv, WatermarkStrategy};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

type Ev = (u8, i64, i64); // key, ts, value
type Fired = (u8, i64, i64, u64, i64); // key, start, end, count, sum

#[derive(Clone)]
struct CountSum;
impl AggregateFunction for CountSum {
    type In = Ev;
    type Acc = (u64, i64);
    type Out = (u64, i64);
    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (u64, i64), v: &Ev) {
        acc.0 += 1;
        acc.1 += v.2;
    }
    fn get_result(&self, acc: &(u64, i64)) -> (u64, i64) {
        *acc
    }
    fn merge(&self, acc: &mut (u64, i64), o: (u64, i64)) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
}

fn assign(kind: Kind, ts: i64) -> Vec<TimeWindow> {
    match kind {
        Kind::Tumbling(size) => {
            let s = ts - ts.rem_euclid(size);
            vec![TimeWindow::new(s, s + size)]
        }
        Kind::Sliding(size, slide) => {
            let mut v = Vec::new();
            let mut s = ts - ts.rem_euclid(slide);
            while s > ts - size {
                v.push(TimeWindow::new(s, s + size));
                s -= slide;
            }
            v
        }
        Kind::Session(gap) => vec![TimeWindow::new(ts, ts + gap)],
    }
}

struct RefWin {
    count: u64,
    sum: i64,
    pending: bool,
}

/// The reference: a direct reading of the semantics, no timers.
fn reference(kind: Kind, lateness: i64, script: &[Scripted<Ev>]) -> (Vec<Fired>, Vec<(u8, i64)>) {
    let mut wins: BTreeMap<(u8, TimeWindow), RefWin> = BTreeMap::new();
    let mut wm = i64::MIN;
    let mut fired = Vec::new();
    let mut late = Vec::new();
    let fire = |k: u8, w: &TimeWindow, r: &RefWin, out: &mut Vec<Fired>| out.push((k, w.start, w.end, r.count, r.sum));
    let advance = |wm: i64, wins: &mut BTreeMap<(u8, TimeWindow), RefWin>, fired: &mut Vec<Fired>| {
        for ((k, w), r) in wins.iter_mut() {
            if r.pending && w.max_timestamp() <= wm {
                r.pending = false;
                fire(*k, w, r, fired);
            }
        }
        wins.retain(|(_, w), _| w.max_timestamp().saturating_add(lateness) > wm);
    };
    for item in script {
        match *item {
            Scripted::Watermark(t) => {
                if t > wm {
                    wm = t;
                    advance(wm, &mut wins, &mut fired);
                }
            }
            Scripted::Record(ts, (k, _, v)) => {
                let mut skipped = true;
                for nw in assign(kind, ts) {
                    let target = if let Kind::Session(_) = kind {
                        let touching: Vec<TimeWindow> =
                            wins.keys().filter(|(kk, w)| *kk == k && w.intersects(&nw)).map(|(_, w)| *w).collect();
                        let merged = touching.iter().fold(nw, |a, w| a.cover(w));
                        if merged.max_timestamp().saturating_add(lateness) <= wm {
                            continue;
                        }
                        if !(touching.len() == 1 && touching[0] == merged) {
                            let mut r = RefWin { count: 0, sum: 0, pending: merged.max_timestamp() > wm };
                            for w in &touching {
                                let old = wins.remove(&(k, *w)).expect("touching window");
                                r.count += old.count;
                                r.sum += old.sum;
                            }
                            wins.insert((k, merged), r);
                        }
                        merged
                    } else {
                        if nw.max_timestamp().saturating_add(lateness) <= wm {
                            continue;
                        }
                        nw
                    };
                    skipped = false;
                    let r = wins.entry((k, target)).or_insert(RefWin { count: 0, sum: 0, pending: target.max_timestamp() > wm });
                    r.count += 1;
                    r.sum += v;
                    if target.max_timestamp() <= wm {
                        fire(k, &target, r, &mut fired);
                    }
                }
                if skipped && ts.saturating_add(lateness) <= wm {
                    late.push((k, ts));
                }
            }
        }
    }
    advance(i64::MAX, &mut wins, &mut fired);
    fired.sort();
    late.sort();
    (fired, late)
}

fn engine(kind: Kind, lateness: i64, script: &[Scripted<Ev>], p: u32) -> (Vec<Fired>, Vec<(u8, i64)>) {
    let env = StreamEnv::new(JobConfig { name: "windows".into(), parallelism: p, max_parallelism: 128, ..Default::default() });
    let script = script.to_vec();
    let late_tag = OutputTag::<Ev>::new("late");
    let out = CollectSink::new();
    let late = CollectSink::new();
    let keyed = env
        .source("script", move |ctx| ScriptSource::new(script.clone(), ctx.subtask), WatermarkStrategy::none())
        // one source subtask: with empty parallel siblings, how much is late would
        // depend on when they report end-of-input (a race the reference cannot model)
        .parallelism(1)
        .key_by(|e: &Ev| e.0);
    let emit = |k: &u8, w: &TimeWindow, r: (u64, i64), out: &mut weir::Collector<'_, Fired>| out.emit((*k, w.start, w.end, r.0, r.1));
    let lat = Duration::from_millis(lateness as u64);
    let fired = match kind {
        Kind::Tumbling(s) => keyed
            .window(TumblingEventTimeWindows::of(Duration::from_millis(s as u64)))
            .allowed_lateness(lat)
            .side_output_late_data(&late_tag)
            .aggregate_with(CountSum, emit),
        Kind::Sliding(s, sl) => keyed
            .window(SlidingEventTimeWindows::of(Duration::from_millis(s as u64), Duration::from_millis(sl as u64)))
            .allowed_lateness(lat)
            .side_output_late_data(&late_tag)
            .aggregate_with(CountSum, emit),
        Kind::Session(g) => keyed
            .window(EventTimeSessionWindows::with_gap(Duration::from_millis(g as u64)))
            .allowed_lateness(lat)
            .side_output_late_data(&late_tag)
            .aggregate_with(CountSum, emit),
    };
    let (o, l) = (out.clone(), late.clone());
    fired.sink("fired", move |_| o.clone());
    fired.side_output(&late_tag).sink("late", move |_| l.clone());
    env.execute().expect("job runs");
    let mut f: Vec<Fired> = out.take().into_iter().map(|r| r.value).collect();
    let mut l: Vec<(u8, i64)> = late.take().into_iter().map(|r| (r.value.0, r.value.1)).collect();
    f.sort();
    l.sort();
    (f, l)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..50).prop_map(|s| Kind::Tumbling(s * 100)),
        (1i64..10, 1i64..5).prop_map(|(n, sl)| Kind::Sliding(n * sl * 100, sl * 100)),
        (1i64..30).prop_map(|g| Kind::Session(g * 100)),
    ]
}

/// Random records with bounded disorder; a watermark after some of them.
fn script() -> impl Strategy<Value = Vec<Scripted<Ev>>> {
    (prop::collection::vec((0u8..5, 0i64..20, -5i64..20, -1000i64..1000, any::<bool>()), 1..150), 0i64..30).prop_map(|(items, bound)| {
        // multiples of 100, like window sizes: watermarks land exactly on window ends
        let bound = bound * 100;
        let mut t = 0i64;
        let mut max = i64::MIN;
        let mut out = Vec::new();
        for (k, step, jitter, v, wm) in items {
            t += step * 100;
            let ts = (t + jitter * 100).max(0);
            max = max.max(ts);
            out.push(Scripted::Record(ts, (k, ts, v)));
            if wm {
                out.push(Scripted::Watermark(max - bound - 1));
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn windows_match_the_reference(kind in kind(), lateness in prop_oneof![Just(0i64), 0i64..3000], script in script()) {
        let want = reference(kind, lateness, &script);
        let p1 = engine(kind, lateness, &script, 1);
        prop_assert_eq!(&p1, &want, "P=1 {:?} lateness {}", kind, lateness);
        let p4 = engine(kind, lateness, &script, 4);
        prop_assert_eq!(&p4, &want, "P=4 {:?} lateness {}", kind, lateness);
    }
}

#[test]
fn session_merging_by_a_bridging_record() {
    // two sessions [0,1000) and [1500,2500) are bridged by a record at 900 (gap 1000)
    let r = |ts: i64| Scripted::Record(ts, (1u8, ts, 1i64));
    let script = vec![r(0), r(1500), r(900), Scripted::Watermark(10_000)];
    let (fired, _) = engine(Kind::Session(1000), 0, &script, 2);
    assert_eq!(fired, vec![(1, 0, 2500, 3, 3)]);
    assert_eq!(reference(Kind::Session(1000), 0, &script).0, fired);
}
