//! Records inside a batch. (Being written: see the batch helper's task.)
use super::{BatchError, BatchHeader};

/// One record header: a key (UTF-8 in practice, bytes on the wire) and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// One decoded record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<RecordHeader>,
}

/// Decodes every record of a checked batch.
pub fn decode_records(_header: &BatchHeader, _batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    Err(BatchError::Encode("not yet".into()))
}
