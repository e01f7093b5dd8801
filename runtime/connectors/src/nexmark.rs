//! `'connector' = 'nexmark'`: the Nexmark event stream as the Flink Nexmark benchmark
//! declares it (`ddl_gen.sql`): one table with `event_type INT` (0 person, 1 auction,
//! 2 bid) and the nested columns `person ROW<...>`, `auction ROW<...>`, `bid ROW<...>`
//! (the one of the event's type is set, the others are NULL); the views `person`,
//! `auction` and `bid` of `nexmark/ddl.sql` select their fields.
//!
//! The events are those of the built-in Nexmark jobs (`weir::jobs::nexmark`): the
//! same generator (`weir-nexmark`), split over the subtasks the same way (subtask `i`
//! of `P` generates the event numbers `i, i+P, …`), its position checkpointed and
//! redistributed on rescale like theirs ([`SequenceSplits`]). So a query gives the
//! same rows here as the built-in job does, for any parallelism.
//!
//! Any subset of the columns and of the nested fields may be declared, in any order,
//! with the types of the Flink DDL; a column or field it does not know is an error
//! naming it.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray, TimestampMillisecondArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Fields, SchemaRef, TimeUnit};
use weir::checkpoint::restore::Redistribution;
use weir::connector::sequence::{Pacer, SequenceSplits};
use weir::connector::{ConnectorError, SourceContext};
use weir_nexmark::generator::GeneratorConfig;
use weir_nexmark::{Auction, Bid, Event, Person};

use crate::registry::{BatchSource, Connector, SourceFactory, TableOptions};

/// Events per batch (at most).
const BATCH: usize = 1024;

/// The options, as the Flink Nexmark connector names them (`'tps'` is Weir's).
const OPTIONS: &[&str] = &[
    "events.num",
    "first-event.rate",
    "next-event.rate",
    "rate.limited",
    "tps",
    "person.proportion",
    "auction.proportion",
    "bid.proportion",
    "person.avg-size",
    "auction.avg-size",
    "bid.avg-size",
];

/// The Nexmark generator as a SQL table.
pub struct Nexmark;

/// A value of one nested field of one event kind.
#[derive(Clone, Copy)]
enum Getter {
    Long(fn(&Event) -> Option<i64>),
    Text(fn(&Event) -> Option<&str>),
    Time(fn(&Event) -> Option<i64>),
}

impl Getter {
    fn data_type(&self) -> DataType {
        match self {
            Getter::Long(_) => DataType::Int64,
            Getter::Text(_) => DataType::Utf8,
            Getter::Time(_) => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
    fn sql_type(&self) -> &'static str {
        match self {
            Getter::Long(_) => "BIGINT",
            Getter::Text(_) => "VARCHAR",
            Getter::Time(_) => "TIMESTAMP(3)",
        }
    }
}

fn person(e: &Event) -> Option<&Person> {
    if let Event::Person(p) = e { Some(p) } else { None }
}
fn auction(e: &Event) -> Option<&Auction> {
    if let Event::Auction(a) = e { Some(a) } else { None }
}
fn bid(e: &Event) -> Option<&Bid> {
    if let Event::Bid(b) = e { Some(b) } else { None }
}

/// The fields of `ROW` column `column` (Flink's names), or `None` if there is no such column.
fn row_fields(column: &str) -> Option<&'static [(&'static str, Getter)]> {
    use Getter::{Long, Text, Time};
    const PERSON: &[(&str, Getter)] = &[
        ("id", Long(|e| person(e).map(|p| p.id))),
        ("name", Text(|e| person(e).map(|p| p.name.as_str()))),
        ("emailAddress", Text(|e| person(e).map(|p| p.email_address.as_str()))),
        ("creditCard", Text(|e| person(e).map(|p| p.credit_card.as_str()))),
        ("city", Text(|e| person(e).map(|p| p.city.as_str()))),
        ("state", Text(|e| person(e).map(|p| p.state.as_str()))),
        ("dateTime", Time(|e| person(e).map(|p| p.date_time))),
        ("extra", Text(|e| person(e).map(|p| p.extra.as_str()))),
    ];
    const AUCTION: &[(&str, Getter)] = &[
        ("id", Long(|e| auction(e).map(|a| a.id))),
        ("itemName", Text(|e| auction(e).map(|a| a.item_name.as_str()))),
        ("description", Text(|e| auction(e).map(|a| a.description.as_str()))),
        ("initialBid", Long(|e| auction(e).map(|a| a.initial_bid))),
        ("reserve", Long(|e| auction(e).map(|a| a.reserve))),
        ("dateTime", Time(|e| auction(e).map(|a| a.date_time))),
        ("expires", Time(|e| auction(e).map(|a| a.expires))),
        ("seller", Long(|e| auction(e).map(|a| a.seller))),
        ("category", Long(|e| auction(e).map(|a| a.category))),
        ("extra", Text(|e| auction(e).map(|a| a.extra.as_str()))),
    ];
    const BID: &[(&str, Getter)] = &[
        ("auction", Long(|e| bid(e).map(|b| b.auction))),
        ("bidder", Long(|e| bid(e).map(|b| b.bidder))),
        ("price", Long(|e| bid(e).map(|b| b.price))),
        ("channel", Text(|e| bid(e).map(|b| b.channel.as_str()))),
        ("url", Text(|e| bid(e).map(|b| b.url.as_str()))),
        ("dateTime", Time(|e| bid(e).map(|b| b.date_time))),
        ("extra", Text(|e| bid(e).map(|b| b.extra.as_str()))),
    ];
    match column {
        "person" => Some(PERSON),
        "auction" => Some(AUCTION),
        "bid" => Some(BID),
        _ => None,
    }
}

/// How one declared column is made.
#[derive(Clone)]
enum Column {
    EventType,
    Row { kind: u8, fields: Fields, getters: Vec<Getter> },
}

fn event_type(e: &Event) -> u8 {
    match e {
        Event::Person(_) => 0,
        Event::Auction(_) => 1,
        Event::Bid(_) => 2,
    }
}

/// The columns of `schema`, checked against the Flink Nexmark DDL.
fn columns(schema: &SchemaRef) -> Result<Vec<Column>, String> {
    let ddl = "(see the Flink Nexmark DDL in runtime/sql/nexmark/ddl.sql)";
    let mut out = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let name = f.name().as_str();
        if name == "event_type" {
            if f.data_type() != &DataType::Int32 {
                return Err(format!("connector 'nexmark': column 'event_type' must be INT, not {}", f.data_type()));
            }
            out.push(Column::EventType);
            continue;
        }
        let Some(known) = row_fields(name) else {
            return Err(format!("connector 'nexmark' has no column '{name}' (its columns: event_type INT, person ROW<...>, auction ROW<...>, bid ROW<...>) {ddl}"));
        };
        let DataType::Struct(fields) = f.data_type() else {
            return Err(format!("connector 'nexmark': column '{name}' must be a ROW<...> of the {name} fields, not {} {ddl}", f.data_type()));
        };
        let mut getters = Vec::with_capacity(fields.len());
        for sf in fields {
            let Some((_, g)) = known.iter().find(|(n, _)| n == sf.name()) else {
                return Err(format!("connector 'nexmark': {name} has no field '{}' (its fields: {})", sf.name(), known.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")));
            };
            if sf.data_type() != &g.data_type() {
                return Err(format!("connector 'nexmark': field '{name}.{}' must be {}, not {}", sf.name(), g.sql_type(), sf.data_type()));
            }
            getters.push(*g);
        }
        let kind = match name {
            "person" => 0,
            "auction" => 1,
            _ => 2,
        };
        out.push(Column::Row { kind, fields: fields.clone(), getters });
    }
    Ok(out)
}

/// What the options ask for.
#[derive(Clone, Debug)]
struct Settings {
    config: GeneratorConfig,
    /// `None`: unbounded
    events: Option<u64>,
    /// wall-clock events per second over all subtasks, if limited
    pace: Option<u64>,
}

fn settings(opts: &TableOptions) -> Result<Settings, String> {
    let mut config = GeneratorConfig::default();
    let first = opts.parse::<u64>("first-event.rate")?;
    let next = opts.parse::<u64>("next-event.rate")?;
    if let (Some(f), Some(n)) = (first, next)
        && f != n
    {
        return Err(format!("connector 'nexmark': 'first-event.rate' = {f} and 'next-event.rate' = {n} differ: a changing event rate is not supported yet"));
    }
    if let Some(r) = first.or(next) {
        if r == 0 {
            return Err("connector 'nexmark': 'first-event.rate' must be positive".into());
        }
        config.event_rate_per_sec = r;
    }
    for (key, slot, min) in [("person.proportion", &mut config.person_proportion, 1), ("auction.proportion", &mut config.auction_proportion, 1), ("bid.proportion", &mut config.bid_proportion, 0)] {
        if let Some(v) = opts.parse::<i64>(key)? {
            if v < min {
                return Err(format!("connector 'nexmark': '{key}' must be at least {min}, not {v}"));
            }
            *slot = v;
        }
    }
    for (key, slot) in [("person.avg-size", &mut config.avg_person_byte_size), ("auction.avg-size", &mut config.avg_auction_byte_size), ("bid.avg-size", &mut config.avg_bid_byte_size)] {
        if let Some(v) = opts.parse::<i32>(key)? {
            if v < 0 {
                return Err(format!("connector 'nexmark': '{key}' must not be negative"));
            }
            *slot = v;
        }
    }
    // Flink: 0 events = unbounded
    let events = opts.parse::<u64>("events.num")?.filter(|n| *n > 0);
    let limited = match opts.get("rate.limited") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(format!("connector 'nexmark': 'rate.limited' must be 'true' or 'false', not '{v}'")),
    };
    let tps = opts.parse::<u64>("tps")?.filter(|n| *n > 0);
    let pace = tps.or(limited.then_some(config.event_rate_per_sec));
    Ok(Settings { config, events, pace })
}

impl Connector for Nexmark {
    fn name(&self) -> &str {
        "nexmark"
    }
    fn options(&self) -> &[&str] {
        OPTIONS
    }
    fn bounded(&self, opts: &TableOptions) -> bool {
        settings(opts).is_ok_and(|s| s.events.is_some())
    }
    fn validate(&self, opts: &TableOptions, schema: &SchemaRef) -> Result<(), String> {
        settings(opts)?;
        columns(schema)?;
        Ok(())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let s = settings(opts)?;
        let cols = Arc::new(columns(&schema)?);
        let config = Arc::new(s.config);
        Ok(Arc::new(move |ctx: &SourceContext| {
            Box::new(NexmarkSource {
                splits: SequenceSplits::initial(ctx.subtask, ctx.parallelism, s.events),
                pacer: Pacer::new(s.pace, ctx.parallelism),
                config: config.clone(),
                schema: schema.clone(),
                columns: cols.clone(),
                events: Vec::with_capacity(BATCH),
            }) as Box<dyn BatchSource>
        }))
    }
}

/// One subtask's share of the event sequence, as batches of the declared columns.
struct NexmarkSource {
    splits: SequenceSplits,
    pacer: Pacer,
    config: Arc<GeneratorConfig>,
    schema: SchemaRef,
    columns: Arc<Vec<Column>>,
    events: Vec<Event>,
}

impl NexmarkSource {
    fn batch(&self) -> Result<RecordBatch, ConnectorError> {
        let ev = &self.events;
        let kinds: Vec<u8> = ev.iter().map(event_type).collect();
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| match c {
                Column::EventType => Arc::new(Int32Array::from_iter_values(kinds.iter().map(|k| *k as i32))) as ArrayRef,
                Column::Row { kind, fields, getters } => {
                    let rows: Vec<usize> = (0..ev.len()).filter(|&i| kinds[i] == *kind).collect();
                    let nulls = NullBuffer::from_iter(kinds.iter().map(|k| k == kind));
                    let children: Vec<ArrayRef> = getters.iter().map(|g| child(*g, ev, &rows, &nulls)).collect();
                    Arc::new(StructArray::new(fields.clone(), children, Some(nulls))) as ArrayRef
                }
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| ConnectorError::Other(format!("nexmark source: {e}")))
    }
}

/// The values of one nested field: those of the events at `rows` (the events of the
/// field's kind), NULL (`nulls`) elsewhere. Only `rows` are visited one by one; the
/// other slots are zeroed in bulk.
fn child(g: Getter, ev: &[Event], rows: &[usize], nulls: &NullBuffer) -> ArrayRef {
    let n = ev.len();
    let longs = |f: fn(&Event) -> Option<i64>| {
        let mut v = vec![0i64; n];
        for &i in rows {
            v[i] = f(&ev[i]).unwrap_or_default();
        }
        v
    };
    match g {
        Getter::Long(f) => Arc::new(Int64Array::new(longs(f).into(), Some(nulls.clone()))),
        Getter::Time(f) => Arc::new(TimestampMillisecondArray::new(longs(f).into(), Some(nulls.clone()))),
        Getter::Text(f) => {
            let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
            let mut values: Vec<u8> = Vec::with_capacity(rows.len() * 32);
            offsets.push(0);
            let mut next = rows.iter().copied().peekable();
            for (i, e) in ev.iter().enumerate() {
                if next.peek() == Some(&i) {
                    next.next();
                    values.extend_from_slice(f(e).unwrap_or_default().as_bytes());
                }
                offsets.push(values.len() as i32);
            }
            // the values are whole &str, so the offsets are at character boundaries
            Arc::new(StringArray::new(OffsetBuffer::new(offsets.into()), values.into(), Some(nulls.clone())))
        }
    }
}

impl BatchSource for NexmarkSource {
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.splits.is_finished() {
            return Ok(None);
        }
        let budget = self.pacer.budget(max_rows.min(BATCH) as u64);
        self.events.clear();
        let (config, events) = (&self.config, &mut self.events);
        let n = self.splits.take_run(budget, |n| events.push(weir_nexmark::generator::event(config, n)));
        self.pacer.produced(n);
        if n == 0 && self.splits.is_finished() {
            return Ok(None);
        }
        self.batch().map(Some)
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.splits.snapshot())
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits.restore(splits)
    }
    fn redistribution(&self) -> Redistribution {
        Redistribution::Union
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    fn opts(kv: &[(&str, &str)]) -> TableOptions {
        TableOptions { table: "datagen".into(), connector: "nexmark".into(), map: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(), primary_key: Vec::new(), partition_keys: Vec::new() }
    }

    fn bid_schema() -> SchemaRef {
        let bid = Fields::from(vec![Field::new("auction", DataType::Int64, true), Field::new("price", DataType::Int64, true), Field::new("dateTime", DataType::Timestamp(TimeUnit::Millisecond, None), true)]);
        Arc::new(Schema::new(vec![Field::new("event_type", DataType::Int32, true), Field::new("bid", DataType::Struct(bid), true)]))
    }

    fn read_all(src: &mut Box<dyn BatchSource>) -> Vec<RecordBatch> {
        let mut v = Vec::new();
        while let Some(b) = src.next_batch(1000).unwrap() {
            v.push(b);
        }
        v
    }

    #[test]
    fn rows_are_the_generator_events() {
        let f = Nexmark.source(&opts(&[("events.num", "500")]), bid_schema()).unwrap();
        let mut src = f(&SourceContext { subtask: 0, parallelism: 1 });
        let batches = read_all(&mut src);
        let c = GeneratorConfig::default();
        let mut n = 0u64;
        for b in &batches {
            let et = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
            let bid = b.column(1).as_struct();
            for i in 0..b.num_rows() {
                let e = weir_nexmark::generator::event(&c, n);
                assert_eq!(et.value(i) as u8, event_type(&e));
                match &e {
                    Event::Bid(x) => {
                        assert!(bid.is_valid(i));
                        assert_eq!(bid.column(0).as_primitive::<Int64Type>().value(i), x.auction);
                        assert_eq!(bid.column(1).as_primitive::<Int64Type>().value(i), x.price);
                    }
                    _ => assert!(bid.is_null(i)),
                }
                n += 1;
            }
        }
        assert_eq!(n, 500);
    }

    #[test]
    fn split_across_subtasks_and_restored() {
        let f = Nexmark.source(&opts(&[("events.num", "3000")]), bid_schema()).unwrap();
        let ctx = |i| SourceContext { subtask: i, parallelism: 2 };
        let (mut a, mut b) = (f(&ctx(0)), f(&ctx(1)));
        let first = a.next_batch(100).unwrap().unwrap();
        assert_eq!(first.num_rows(), 100);
        b.next_batch(100).unwrap();
        // checkpoint both, restore at parallelism 3: the rest is produced exactly once
        let mut snap = a.snapshot().unwrap();
        snap.extend(b.snapshot().unwrap());
        let mut rest = 0;
        for i in 0..3 {
            let mut s = f(&SourceContext { subtask: i, parallelism: 3 });
            s.restore(snap.clone()).unwrap();
            rest += read_all(&mut s).iter().map(|b| b.num_rows()).sum::<usize>();
        }
        assert_eq!(rest, 3000 - 200);
    }

    #[test]
    fn options_are_checked() {
        let s = bid_schema();
        assert!(Nexmark.validate(&opts(&[("first-event.rate", "1000"), ("next-event.rate", "1000")]), &s).is_ok());
        let e = Nexmark.validate(&opts(&[("first-event.rate", "1000"), ("next-event.rate", "2000")]), &s).unwrap_err();
        assert!(e.contains("not supported yet"), "{e}");
        let e = Nexmark.validate(&opts(&[("auction.proportion", "0")]), &s).unwrap_err();
        assert!(e.contains("'auction.proportion'"), "{e}");
        let e = Nexmark.validate(&opts(&[("rate.limited", "maybe")]), &s).unwrap_err();
        assert!(e.contains("'rate.limited'"), "{e}");
        let wrong = Arc::new(Schema::new(vec![Field::new("bid", DataType::Struct(Fields::from(vec![Field::new("colour", DataType::Utf8, true)])), true)]));
        let e = Nexmark.validate(&opts(&[]), &wrong).unwrap_err();
        assert!(e.contains("no field 'colour'"), "{e}");
        let wrong = Arc::new(Schema::new(vec![Field::new("bid", DataType::Struct(Fields::from(vec![Field::new("price", DataType::Utf8, true)])), true)]));
        let e = Nexmark.validate(&opts(&[]), &wrong).unwrap_err();
        assert!(e.contains("'bid.price' must be BIGINT"), "{e}");
        let st = settings(&opts(&[("events.num", "0"), ("first-event.rate", "500"), ("rate.limited", "true")])).unwrap();
        assert_eq!((st.events, st.pace, st.config.event_rate_per_sec), (None, Some(500), 500));
    }
}
