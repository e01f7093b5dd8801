//! In-memory sources and sinks: a fixed list of records in, a shared vector out.
//! Handy in tests and examples.

use std::sync::{Arc, Mutex};

use super::{ConnectorError, Sink, Source, SourceOutput, SourcePoll};
use crate::record::{Data, Rec, Timestamp};

/// One scripted step of a [`ScriptSource`].
#[derive(Clone, Debug)]
pub enum Scripted<T> {
    Record(Timestamp, T),
    /// Emits a watermark right away (independent of the watermark strategy).
    Watermark(Timestamp),
}

/// Emits records and watermarks exactly as scripted (subtask 0 only): for tests that
/// need to control which records are late.
pub struct ScriptSource<T> {
    items: std::vec::IntoIter<Scripted<T>>,
}

impl<T: Data> ScriptSource<T> {
    pub fn new(items: Vec<Scripted<T>>, subtask: u32) -> Self {
        let items = if subtask == 0 { items } else { Vec::new() };
        ScriptSource { items: items.into_iter() }
    }
}

impl<T: Data> Source<T> for ScriptSource<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, ConnectorError> {
        while out.remaining() > 0 {
            match self.items.next() {
                Some(Scripted::Record(ts, v)) => out.collect_at(ts, v),
                Some(Scripted::Watermark(wm)) => {
                    out.emit_watermark(wm);
                    return Ok(SourcePoll::Ready);
                }
                None => return Ok(SourcePoll::Finished),
            }
        }
        Ok(SourcePoll::Ready)
    }
}

/// Emits a fixed list of records (subtask 0 only; other subtasks finish at once).
pub struct VecSource<T> {
    items: std::vec::IntoIter<(Timestamp, T)>,
}

impl<T: Data> VecSource<T> {
    /// `items` go to subtask 0; every other subtask is empty.
    pub fn new(items: Vec<(Timestamp, T)>, subtask: u32) -> Self {
        let items = if subtask == 0 { items } else { Vec::new() };
        VecSource { items: items.into_iter() }
    }
}

impl<T: Data> Source<T> for VecSource<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, ConnectorError> {
        for _ in 0..out.remaining() {
            match self.items.next() {
                Some((ts, v)) => out.collect_at(ts, v),
                None => return Ok(SourcePoll::Finished),
            }
        }
        Ok(SourcePoll::Ready)
    }
}

/// Collects everything written into a shared vector.
#[derive(Clone)]
pub struct CollectSink<T> {
    pub out: Arc<Mutex<Vec<Rec<T>>>>,
}

impl<T> CollectSink<T> {
    pub fn new() -> Self {
        CollectSink { out: Arc::new(Mutex::new(Vec::new())) }
    }
    /// Everything collected so far.
    pub fn take(&self) -> Vec<Rec<T>> {
        self.out.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> Sink<T> for CollectSink<T> {
    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError> {
        self.out.lock().map_err(|_| ConnectorError::Other("collect sink poisoned".into()))?.extend_from_slice(batch);
        Ok(())
    }
}
