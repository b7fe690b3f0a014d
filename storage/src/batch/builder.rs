//! The records API. (Being written.)
use super::Compression;

/// A record to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<super::RecordHeader>,
    pub timestamp: i64,
}

/// Builds a batch.
#[derive(Debug)]
pub struct BatchBuilder {
    pub compression: Compression,
}
impl BatchBuilder {
    /// temp
    pub fn new(compression: Compression) -> Self {
        BatchBuilder { compression }
    }
    /// temp
    pub fn push(&mut self, _r: NewRecord) {}
    /// temp
    pub fn build(&self) -> Result<Vec<u8>, super::BatchError> {
        Err(super::BatchError::Encode("stub".into()))
    }
}
