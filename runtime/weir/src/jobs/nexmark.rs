//! The Nexmark benchmark queries as Weir jobs, with the semantics of the reference
//! Flink SQL queries (same windows, joins and output columns), fed by the standard
//! generator or by a JSON-lines file in the Flink Nexmark table shape.
//!
//! Each query keeps only the state its result needs: joins drop rows that can no
//! longer match once the watermark has passed, windows are cleaned when they fire.

use std::sync::Arc;
use std::time::Duration;

use weir_nexmark::generator::GeneratorConfig;
use weir_nexmark::model::{Auction, Bid, Event, Person};
use weir_nexmark::queries::{Q0Row, Q1Row, Q2Row, Q3Row, Q4Row, Q5Row, Q7Row, Q8Row};

use super::{BuiltinJob, JobParams, sink_output};
use crate::connector::jsonl::LinesSource;
use crate::connector::sequence::SequenceSource;
use crate::error::JobError;
use crate::operator::keyed::{KeyedContext, KeyedCoProcessFunction, KeyedProcessFunction, TimeDomain};
use crate::record::Timestamp;
use crate::state::{ListState, MapState, OpenContext, ValueState};
use crate::stream::{DataStream, StreamEnv};
use crate::time::WatermarkStrategy;
use crate::window::{Count, SlidingEventTimeWindows, TimeWindow};

/// The queries `weir bench nexmark` runs by default.
pub const QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"];

/// The watermark delay of the Flink Nexmark DDL (`dateTime - INTERVAL '4' SECOND`).
const OUT_OF_ORDERNESS: Duration = Duration::from_secs(4);
const WINDOW_10S: i64 = 10_000;

/// The generator as a parallel source: subtask `i` of `P` emits event numbers
/// `i, i+P, i+2P, …`, so the union is the same sequence for every `P`.
/// The standard Nexmark generator as a source: event `n` of the global sequence.
pub fn nexmark_source(config: Arc<GeneratorConfig>, subtask: u32, parallelism: u32, events: Option<u64>, rate: Option<u64>) -> SequenceSource<impl FnMut(u64) -> (Timestamp, Event) + Send> {
    SequenceSource::new(subtask, parallelism, events, rate, move |n| {
        let e = weir_nexmark::generator::event(&config, n);
        (e.timestamp(), e)
    })
}

/// The Nexmark events of a job: generated, or read from `params.input`.
pub fn events(env: &StreamEnv, p: &JobParams) -> DataStream<Event> {
    match &p.input {
        Some(path) => {
            let path = path.clone();
            env.source(
                "nexmark-file",
                move |_| LinesSource::new(&path, |l: &str| weir_nexmark::json::parse_event(l).map_err(|e| e.to_string())),
                WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS, |e: &Event| e.timestamp()),
            )
            .parallelism(1)
            .uid("nexmark-source")
        }
        None => {
            let mut config = GeneratorConfig::default();
            if let Some(r) = p.event_rate {
                config.event_rate_per_sec = r;
            }
            let config = Arc::new(config);
            let (events, rate) = (p.events, p.rate);
            env.source(
                "nexmark",
                move |ctx| nexmark_source(config.clone(), ctx.subtask, ctx.parallelism, events, rate),
                WatermarkStrategy::source_timestamps(OUT_OF_ORDERNESS),
            )
            .uid("nexmark-source")
        }
    }
}

fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events.flat_map(|e, out| {
        if let Event::Bid(b) = e {
            out.emit(b)
        }
    })
}

fn auctions(events: &DataStream<Event>) -> DataStream<Auction> {
    events.flat_map(|e, out| {
        if let Event::Auction(a) = e {
            out.emit(a)
        }
    })
}

fn persons(events: &DataStream<Event>) -> DataStream<Person> {
    events.flat_map(|e, out| {
        if let Event::Person(p) = e {
            out.emit(p)
        }
    })
}

fn q0(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let rows = bids(&events(env, p)).map(|b| Q0Row::from(&b));
    sink_output(&rows, p)
}

fn q1(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let rows = bids(&events(env, p)).map(|b| Q1Row::from(&b));
    sink_output(&rows, p)
}

fn q2(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let rows = bids(&events(env, p)).filter(|b| b.auction % 123 == 0).map(|b| Q2Row { auction: b.auction, price: b.price });
    sink_output(&rows, p)
}

/// q3: auctions of category 10 joined with their sellers from OR, ID or CA.
#[derive(Clone, Default)]
struct LocalItemSuggestion {
    person: Option<ValueState<(String, String, String)>>,
    pending: Option<ListState<i64>>,
}

impl KeyedCoProcessFunction<i64, Person, Auction, Q3Row> for LocalItemSuggestion {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.person = Some(ctx.value_state("person")?);
        self.pending = Some(ctx.list_state("pending-auctions")?);
        Ok(())
    }
    fn process1(&mut self, p: Person, ctx: &mut KeyedContext<'_, i64, Q3Row>) {
        let (Some(person), Some(pending)) = (&self.person, &self.pending) else { return };
        let waiting: Vec<i64> = pending.get(ctx).to_vec();
        for id in waiting {
            ctx.emit(Q3Row { name: p.name.clone(), city: p.city.clone(), state: p.state.clone(), id });
        }
        pending.clear(ctx);
        person.update(ctx, (p.name, p.city, p.state));
    }
    fn process2(&mut self, a: Auction, ctx: &mut KeyedContext<'_, i64, Q3Row>) {
        let (Some(person), Some(pending)) = (&self.person, &self.pending) else { return };
        match person.value(ctx) {
            Some((name, city, state)) => ctx.emit(Q3Row { name, city, state, id: a.id }),
            None => pending.add(ctx, a.id),
        }
    }
}

fn q3(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let ev = events(env, p);
    let people = persons(&ev).filter(|p| matches!(p.state.as_str(), "OR" | "ID" | "CA")).key_by(|p: &Person| p.id);
    let items = auctions(&ev).filter(|a| a.category == 10).key_by(|a: &Auction| a.seller);
    let rows = people.connect(&items).process(LocalItemSuggestion::default()).uid("q3-join");
    sink_output(&rows, p)
}

/// q4, stage 1: the winning (highest) bid of each auction among the bids placed
/// while it was open; emitted as (category, price) when the auction closes.
#[derive(Clone, Default)]
struct WinningBids {
    /// category, dateTime, expires, closed
    auction: Option<ValueState<(i64, i64, i64, bool)>>,
    best: Option<ValueState<i64>>,
    early: Option<ListState<(i64, i64)>>, // bids before their auction: (price, dateTime)
}

/// How long a closed auction is remembered, so that bids for it are dropped at once
/// (without it they wait in state until the watermark passes them: same result, slower).
const CLOSED_AUCTION_MEMORY_MS: i64 = 10_000;

impl KeyedCoProcessFunction<i64, Auction, Bid, (i64, i64)> for WinningBids {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.auction = Some(ctx.value_state("auction")?);
        self.best = Some(ctx.value_state("best-price")?);
        self.early = Some(ctx.list_state("early-bids")?);
        Ok(())
    }
    fn process1(&mut self, a: Auction, ctx: &mut KeyedContext<'_, i64, (i64, i64)>) {
        let (Some(auction), Some(best), Some(early)) = (&self.auction, &self.best, &self.early) else { return };
        let mut max = None::<i64>;
        for &(price, t) in early.get(ctx) {
            if t >= a.date_time && t <= a.expires {
                max = Some(max.map_or(price, |m: i64| m.max(price)));
            }
        }
        early.clear(ctx);
        if let Some(m) = max {
            best.update(ctx, m);
        }
        auction.update(ctx, (a.category, a.date_time, a.expires, false));
        ctx.register_event_time_timer(a.expires);
    }
    fn process2(&mut self, b: Bid, ctx: &mut KeyedContext<'_, i64, (i64, i64)>) {
        let (Some(auction), Some(best), Some(early)) = (&self.auction, &self.best, &self.early) else { return };
        match auction.value(ctx) {
            Some((_, _, _, true)) => {} // closed: this bid came after it expired
            Some((_, start, expires, false)) => {
                if b.date_time >= start && b.date_time <= expires && best.value(ctx).is_none_or(|m| b.price > m) {
                    best.update(ctx, b.price);
                }
            }
            None => {
                // its auction has not arrived yet; once the watermark passes the bid's
                // time, no auction that could contain it can still come
                early.add(ctx, (b.price, b.date_time));
                ctx.register_event_time_timer(b.date_time);
            }
        }
    }
    fn on_timer(&mut self, t: Timestamp, _d: TimeDomain, ctx: &mut KeyedContext<'_, i64, (i64, i64)>) {
        let (Some(auction), Some(best), Some(early)) = (&self.auction, &self.best, &self.early) else { return };
        match auction.value(ctx) {
            Some((category, start, expires, false)) if t == expires => {
                if let Some(price) = best.value(ctx) {
                    ctx.emit((category, price));
                }
                best.clear(ctx);
                auction.update(ctx, (category, start, expires, true));
                ctx.register_event_time_timer(expires + CLOSED_AUCTION_MEMORY_MS);
            }
            Some((_, _, expires, true)) if t >= expires + CLOSED_AUCTION_MEMORY_MS => auction.clear(ctx),
            Some(_) => {}
            None => {
                let keep: Vec<(i64, i64)> = early.get(ctx).iter().copied().filter(|&(_, bt)| bt > t).collect();
                early.update(ctx, keep);
            }
        }
    }
}

/// q4, stage 2: the running average of the winning price per category.
#[derive(Clone, Default)]
struct CategoryAverage {
    sum_count: Option<ValueState<(i64, i64)>>,
}

impl KeyedProcessFunction<i64, (i64, i64), Q4Row> for CategoryAverage {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.sum_count = Some(ctx.value_state("sum-count")?);
        Ok(())
    }
    fn process(&mut self, (category, price): (i64, i64), ctx: &mut KeyedContext<'_, i64, Q4Row>) {
        let Some(st) = &self.sum_count else { return };
        let (s, c) = st.value(ctx).unwrap_or((0, 0));
        let (s, c) = (s + price, c + 1);
        st.update(ctx, (s, c));
        ctx.emit(Q4Row { id: category, final_: s / c });
    }
}

fn q4(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let ev = events(env, p);
    let a = auctions(&ev).key_by(|a: &Auction| a.id);
    let b = bids(&ev).key_by(|b: &Bid| b.auction);
    let winning = a.connect(&b).process(WinningBids::default()).uid("q4-winning-bids");
    let rows = winning.key_by(|w: &(i64, i64)| w.0).process(CategoryAverage::default()).uid("q4-average");
    sink_output(&rows, p)
}

/// q5, stage 2: per window, the auctions with the most bids.
#[derive(Clone, Default)]
struct HottestItems {
    best: Option<ValueState<(u64, Vec<i64>)>>,
}

impl KeyedProcessFunction<i64, (i64, i64, u64), Q5Row> for HottestItems {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.best = Some(ctx.value_state("hottest")?);
        Ok(())
    }
    fn process(&mut self, (auction, window_end, num): (i64, i64, u64), ctx: &mut KeyedContext<'_, i64, Q5Row>) {
        let Some(best) = &self.best else { return };
        match best.get_mut(ctx) {
            Some((max, items)) => {
                if num > *max {
                    *max = num;
                    items.clear();
                }
                if num == *max {
                    items.push(auction);
                }
            }
            None => {
                best.update(ctx, (num, vec![auction]));
                ctx.register_event_time_timer(window_end - 1);
            }
        }
    }
    fn on_timer(&mut self, _t: Timestamp, _d: TimeDomain, ctx: &mut KeyedContext<'_, i64, Q5Row>) {
        let Some(best) = &self.best else { return };
        if let Some((num, items)) = best.value(ctx) {
            for auction in items {
                ctx.emit(Q5Row { auction, num: num as i64 });
            }
        }
        best.clear(ctx);
    }
}

fn q5(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    // only the auction id crosses the exchange (the projection Flink's planner pushes down)
    let counts = bids(&events(env, p))
        .map(|b: Bid| b.auction)
        .key_by(|a: &i64| *a)
        .window(SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(2)))
        .aggregate_with(Count::new(), |auction: &i64, w: &TimeWindow, n: u64, out| out.emit((*auction, w.end, n)))
        .uid("q5-count");
    let rows = counts.key_by(|c: &(i64, i64, u64)| c.1).process(HottestItems::default()).uid("q5-hottest");
    sink_output(&rows, p)
}

/// q7, keyed by the end of a 10 s window: the bids of the window, and the bids
/// exactly at its end (they belong to the next window, but `BETWEEN` includes them).
#[derive(Clone, Default)]
struct HighestBid {
    state: Option<ValueState<(Option<i64>, Vec<Bid>)>>, // max of the window's own bids, candidates
}

impl KeyedProcessFunction<i64, (i64, bool, Bid), Q7Row> for HighestBid {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("highest")?);
        Ok(())
    }
    fn process(&mut self, (window_end, own, bid): (i64, bool, Bid), ctx: &mut KeyedContext<'_, i64, Q7Row>) {
        let Some(st) = &self.state else { return };
        if st.get(ctx).is_none() {
            st.update(ctx, (None, Vec::new()));
            ctx.register_event_time_timer(window_end);
        }
        let Some((max, cands)) = st.get_mut(ctx) else { return };
        if own && max.is_none_or(|m| bid.price > m) {
            *max = Some(bid.price);
            let m = bid.price;
            cands.retain(|c| c.price >= m);
        }
        if max.is_none_or(|m| bid.price >= m) {
            cands.push(bid);
        }
    }
    fn on_timer(&mut self, _t: Timestamp, _d: TimeDomain, ctx: &mut KeyedContext<'_, i64, Q7Row>) {
        let Some(st) = &self.state else { return };
        if let Some((Some(max), cands)) = st.value(ctx) {
            for b in cands.into_iter().filter(|b| b.price == max) {
                ctx.emit(Q7Row::from(&b));
            }
        }
        st.clear(ctx);
    }
}

fn q7(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let tagged = bids(&events(env, p)).flat_map(|b: Bid, out| {
        let start = b.date_time - b.date_time.rem_euclid(WINDOW_10S);
        if b.date_time == start {
            out.emit((start, false, b.clone()));
        }
        out.emit((start + WINDOW_10S, true, b));
    });
    let rows = tagged.key_by(|t: &(i64, bool, Bid)| t.0).process(HighestBid::default()).uid("q7-highest");
    sink_output(&rows, p)
}

/// q8: people who opened an auction in the same 10 s window in which they registered.
#[derive(Clone, Default)]
struct NewUsers {
    windows: Option<MapState<i64, (Option<String>, bool, bool)>>, // name, has auction, emitted
}

impl NewUsers {
    fn touch(&self, ts: i64, ctx: &mut KeyedContext<'_, i64, Q8Row>, f: impl FnOnce(&mut (Option<String>, bool, bool))) {
        let Some(w) = &self.windows else { return };
        let start = ts - ts.rem_euclid(WINDOW_10S);
        let mut v = w.get(ctx, &start).cloned().unwrap_or_else(|| {
            ctx.register_event_time_timer(start + WINDOW_10S - 1);
            (None, false, false)
        });
        f(&mut v);
        if let (Some(name), true, false) = (&v.0, v.1, v.2) {
            let id = *ctx.key();
            ctx.emit_at(start + WINDOW_10S - 1, Q8Row { id, name: name.clone(), stime: start });
            v.2 = true;
        }
        w.put(ctx, start, v);
    }
}

impl KeyedCoProcessFunction<i64, Person, Auction, Q8Row> for NewUsers {
    fn open(&mut self, ctx: &mut OpenContext<'_, i64>) -> Result<(), JobError> {
        self.windows = Some(ctx.map_state("windows")?);
        Ok(())
    }
    fn process1(&mut self, p: Person, ctx: &mut KeyedContext<'_, i64, Q8Row>) {
        self.touch(p.date_time, ctx, |v| v.0 = Some(p.name));
    }
    fn process2(&mut self, a: Auction, ctx: &mut KeyedContext<'_, i64, Q8Row>) {
        self.touch(a.date_time, ctx, |v| v.1 = true);
    }
    fn on_timer(&mut self, t: Timestamp, _d: TimeDomain, ctx: &mut KeyedContext<'_, i64, Q8Row>) {
        if let Some(w) = &self.windows {
            w.remove(ctx, &(t + 1 - WINDOW_10S));
        }
    }
}

fn q8(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    let ev = events(env, p);
    let people = persons(&ev).key_by(|p: &Person| p.id);
    let sellers = auctions(&ev).key_by(|a: &Auction| a.seller);
    let rows = people.connect(&sellers).process(NewUsers::default()).uid("q8-join");
    sink_output(&rows, p)
}

pub fn jobs() -> Vec<BuiltinJob> {
    vec![
        BuiltinJob { name: "nexmark-q0", description: "Nexmark q0: pass-through of all bids", build: q0 },
        BuiltinJob { name: "nexmark-q1", description: "Nexmark q1: bid prices converted to euros (x 0.908)", build: q1 },
        BuiltinJob { name: "nexmark-q2", description: "Nexmark q2: bids on auctions whose id is a multiple of 123", build: q2 },
        BuiltinJob { name: "nexmark-q3", description: "Nexmark q3: category-10 auctions by sellers in OR, ID or CA (join)", build: q3 },
        BuiltinJob { name: "nexmark-q4", description: "Nexmark q4: average winning price per category (updating)", build: q4 },
        BuiltinJob { name: "nexmark-q5", description: "Nexmark q5: hot items, most bids per 10 s sliding window (2 s slide)", build: q5 },
        BuiltinJob { name: "nexmark-q7", description: "Nexmark q7: highest bid per 10 s tumbling window", build: q7 },
        BuiltinJob { name: "nexmark-q8", description: "Nexmark q8: new users who opened an auction in their first 10 s window", build: q8 },
    ]
}
