//! Window assigners: which windows a record belongs to.

use std::time::Duration;

use super::trigger::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger};
use super::{GlobalWindow, TimeWindow, Window};
use crate::record::Timestamp;

/// Assigns each record to zero or more windows.
pub trait WindowAssigner: Clone + Send + 'static {
    type W: Window;
    /// The trigger used unless the job sets one.
    type Trigger: Clone + Send + 'static;
    fn assign(&self, ts: Timestamp, now: Timestamp, out: &mut Vec<Self::W>);
    fn default_trigger(&self) -> Self::Trigger;
    fn is_event_time(&self) -> bool;
    /// Merging assigners (sessions) merge windows that overlap.
    fn is_merging(&self) -> bool {
        false
    }
    /// For merging assigners: the window covering two intersecting windows.
    fn merge_windows(&self, _a: &Self::W, _b: &Self::W) -> Option<Self::W> {
        None
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Start of the window of size `size` (with `offset`) that contains `ts`.
#[inline]
pub(crate) fn window_start(ts: Timestamp, offset: i64, size: i64) -> Timestamp {
    ts - (ts - offset).rem_euclid(size)
}

/// Fixed-size, non-overlapping event-time windows.
#[derive(Clone, Copy, Debug)]
pub struct TumblingEventTimeWindows {
    size: i64,
    offset: i64,
}

impl TumblingEventTimeWindows {
    pub fn of(size: Duration) -> Self {
        assert!(!size.is_zero(), "window size must be positive");
        TumblingEventTimeWindows { size: ms(size), offset: 0 }
    }
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = ms(offset);
        self
    }
}

impl WindowAssigner for TumblingEventTimeWindows {
    type W = TimeWindow;
    type Trigger = EventTimeTrigger;
    #[inline]
    fn assign(&self, ts: Timestamp, _now: Timestamp, out: &mut Vec<TimeWindow>) {
        let start = window_start(ts, self.offset, self.size);
        out.push(TimeWindow::new(start, start + self.size));
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
}

/// Fixed-size event-time windows that start every `slide` (and so overlap).
#[derive(Clone, Copy, Debug)]
pub struct SlidingEventTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
}

impl SlidingEventTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> Self {
        assert!(!size.is_zero() && !slide.is_zero(), "window size and slide must be positive");
        SlidingEventTimeWindows { size: ms(size), slide: ms(slide), offset: 0 }
    }
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = ms(offset);
        self
    }
}

impl WindowAssigner for SlidingEventTimeWindows {
    type W = TimeWindow;
    type Trigger = EventTimeTrigger;
    #[inline]
    fn assign(&self, ts: Timestamp, _now: Timestamp, out: &mut Vec<TimeWindow>) {
        let last = window_start(ts, self.offset, self.slide);
        let mut start = last;
        while start > ts - self.size {
            out.push(TimeWindow::new(start, start + self.size));
            start -= self.slide;
        }
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
}

/// Event-time sessions: records closer than `gap` fall into one window.
#[derive(Clone, Copy, Debug)]
pub struct EventTimeSessionWindows {
    gap: i64,
}

impl EventTimeSessionWindows {
    pub fn with_gap(gap: Duration) -> Self {
        assert!(!gap.is_zero(), "session gap must be positive");
        EventTimeSessionWindows { gap: ms(gap) }
    }
}

impl WindowAssigner for EventTimeSessionWindows {
    type W = TimeWindow;
    type Trigger = EventTimeTrigger;
    fn assign(&self, ts: Timestamp, _now: Timestamp, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::new(ts, ts.saturating_add(self.gap)));
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, a: &TimeWindow, b: &TimeWindow) -> Option<TimeWindow> {
        a.intersects(b).then(|| a.cover(b))
    }
}

/// Fixed-size windows over processing time.
#[derive(Clone, Copy, Debug)]
pub struct TumblingProcessingTimeWindows {
    size: i64,
}

impl TumblingProcessingTimeWindows {
    pub fn of(size: Duration) -> Self {
        assert!(!size.is_zero(), "window size must be positive");
        TumblingProcessingTimeWindows { size: ms(size) }
    }
}

impl WindowAssigner for TumblingProcessingTimeWindows {
    type W = TimeWindow;
    type Trigger = ProcessingTimeTrigger;
    fn assign(&self, _ts: Timestamp, now: Timestamp, out: &mut Vec<TimeWindow>) {
        let start = window_start(now, 0, self.size);
        out.push(TimeWindow::new(start, start + self.size));
    }
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
}

/// One window per key holding everything; fires only through a custom trigger.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalWindows;

impl GlobalWindows {
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl WindowAssigner for GlobalWindows {
    type W = GlobalWindow;
    type Trigger = NeverTrigger;
    fn assign(&self, _ts: Timestamp, _now: Timestamp, out: &mut Vec<GlobalWindow>) {
        out.push(GlobalWindow);
    }
    fn default_trigger(&self) -> NeverTrigger {
        NeverTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign<A: WindowAssigner>(a: &A, ts: i64) -> Vec<A::W> {
        let mut v = Vec::new();
        a.assign(ts, 0, &mut v);
        v
    }

    #[test]
    fn tumbling_and_negative_times() {
        let t = TumblingEventTimeWindows::of(Duration::from_secs(10));
        assert_eq!(assign(&t, 0), vec![TimeWindow::new(0, 10_000)]);
        assert_eq!(assign(&t, 9_999), vec![TimeWindow::new(0, 10_000)]);
        assert_eq!(assign(&t, 10_000), vec![TimeWindow::new(10_000, 20_000)]);
        assert_eq!(assign(&t, -1), vec![TimeWindow::new(-10_000, 0)]);
    }

    #[test]
    fn sliding_windows_cover_the_timestamp() {
        let s = SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(2));
        let w = assign(&s, 11_000);
        assert_eq!(w.len(), 5);
        for x in &w {
            assert!(x.start <= 11_000 && 11_000 < x.end);
        }
        assert_eq!(w[0], TimeWindow::new(10_000, 20_000));
        assert_eq!(w[4], TimeWindow::new(2_000, 12_000));
    }
}
