//! A sink that discards everything (for benchmarks), counting what it saw.

use super::{ConnectorError, Sink};
use crate::record::Rec;

#[derive(Default, Clone, Copy)]
pub struct BlackholeSink {
    pub count: u64,
}

impl<T> Sink<T> for BlackholeSink {
    #[inline]
    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError> {
        self.count += batch.len() as u64;
        std::hint::black_box(batch);
        Ok(())
    }
}
