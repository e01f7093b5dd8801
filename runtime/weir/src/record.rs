//! What flows through a stream: typed values with an event timestamp.

use serde::{Serialize, de::DeserializeOwned};

/// Event time or processing time in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The timestamp of records that have none (no timestamp assigner at the source).
pub const NO_TIMESTAMP: Timestamp = i64::MIN;

/// Anything a stream can carry. Serializable so that it can be checkpointed and sent
/// between processes; `Clone` so that it can be broadcast and fanned out.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// One record: a value and its event timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rec<T> {
    pub ts: Timestamp,
    pub value: T,
}

impl<T> Rec<T> {
    #[inline]
    pub fn new(ts: Timestamp, value: T) -> Self {
        Rec { ts, value }
    }
}

/// A typed side-output channel of an operator (Flink's `OutputTag`).
pub struct OutputTag<T> {
    pub(crate) id: String,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    pub fn new(id: impl Into<String>) -> Self {
        OutputTag { id: id.into(), _t: std::marker::PhantomData }
    }
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag::new(self.id.clone())
    }
}

/// Collects the output of a user function; records get the timestamp of the input
/// record unless one is given.
pub struct Collector<'a, T> {
    pub(crate) buf: &'a mut Vec<Rec<T>>,
    pub(crate) ts: Timestamp,
}

impl<'a, T> Collector<'a, T> {
    pub(crate) fn new(buf: &'a mut Vec<Rec<T>>, ts: Timestamp) -> Self {
        Collector { buf, ts }
    }
    /// Emits `value` with the current record's (or timer's) timestamp.
    #[inline]
    pub fn emit(&mut self, value: T) {
        self.buf.push(Rec::new(self.ts, value));
    }
    /// Emits `value` with an explicit event timestamp.
    #[inline]
    pub fn emit_at(&mut self, ts: Timestamp, value: T) {
        self.buf.push(Rec::new(ts, value));
    }
    pub fn timestamp(&self) -> Timestamp {
        self.ts
    }
}

/// Wall-clock time in milliseconds since the epoch.
#[inline]
pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
