//! The file formats of the `filesystem` connector: one module each, with its
//! reader (a [`crate::BatchSource`] over the files of a path) and its encoder.

pub mod csv;
pub mod json;

use arrow::array::RecordBatch;

use super::options::Format;

/// The rows of `batch` in `format`, each record ending with a line break.
pub fn encode(format: &Format, batch: &RecordBatch) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => json::encode(batch),
        Format::Csv(o) => csv::encode(batch, o),
    }
}
