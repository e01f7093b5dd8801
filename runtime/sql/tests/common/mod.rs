//! What the SQL test binaries share: an in-memory sink keeping each table's rows in
//! print form (`+I[a, b]`), changelogs included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use weir::connector::{ConnectorError, Sink};
use weir::record::Rec;
use weir_sql::connectors::print_rows;
use weir_sql::ops::ChangeBatch;

/// Rows in print form, per table.
pub type Collected = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Appends the rows it is given to `out[table]`.
pub struct CollectSink {
    pub table: String,
    pub out: Collected,
}

impl Sink<ChangeBatch> for CollectSink {
    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        let mut m = self.out.lock().unwrap();
        for r in batch {
            m.entry(self.table.clone()).or_default().extend(print_rows(&r.value).map_err(ConnectorError::Other)?);
        }
        Ok(())
    }
}
