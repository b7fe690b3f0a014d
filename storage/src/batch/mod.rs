//! Kafka RecordBatch v2: the unit the engine stores, byte for byte.
//!
//! * [`header`]: the fixed 61-byte header, CRC-32C, validation (what append and recovery check).
//! * [`record`]: the records inside a batch (varint-framed key, value, headers), decoded with
//!   every length bounded before anything is allocated.
//! * [`compression`]: decompression of gzip/snappy/lz4/zstd payloads with an output cap, and
//!   compression for the batches the engine builds itself.
//! * [`builder`]: the records API: build a batch from keys, values, headers and timestamps.

pub mod builder;
pub mod compression;
pub mod header;
pub mod record;
pub mod stream;

pub use builder::{BatchBuilder, NewRecord};
pub use header::{BatchHeader, Compression, check_batch, validate_batch};
pub use record::{
    DEFAULT_DECOMPRESSED_LIMIT, Record, RecordHeader, RecordIter, decode_records,
    decode_records_with_limit, records,
};

/// Why a batch was refused or could not be decoded. Each variant carries what was expected and
/// what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("batchLength {length} is outside [{min}, {max}]")]
    BadLength { length: i64, min: i64, max: i64 },
    #[error("batch length field says {declared} bytes but {actual} bytes were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("magic byte is {got}, only 2 (RecordBatch v2) is supported")]
    BadMagic { got: i8 },
    #[error("CRC-32C mismatch: header says {expected:#010x}, data gives {got:#010x}")]
    BadCrc { expected: u32, got: u32 },
    #[error("unknown compression codec id {0}")]
    UnknownCodec(u8),
    #[error("record count {count} is invalid")]
    BadRecordCount { count: i32 },
    #[error("lastOffsetDelta {last_offset_delta} does not match recordCount {record_count}")]
    OffsetDeltaMismatch {
        last_offset_delta: i32,
        record_count: i32,
    },
    #[error("record {index}: {reason}")]
    BadRecord { index: usize, reason: String },
    #[error("{codec} payload does not decompress: {reason}")]
    Decompress { codec: Compression, reason: String },
    #[error("{codec} payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge { codec: Compression, limit: usize },
    #[error("{codec} payload re-encodes to more than {limit} bytes")]
    EncodedTooLarge { codec: Compression, limit: usize },
    #[error("cannot encode: {0}")]
    Encode(String),
}
