//! Prints records (Debug format) to standard output.

use std::io::Write;

use super::{ConnectorError, Sink};
use crate::record::Rec;

#[derive(Default, Clone, Copy)]
pub struct StdoutSink;

impl<T: std::fmt::Debug> Sink<T> for StdoutSink {
    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError> {
        let mut out = std::io::stdout().lock();
        for r in batch {
            writeln!(out, "{:?}", r.value).map_err(|e| ConnectorError::io("stdout", e))?;
        }
        Ok(())
    }
}
