//! The window operator: assigns records of each key to windows, accumulates them,
//! asks the trigger when to fire, merges session windows, drops (or side-outputs)
//! late records and cleans a window up once its allowed lateness has passed.

use serde::{Deserialize, Serialize};

use super::trigger::TimerOp;
use super::{Trigger, TriggerContext, Window, WindowAssigner, WindowFunction};
use crate::exec::{Barrier, BoxDown, Downstream, TaskInfo};
use crate::keygroup::{Key, KeyGroupRange, key_group};
use crate::operator::keyed::Timers;
use crate::operator::side::Sides;
use crate::record::{Collector, Data, OutputTag, Rec, Timestamp, now_ms};
use crate::state::snapshot::OperatorSnapshot;
use crate::state::table::FastMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WinState<A> {
    acc: A,
    trig: u64,
}

pub(crate) struct WindowOperator<K, I, O, KF, A: WindowAssigner, Tr, WF: WindowFunction<K, A::W, I, O>> {
    key_fn: KF,
    assigner: A,
    trigger: Tr,
    wf: WF,
    lateness: i64,
    late_tag: Option<OutputTag<I>>,
    contents: Vec<FastMap<(K, A::W), WinState<WF::Acc>>>,
    sessions: Vec<FastMap<K, Vec<A::W>>>,
    timers: Timers<(K, A::W)>,
    range: KeyGroupRange,
    max_parallelism: u32,
    watermark: Timestamp,
    out: Vec<Rec<O>>,
    next: BoxDown<O>,
    sides: Sides,
    wbuf: Vec<A::W>,
    ops: Vec<TimerOp>,
    late_dropped: u64,
    uid: String,
    subtask: u32,
}

/// Configuration of a window operator, from the stream API.
pub(crate) struct WindowSpec<KF, A, Tr, WF, I> {
    pub key_fn: KF,
    pub assigner: A,
    pub trigger: Tr,
    pub wf: WF,
    pub lateness_ms: i64,
    pub late_tag: Option<OutputTag<I>>,
}

impl<K, I, O, KF, A, Tr, WF> WindowOperator<K, I, O, KF, A, Tr, WF>
where
    K: Key,
    I: Data,
    O: Data,
    KF: Fn(&I) -> K + Send,
    A: WindowAssigner,
    Tr: Trigger<I, A::W>,
    WF: WindowFunction<K, A::W, I, O>,
{
    pub(crate) fn new(spec: WindowSpec<KF, A, Tr, WF, I>, info: &TaskInfo, uid: &str, next: BoxDown<O>, sides: Sides) -> Self {
        let range = info.key_groups();
        let n = range.len();
        WindowOperator {
            key_fn: spec.key_fn,
            assigner: spec.assigner,
            trigger: spec.trigger,
            wf: spec.wf,
            lateness: spec.lateness_ms,
            late_tag: spec.late_tag,
            contents: (0..n).map(|_| FastMap::default()).collect(),
            sessions: (0..n).map(|_| FastMap::default()).collect(),
            timers: Timers::default(),
            range,
            max_parallelism: info.max_parallelism,
            watermark: i64::MIN,
            out: Vec::new(),
            next,
            sides,
            wbuf: Vec::new(),
            ops: Vec::new(),
            late_dropped: 0,
            uid: uid.to_string(),
            subtask: info.subtask,
        }
    }

    fn cleanup_time(&self, w: &A::W) -> Timestamp {
        if self.assigner.is_event_time() { w.max_timestamp().saturating_add(self.lateness) } else { w.max_timestamp() }
    }

    fn is_window_late(&self, w: &A::W) -> bool {
        self.assigner.is_event_time() && self.cleanup_time(w) <= self.watermark
    }

    fn apply_ops(&mut self, key: &K, w: &A::W) {
        if self.ops.is_empty() {
            return;
        }
        let kw = (key.clone(), w.clone());
        for op in self.ops.drain(..) {
            match op {
                TimerOp::RegisterEvent(t) => self.timers.event.register(t, &kw),
                TimerOp::DeleteEvent(t) => self.timers.event.delete(t, &kw),
                TimerOp::RegisterProcessing(t) => self.timers.processing.register(t, &kw),
                TimerOp::DeleteProcessing(t) => self.timers.processing.delete(t, &kw),
            }
        }
    }

    fn register_cleanup(&mut self, key: &K, w: &A::W) {
        let t = self.cleanup_time(w);
        if self.assigner.is_event_time() {
            self.timers.event.register(t, &(key.clone(), w.clone()));
        } else if t != Timestamp::MAX {
            self.timers.processing.register(t, &(key.clone(), w.clone()));
        }
    }

    fn delete_cleanup(&mut self, key: &K, w: &A::W) {
        let t = self.cleanup_time(w);
        let kw = (key.clone(), w.clone());
        if self.assigner.is_event_time() { self.timers.event.delete(t, &kw) } else { self.timers.processing.delete(t, &kw) }
    }

    /// Adds `new_w` to the key's sessions, merging what it touches. Returns the window
    /// the record belongs to, or `None` when that window is already late.
    fn add_to_sessions(&mut self, key: &K, g: usize, new_w: A::W, now: Timestamp) -> Option<A::W> {
        let list = self.sessions[g].get(key).cloned().unwrap_or_default();
        let mut merged = new_w.clone();
        let mut absorbed = Vec::new();
        let mut kept = Vec::new();
        for s in list {
            if self.assigner.merge_windows(&s, &new_w).is_some() {
                merged = self.assigner.merge_windows(&merged, &s).unwrap_or(merged);
                absorbed.push(s);
            } else {
                kept.push(s);
            }
        }
        if self.is_window_late(&merged) {
            return None;
        }
        if !(absorbed.is_empty() || (absorbed.len() == 1 && absorbed[0] == merged)) {
            let mut acc = self.wf.create();
            let mut trig = 0u64;
            for s in &absorbed {
                if let Some(e) = self.contents[g].remove(&(key.clone(), s.clone())) {
                    self.wf.merge(&mut acc, e.acc);
                    trig += e.trig;
                }
            }
            for s in &absorbed {
                if *s != merged {
                    let mut dummy = 0;
                    let mut ctx = TriggerContext { watermark: self.watermark, now, fresh: false, state: &mut dummy, ops: &mut self.ops };
                    self.trigger.clear(s, &mut ctx);
                    self.apply_ops(key, s);
                    self.delete_cleanup(key, s);
                }
            }
            let mut ctx = TriggerContext { watermark: self.watermark, now, fresh: false, state: &mut trig, ops: &mut self.ops };
            self.trigger.on_merge(&merged, &mut ctx);
            self.contents[g].insert((key.clone(), merged.clone()), WinState { acc, trig });
            self.apply_ops(key, &merged);
            self.register_cleanup(key, &merged);
        }
        kept.push(merged.clone());
        self.sessions[g].insert(key.clone(), kept);
        Some(merged)
    }

    fn process_element(&mut self, key: K, rec: Rec<I>, now: Timestamp) {
        let g = self.range.offset(key_group(&key, self.max_parallelism));
        let mut windows = std::mem::take(&mut self.wbuf);
        windows.clear();
        self.assigner.assign(rec.ts, now, &mut windows);
        let mut skipped = true;
        for w in windows.drain(..) {
            let w = if self.assigner.is_merging() {
                match self.add_to_sessions(&key, g, w, now) {
                    Some(w) => w,
                    None => continue,
                }
            } else {
                if self.is_window_late(&w) {
                    continue;
                }
                w
            };
            skipped = false;
            let (res, fresh) = {
                let Self { contents, wf, trigger, ops, out, watermark, .. } = self;
                let (fresh, entry) = match contents[g].entry((key.clone(), w.clone())) {
                    std::collections::hash_map::Entry::Occupied(o) => (false, o.into_mut()),
                    std::collections::hash_map::Entry::Vacant(v) => (true, v.insert(WinState { acc: wf.create(), trig: 0 })),
                };
                wf.add(&mut entry.acc, &rec.value);
                let mut ctx = TriggerContext { watermark: *watermark, now, fresh, state: &mut entry.trig, ops };
                let res = trigger.on_element(&rec.value, rec.ts, &w, &mut ctx);
                if res.is_fire() {
                    let mut c = Collector::new(out, w.max_timestamp());
                    wf.emit(&key, &w, &entry.acc, &mut c);
                }
                (res, fresh)
            };
            if res.is_purge() {
                self.contents[g].remove(&(key.clone(), w.clone()));
            }
            self.apply_ops(&key, &w);
            if fresh {
                self.register_cleanup(&key, &w);
            }
        }
        self.wbuf = windows;
        if skipped && self.assigner.is_event_time() && rec.ts.saturating_add(self.lateness) <= self.watermark {
            match &self.late_tag {
                Some(tag) => self.sides.emit(tag, rec.ts, rec.value),
                None => self.late_dropped += 1,
            }
        }
    }

    /// A timer of (key, window) fired at `time` in `event_time` or processing time.
    fn on_timer(&mut self, time: Timestamp, kw: (K, A::W), event_time: bool, now: Timestamp) {
        let (key, w) = kw;
        let g = self.range.offset(key_group(&key, self.max_parallelism));
        if self.assigner.is_merging() && !self.sessions[g].get(&key).is_some_and(|l| l.contains(&w)) {
            return; // merged away
        }
        let res = {
            let Self { contents, wf, trigger, ops, out, watermark, .. } = self;
            let entry = contents[g].get_mut(&(key.clone(), w.clone()));
            let mut dummy = 0u64;
            let has = entry.is_some();
            let (state, acc) = match entry {
                Some(e) => (&mut e.trig, Some(&e.acc)),
                None => (&mut dummy, None),
            };
            let mut ctx = TriggerContext { watermark: *watermark, now, fresh: false, state, ops };
            let res = if event_time {
                trigger.on_event_time(time, &w, &mut ctx)
            } else {
                trigger.on_processing_time(time, &w, &mut ctx)
            };
            if res.is_fire() && has {
                if let Some(acc) = acc {
                    let mut c = Collector::new(out, w.max_timestamp());
                    wf.emit(&key, &w, acc, &mut c);
                }
            }
            res
        };
        if res.is_purge() {
            self.contents[g].remove(&(key.clone(), w.clone()));
        }
        self.apply_ops(&key, &w);
        if event_time == self.assigner.is_event_time() && time == self.cleanup_time(&w) {
            self.clear_window(&key, g, &w, now);
        }
    }

    fn clear_window(&mut self, key: &K, g: usize, w: &A::W, now: Timestamp) {
        let mut trig = self.contents[g].remove(&(key.clone(), w.clone())).map(|e| e.trig).unwrap_or(0);
        let mut ctx = TriggerContext { watermark: self.watermark, now, fresh: false, state: &mut trig, ops: &mut self.ops };
        self.trigger.clear(w, &mut ctx);
        self.apply_ops(key, w);
        if self.assigner.is_merging() {
            if let Some(list) = self.sessions[g].get_mut(key) {
                list.retain(|s| s != w);
                if list.is_empty() {
                    self.sessions[g].remove(key);
                }
            }
        }
    }

    fn emit_pending(&mut self) {
        if !self.out.is_empty() {
            self.next.push(&mut self.out);
        }
        self.sides.push_pending();
    }
}

/// The per-key-group snapshot of a window operator.
#[derive(Serialize, Deserialize)]
struct WindowGroupBlob<K, W, A> {
    contents: Vec<((K, W), WinState<A>)>,
    sessions: Vec<(K, Vec<W>)>,
    event_timers: Vec<(Timestamp, (K, W))>,
    processing_timers: Vec<(Timestamp, (K, W))>,
}

impl<K, I, O, KF, A, Tr, WF> Downstream<I> for WindowOperator<K, I, O, KF, A, Tr, WF>
where
    K: Key,
    I: Data,
    O: Data,
    KF: Fn(&I) -> K + Send,
    A: WindowAssigner,
    Tr: Trigger<I, A::W>,
    WF: WindowFunction<K, A::W, I, O>,
{
    fn push(&mut self, batch: &mut Vec<Rec<I>>) {
        let now = if self.assigner.is_event_time() { 0 } else { now_ms() };
        for rec in batch.drain(..) {
            let key = (self.key_fn)(&rec.value);
            self.process_element(key, rec, now);
            if self.out.len() >= crate::exec::BATCH_SIZE {
                self.emit_pending();
            }
        }
        self.emit_pending();
    }
    fn watermark(&mut self, wm: Timestamp) {
        self.watermark = wm;
        while let Some((ts, keys)) = self.timers.event.pop_due(wm) {
            for kw in keys {
                self.on_timer(ts, kw, true, 0);
            }
            if self.out.len() >= crate::exec::BATCH_SIZE {
                self.emit_pending();
            }
        }
        self.emit_pending();
        self.sides.watermark(wm);
        self.next.watermark(wm)
    }
    fn idle(&mut self, idle: bool) {
        self.sides.idle(idle);
        self.next.idle(idle)
    }
    fn processing_time(&mut self, now: Timestamp) {
        while let Some((ts, keys)) = self.timers.processing.pop_due(now) {
            for kw in keys {
                self.on_timer(ts, kw, false, now);
            }
        }
        self.emit_pending();
        self.next.processing_time(now)
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        crate::exec::earliest(self.timers.processing.next_time(), self.next.next_deadline())
    }
    fn flush(&mut self) {
        self.emit_pending();
        self.sides.flush();
        self.next.flush()
    }
    fn barrier(&mut self, b: &Barrier, snaps: &mut Vec<OperatorSnapshot>) {
        self.emit_pending();
        snaps.push(self.snapshot());
        self.sides.barrier(b, snaps);
        self.next.barrier(b, snaps)
    }
    fn checkpoint_complete(&mut self, id: u64) {
        self.next.checkpoint_complete(id)
    }
    fn end(&mut self) {
        if self.late_dropped > 0 {
            tracing::info!(operator = %self.uid, subtask = self.subtask, dropped = self.late_dropped, "late records dropped");
        }
        self.emit_pending();
        self.sides.end();
        self.next.end()
    }
}

impl<K, I, O, KF, A, Tr, WF> WindowOperator<K, I, O, KF, A, Tr, WF>
where
    K: Key,
    I: Data,
    O: Data,
    KF: Fn(&I) -> K + Send,
    A: WindowAssigner,
    Tr: Trigger<I, A::W>,
    WF: WindowFunction<K, A::W, I, O>,
{
    pub(crate) fn restore(&mut self, groups: Vec<(u32, &[u8])>) -> Result<(), String> {
        for (kg, bytes) in groups {
            let g = self.range.offset(kg);
            let blob: WindowGroupBlob<K, A::W, WF::Acc> = postcard::from_bytes(bytes).map_err(|e| format!("key group {kg}: {e}"))?;
            self.contents[g].extend(blob.contents);
            self.sessions[g].extend(blob.sessions);
            for (ts, kw) in blob.event_timers {
                self.timers.event.register(ts, &kw);
            }
            for (ts, kw) in blob.processing_timers {
                self.timers.processing.register(ts, &kw);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> OperatorSnapshot {
        let n = self.range.len();
        let mut blobs: Vec<WindowGroupBlob<K, A::W, WF::Acc>> = (0..n)
            .map(|g| WindowGroupBlob {
                contents: self.contents[g].iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                sessions: self.sessions[g].iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                event_timers: Vec::new(),
                processing_timers: Vec::new(),
            })
            .collect();
        for (ts, kw) in self.timers.event.iter() {
            let g = self.range.offset(key_group(&kw.0, self.max_parallelism));
            blobs[g].event_timers.push((*ts, kw.clone()));
        }
        for (ts, kw) in self.timers.processing.iter() {
            let g = self.range.offset(key_group(&kw.0, self.max_parallelism));
            blobs[g].processing_timers.push((*ts, kw.clone()));
        }
        let keyed = blobs
            .iter()
            .enumerate()
            .map(|(g, b)| {
                let bytes = postcard::to_allocvec(b).unwrap_or_else(|e| panic!("window state of {} cannot be serialized: {e}", self.uid));
                (self.range.start + g as u32, bytes)
            })
            .collect();
        OperatorSnapshot { uid: self.uid.clone(), subtask: self.subtask, keyed, operator: None, ..Default::default() }
    }
}
