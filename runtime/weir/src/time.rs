//! Event time: watermark strategies at sources and watermark tracking across inputs.
//!
//! A watermark `w` promises that no more records with timestamp `<= w` will arrive
//! (except late ones). An operator's watermark is the minimum over its active input
//! channels; idle channels are ignored until they become active again, and a channel
//! that ended counts as `+inf`. End of input is the final watermark `Timestamp::MAX`.

use std::sync::Arc;
use std::time::Duration;

use crate::record::{NO_TIMESTAMP, Timestamp};

/// The watermark before any has been seen.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
/// The final watermark, emitted at end of input: every window fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

type Extractor<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// How a source assigns timestamps and generates watermarks (Flink's `WatermarkStrategy`).
pub struct WatermarkStrategy<T> {
    pub(crate) extractor: Option<Extractor<T>>,
    /// Generate bounded-out-of-orderness watermarks from the timestamps.
    pub(crate) generate: bool,
    pub(crate) out_of_orderness_ms: i64,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) interval: Duration,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            extractor: self.extractor.clone(),
            generate: self.generate,
            out_of_orderness_ms: self.out_of_orderness_ms,
            idle_timeout: self.idle_timeout,
            interval: self.interval,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// No generated watermarks: only those the source emits itself, and the final one.
    pub fn none() -> Self {
        WatermarkStrategy { extractor: None, generate: false, out_of_orderness_ms: 0, idle_timeout: None, interval: Duration::from_millis(50) }
    }

    /// Timestamps as the source sets them (`collect_at`); watermark = max − `bound` − 1 ms.
    pub fn source_timestamps(bound: Duration) -> Self {
        WatermarkStrategy { generate: true, out_of_orderness_ms: bound.as_millis() as i64, ..Self::none() }
    }

    /// Timestamps from `extractor`; watermark = max timestamp seen − `bound` − 1 ms.
    pub fn bounded_out_of_orderness(bound: Duration, extractor: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        WatermarkStrategy {
            extractor: Some(Arc::new(extractor)),
            generate: true,
            out_of_orderness_ms: bound.as_millis() as i64,
            idle_timeout: None,
            interval: Duration::from_millis(50),
        }
    }

    /// Timestamps that never decrease (zero out-of-orderness).
    pub fn monotonous(extractor: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        Self::bounded_out_of_orderness(Duration::ZERO, extractor)
    }

    /// Marks the source idle when it produced nothing for `timeout`, so it no longer
    /// holds back the watermark of downstream operators.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How often (wall clock) watermarks are emitted (default 50 ms).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    pub(crate) fn timestamp_of(&self, value: &T) -> Timestamp {
        match &self.extractor {
            Some(f) => f(value),
            None => NO_TIMESTAMP,
        }
    }

    pub(crate) fn has_event_time(&self) -> bool {
        self.extractor.is_some()
    }
}

/// Bounded-out-of-orderness watermark generation state of one source subtask.
#[derive(Debug, Clone)]
pub(crate) struct WatermarkGenerator {
    max_ts: Timestamp,
    bound: i64,
    emitted: Timestamp,
}

impl WatermarkGenerator {
    pub(crate) fn new(bound: i64) -> Self {
        WatermarkGenerator { max_ts: MIN_WATERMARK, bound, emitted: MIN_WATERMARK }
    }
    #[inline]
    pub(crate) fn observe(&mut self, ts: Timestamp) {
        if ts > self.max_ts {
            self.max_ts = ts;
        }
    }
    /// The new watermark, if it advanced since the last call.
    pub(crate) fn poll(&mut self) -> Option<Timestamp> {
        if self.max_ts == MIN_WATERMARK {
            return None;
        }
        let wm = self.max_ts.saturating_sub(self.bound).saturating_sub(1);
        if wm > self.emitted {
            self.emitted = wm;
            Some(wm)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct ChannelState {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// Combines the watermarks of an operator's input channels: the minimum over channels
/// that are active (not idle); an ended channel counts as `MAX_WATERMARK`.
#[derive(Debug)]
pub(crate) struct WatermarkTracker {
    channels: Vec<ChannelState>,
    current: Timestamp,
    idle: bool,
}

/// What changed at the output of a [`WatermarkTracker`].
#[derive(Debug, PartialEq, Eq, Default)]
pub(crate) struct WatermarkUpdate {
    /// The combined watermark advanced to this value.
    pub advanced: Option<Timestamp>,
    /// The combined idleness changed: `Some(true)` when every live channel went idle,
    /// `Some(false)` when one became active again.
    pub idle: Option<bool>,
}

impl WatermarkTracker {
    pub(crate) fn new(channels: usize) -> Self {
        WatermarkTracker {
            channels: vec![ChannelState { watermark: MIN_WATERMARK, idle: false, ended: false }; channels],
            current: MIN_WATERMARK,
            idle: false,
        }
    }

    pub(crate) fn current(&self) -> Timestamp {
        self.current
    }

    pub(crate) fn on_watermark(&mut self, ch: usize, wm: Timestamp) -> WatermarkUpdate {
        let c = &mut self.channels[ch];
        if wm > c.watermark {
            c.watermark = wm;
        }
        c.idle = false;
        self.recompute()
    }

    pub(crate) fn on_idle(&mut self, ch: usize, idle: bool) -> WatermarkUpdate {
        self.channels[ch].idle = idle;
        self.recompute()
    }

    pub(crate) fn on_end(&mut self, ch: usize) -> WatermarkUpdate {
        let c = &mut self.channels[ch];
        c.ended = true;
        c.idle = false;
        c.watermark = MAX_WATERMARK;
        self.recompute()
    }

    fn recompute(&mut self) -> WatermarkUpdate {
        let mut up = WatermarkUpdate::default();
        let all_idle = self.channels.iter().any(|c| c.idle) && self.channels.iter().all(|c| c.idle || c.ended);
        if all_idle != self.idle {
            self.idle = all_idle;
            up.idle = Some(all_idle);
        }
        let min = self.channels.iter().filter(|c| !c.idle).map(|c| c.watermark).min();
        if let Some(m) = min {
            if m > self.current {
                self.current = m;
                up.advanced = Some(m);
            }
        }
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adv(t: Timestamp) -> WatermarkUpdate {
        WatermarkUpdate { advanced: Some(t), idle: None }
    }
    const NONE: WatermarkUpdate = WatermarkUpdate { advanced: None, idle: None };

    #[test]
    fn min_over_channels() {
        let mut t = WatermarkTracker::new(3);
        assert_eq!(t.on_watermark(0, 10), NONE);
        assert_eq!(t.on_watermark(1, 5), NONE);
        assert_eq!(t.on_watermark(2, 7), adv(5));
        assert_eq!(t.on_watermark(1, 20), adv(7));
        assert_eq!(t.on_watermark(2, 6), NONE, "watermarks never go back");
        assert_eq!(t.current(), 7);
    }

    #[test]
    fn idle_channel_does_not_hold_back() {
        let mut t = WatermarkTracker::new(2);
        t.on_watermark(0, 100);
        assert_eq!(t.current(), MIN_WATERMARK);
        assert_eq!(t.on_idle(1, true), adv(100));
        assert_eq!(t.on_watermark(0, 150), adv(150));
        // channel 1 wakes up behind: it cannot move the watermark back
        assert_eq!(t.on_watermark(1, 120), NONE);
        assert_eq!(t.on_watermark(0, 200), NONE);
        assert_eq!(t.on_watermark(1, 210), adv(200));
    }

    #[test]
    fn all_idle_then_active() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.on_idle(0, true), NONE);
        assert_eq!(t.on_idle(1, true), WatermarkUpdate { advanced: None, idle: Some(true) });
        assert_eq!(t.on_watermark(1, 5), WatermarkUpdate { advanced: Some(5), idle: Some(false) });
        assert_eq!(t.on_watermark(1, 6), adv(6));
    }

    #[test]
    fn ended_channels_count_as_max() {
        let mut t = WatermarkTracker::new(2);
        t.on_watermark(0, 10);
        assert_eq!(t.on_end(1), adv(10));
        assert_eq!(t.on_end(0), adv(MAX_WATERMARK));
    }

    #[test]
    fn generator_bound() {
        let mut g = WatermarkGenerator::new(5);
        assert_eq!(g.poll(), None);
        g.observe(100);
        g.observe(90);
        assert_eq!(g.poll(), Some(94));
        assert_eq!(g.poll(), None);
    }
}
