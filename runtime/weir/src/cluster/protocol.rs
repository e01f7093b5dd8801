//! The control protocol between the coordinator (worker 0) and the other workers,
//! carried in control frames on the peer connections.
//!
//! One job attempt ("epoch"): every worker dials worker 0 and says [`Control::Hello`];
//! once all have, worker 0 answers each with [`Control::Start`] (the epoch, the job id
//! and the snapshot to restore). Workers then connect to each other (worker `i` dials
//! every `0 < j < i`, saying `Hello` with the epoch), launch their tasks and report
//! [`Control::Ready`]. During the run worker 0 sends `Trigger`/`Complete`, workers send
//! `Report`, `Progress` and `Failed`. Any lost connection ends the epoch everywhere.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::exchange::frame;
use crate::exec::Barrier;
use crate::state::snapshot::OperatorSnapshot;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) enum Control {
    /// First message on every connection: who is calling, for which epoch (0 = any).
    Hello { ordinal: u32, epoch: u64 },
    /// Worker 0 → workers: run attempt `epoch` of deployment `job_id`, from `restore`.
    Start { epoch: u64, job_id: String, restore: Option<String> },
    /// Worker → 0: tasks launched; `tasks` of them will report every checkpoint.
    Ready { tasks: u32 },
    /// 0 → workers: sources inject this barrier.
    Trigger(Barrier),
    /// 0 → workers: checkpoint `id` is complete (sinks commit); `u64::MAX` = end of job.
    Complete(u64),
    /// Worker → 0: one task's snapshot for a barrier.
    Report { barrier: Barrier, operators: Vec<OperatorSnapshot> },
    /// Worker → 0: whether some / all of its tasks have finished their input.
    Progress { any_finished: bool, all_finished: bool },
    /// Worker → 0: a task failed.
    Failed(String),
    /// 0 → workers: the job is over.
    Shutdown,
    /// 0 → workers: checkpoint `id` failed; sources paused by a stop-with-savepoint resume.
    Abort(u64),
    /// Worker → 0: one task's snapshot for a barrier could not be completed (its
    /// RocksDB files could not be uploaded): the checkpoint fails.
    ReportFailed { barrier: Barrier, error: String },
    /// Worker → 0: checkpoint `id` cannot be restored (a shared file is missing or
    /// corrupt): recovery must fall back to an older one.
    BadCheckpoint { id: u64, error: String },
}

impl Control {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("bad control message: {e}"))
    }

    /// Writes this message as one control frame (handshakes, before the connection's
    /// threads run).
    pub(crate) fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        frame::write(w, &frame::encode(frame::CONTROL, &self.encode()))?;
        w.flush()
    }

    /// Reads one control frame (handshakes); heartbeats are skipped.
    pub(crate) fn read_from(r: &mut impl Read) -> std::io::Result<Self> {
        let mut buf = Vec::new();
        loop {
            match frame::read(r, &mut buf)? {
                frame::CONTROL => return Control::decode(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
                frame::HEARTBEAT => continue,
                s => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("expected a control frame, got stream {s:#x}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_through_frames() {
        let msgs = vec![
            Control::Hello { ordinal: 2, epoch: 7 },
            Control::Start { epoch: 8, job_id: "abc".into(), restore: Some("s3://b/p/checkpoints/chk-3".into()) },
            Control::Ready { tasks: 3 },
            Control::Trigger(Barrier { checkpoint_id: 4, timestamp: 5, savepoint: true, stop: false, target: false }),
            Control::Report { barrier: Barrier { checkpoint_id: 4, timestamp: 5, savepoint: false, stop: false, target: false }, operators: vec![OperatorSnapshot { uid: "u".into(), subtask: 1, keyed: vec![(3, vec![1, 2])], operator: None, ..Default::default() }] },
            Control::Progress { any_finished: true, all_finished: false },
            Control::Failed("boom".into()),
            Control::Complete(u64::MAX),
            Control::Shutdown,
            Control::ReportFailed { barrier: Barrier { checkpoint_id: 4, timestamp: 5, savepoint: false, stop: false, target: false }, error: "s3 down".into() },
            Control::BadCheckpoint { id: 3, error: "hash".into() },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            m.write_to(&mut wire).unwrap();
        }
        let mut r = wire.as_slice();
        for m in &msgs {
            assert_eq!(&Control::read_from(&mut r).unwrap(), m);
        }
    }
}
