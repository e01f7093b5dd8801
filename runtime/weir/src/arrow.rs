//! Columnar batches in streams: an Arrow [`RecordBatch`] travels as one record
//! ([`ArrowBatch`]), serialized with the Arrow IPC format when it is checkpointed or
//! sent between processes. A batch can be split by key group of a key column, so
//! keyed operators (and SQL) can work on columnar data; an `Int64` key lands in the
//! same key group as the same `i64` key of a typed stream.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Int64Type};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keygroup::{Key, key_group};

/// An Arrow record batch as a stream record.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrowBatch(pub RecordBatch);

impl Serialize for ArrowBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &self.0.schema()).map_err(serde::ser::Error::custom)?;
            w.write(&self.0).map_err(serde::ser::Error::custom)?;
            w.finish().map_err(serde::ser::Error::custom)?;
        }
        s.serialize_bytes(&buf)
    }
}

impl<'de> Deserialize<'de> for ArrowBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        let mut r = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(serde::de::Error::custom)?;
        match r.next() {
            Some(b) => Ok(ArrowBatch(b.map_err(serde::de::Error::custom)?)),
            None => Err(serde::de::Error::custom("an Arrow IPC stream without a batch")),
        }
    }
}

fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::new();
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }
    d.deserialize_byte_buf(V)
}

/// A key that is its own key group: routes pre-partitioned batches exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupId(pub u32);

impl Key for KeyGroupId {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    /// The key group itself (always `< max parallelism` by construction).
    fn canonical_hash(&self) -> u64 {
        self.0 as u64
    }
}

/// The rows of a batch that belong to one key group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyGroupBatch {
    pub key_group: KeyGroupId,
    pub batch: ArrowBatch,
}

/// Errors of columnar operations.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error("key column {0} does not exist")]
    NoColumn(usize),
    #[error("key column {index} has type {found}; supported key types: Int64, Utf8")]
    KeyType { index: usize, found: DataType },
    #[error("key column {0} has nulls")]
    NullKey(usize),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Splits `batch` by the key group of column `key_col` (rows keep their order).
pub fn split_by_key_group(batch: &RecordBatch, key_col: usize, max_parallelism: u32) -> Result<Vec<KeyGroupBatch>, ColumnarError> {
    let col = batch.columns().get(key_col).ok_or(ColumnarError::NoColumn(key_col))?;
    if col.null_count() > 0 {
        return Err(ColumnarError::NullKey(key_col));
    }
    let groups: Vec<u32> = match col.data_type() {
        DataType::Int64 => col.as_primitive::<Int64Type>().values().iter().map(|k| key_group(k, max_parallelism)).collect(),
        DataType::Utf8 => col.as_string::<i32>().iter().map(|k| key_group(&k.unwrap_or_default().to_string(), max_parallelism)).collect(),
        other => return Err(ColumnarError::KeyType { index: key_col, found: other.clone() }),
    };
    let mut rows: std::collections::BTreeMap<u32, Vec<u32>> = std::collections::BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        rows.entry(*g).or_default().push(i as u32);
    }
    let mut out = Vec::with_capacity(rows.len());
    for (g, idx) in rows {
        let idx = UInt32Array::from(idx);
        let part = take_record_batch(batch, &idx)?;
        out.push(KeyGroupBatch { key_group: KeyGroupId(g), batch: ArrowBatch(part) });
    }
    Ok(out)
}

/// A one-column `Int64` batch, for examples and tests.
pub fn int64_batch(name: &str, values: Vec<i64>) -> RecordBatch {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(name, DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(arrow::array::Int64Array::from(values))]).expect("schema matches the column")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_round_trip_through_postcard() {
        let b = ArrowBatch(int64_batch("k", vec![1, 2, 3]));
        let bytes = postcard::to_allocvec(&b).unwrap();
        let back: ArrowBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(b, back);
    }

    #[test]
    fn split_matches_typed_key_groups() {
        let keys: Vec<i64> = (0..1000).map(|i| i * 7919 % 1013).collect();
        let parts = split_by_key_group(&int64_batch("k", keys.clone()), 0, 128).unwrap();
        assert_eq!(parts.iter().map(|p| p.batch.0.num_rows()).sum::<usize>(), 1000);
        for p in parts {
            for k in p.batch.0.column(0).as_primitive::<Int64Type>().values() {
                assert_eq!(key_group(k, 128), p.key_group.0);
            }
        }
    }
}
