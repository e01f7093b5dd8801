//! Weir: a stateful, event-time, exactly-once stream processor.
//!
//! Build a job with [`StreamEnv`], run it embedded with [`StreamEnv::execute`].
//! The modules follow the concepts of DESIGN.md: [`keygroup`], [`time`], [`state`],
//! [`window`], [`connector`]; `exec` runs the graph the [`stream`] API builds.

#[cfg(feature = "arrow")]
pub mod arrow;
pub mod connector;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod error;
pub(crate) mod exec;
pub(crate) mod exchange;
pub(crate) mod graph;

pub mod jobs;
pub mod keygroup;
pub mod metrics;
pub(crate) mod operator;
pub mod record;
pub mod rest;
pub mod state;
pub mod stream;
pub mod time;
pub mod window;

pub use error::JobError;
pub use exec::plan::{JobConfig, RunningJob};
pub use exec::{TaskInfo, TaskMetrics};
pub use graph::Ship;
pub use keygroup::Key;
pub use operator::basic::{ProcessContext, ProcessFunction};
pub use operator::keyed::{KeyedContext, KeyedCoProcessFunction, KeyedProcessFunction, TimeDomain};
pub use record::{Collector, Data, OutputTag, Rec, Timestamp};
pub use stream::{CoProcessFunction, DataStream, KeyedStream, StreamEnv, WindowedStream};
pub use time::WatermarkStrategy;
