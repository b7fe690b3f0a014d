//! The 61-byte RecordBatch v2 header: named offsets, parsing, validation and the CRC.
//!
//! The layout is Kafka's, big-endian, written down in `storage/FORMAT.md` §2. The engine stores
//! batches byte for byte, so this module is the one place that knows where each field lives; the
//! tools and the broker decode through it.

use bytes::Bytes;
use std::ops::Range;

use super::BatchError;

/// Offset of every field, in bytes from the start of the batch. Ranges are `[start, end)`.
pub const BASE_OFFSET: Range<usize> = 0..8;
/// `batchLength`: the number of bytes that follow this field (so the batch is `12 + batchLength`).
pub const BATCH_LENGTH: Range<usize> = 8..12;
pub const PARTITION_LEADER_EPOCH: Range<usize> = 12..16;
pub const MAGIC: usize = 16;
pub const CRC: Range<usize> = 17..21;
pub const ATTRIBUTES: Range<usize> = 21..23;
pub const LAST_OFFSET_DELTA: Range<usize> = 23..27;
pub const BASE_TIMESTAMP: Range<usize> = 27..35;
pub const MAX_TIMESTAMP: Range<usize> = 35..43;
pub const PRODUCER_ID: Range<usize> = 43..51;
pub const PRODUCER_EPOCH: Range<usize> = 51..53;
pub const BASE_SEQUENCE: Range<usize> = 53..57;
pub const RECORD_COUNT: Range<usize> = 57..61;

/// Length of the fixed header; the records (possibly compressed) follow it.
pub const HEADER_LEN: usize = 61;
/// Bytes in front of what `batchLength` counts: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD: usize = 12;
/// The CRC-32C covers everything from the attributes to the end of the batch, so a broker can
/// rewrite baseOffset and partitionLeaderEpoch without recomputing it.
pub const CRC_START: usize = ATTRIBUTES.start;
/// The smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;
/// The only record-batch format the engine stores.
pub const MAGIC_V2: i8 = 2;

/// Attribute bits (Kafka's `attributes` int16).
pub const ATTR_CODEC_MASK: i16 = 0b111;
pub const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
pub const ATTR_CONTROL: i16 = 1 << 5;

/// "No producer" in producerId / producerEpoch / baseSequence, as Kafka writes it.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// Compression codec of a batch (attributes bits 0–2).
///
/// `Compression::default()` is zstd: the records API (`PartitionLog::append_records`) compresses
/// with it unless told otherwise, since log data compresses well and zstd decodes fast.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    #[default]
    Zstd = 4,
}

impl Compression {
    /// Decodes the codec id; ids 5–7 are not defined by Kafka.
    pub fn from_id(id: u8) -> Result<Self, BatchError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(BatchError::UnknownCodec(other)),
        })
    }

    /// The codec id stored in the attributes.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" | "uncompressed" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => {
                return Err(format!(
                    "unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"
                ));
            }
        })
    }
}

/// The decoded fixed header of one batch. Parsing checks nothing but that 61 bytes are there;
/// [`check_batch`] and [`validate_batch`] check the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(buf: &[u8], r: Range<usize>) -> i64 {
    let mut a = [0u8; 8];
    if let Some(s) = buf.get(r) {
        a.copy_from_slice(s);
    }
    i64::from_be_bytes(a)
}
fn be_i32(buf: &[u8], r: Range<usize>) -> i32 {
    let mut a = [0u8; 4];
    if let Some(s) = buf.get(r) {
        a.copy_from_slice(s);
    }
    i32::from_be_bytes(a)
}
fn be_i16(buf: &[u8], r: Range<usize>) -> i16 {
    let mut a = [0u8; 2];
    if let Some(s) = buf.get(r) {
        a.copy_from_slice(s);
    }
    i16::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        let h = buf.get(..HEADER_LEN).ok_or(BatchError::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        })?;
        Ok(BatchHeader {
            base_offset: be_i64(h, BASE_OFFSET),
            batch_length: be_i32(h, BATCH_LENGTH),
            partition_leader_epoch: be_i32(h, PARTITION_LEADER_EPOCH),
            magic: h.get(MAGIC).map_or(0, |b| *b as i8),
            crc: be_i32(h, CRC) as u32,
            attributes: be_i16(h, ATTRIBUTES),
            last_offset_delta: be_i32(h, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(h, BASE_TIMESTAMP),
            max_timestamp: be_i64(h, MAX_TIMESTAMP),
            producer_id: be_i64(h, PRODUCER_ID),
            producer_epoch: be_i16(h, PRODUCER_EPOCH),
            base_sequence: be_i32(h, BASE_SEQUENCE),
            record_count: be_i32(h, RECORD_COUNT),
        })
    }

    /// Writes the header into the first 61 bytes of `out` (the CRC field as stored in `self.crc`).
    pub fn write_to(&self, out: &mut [u8; HEADER_LEN]) {
        out[BASE_OFFSET].copy_from_slice(&self.base_offset.to_be_bytes());
        out[BATCH_LENGTH].copy_from_slice(&self.batch_length.to_be_bytes());
        out[PARTITION_LEADER_EPOCH].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[MAGIC] = self.magic as u8;
        out[CRC].copy_from_slice(&self.crc.to_be_bytes());
        out[ATTRIBUTES].copy_from_slice(&self.attributes.to_be_bytes());
        out[LAST_OFFSET_DELTA].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[BASE_TIMESTAMP].copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[MAX_TIMESTAMP].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[PRODUCER_ID].copy_from_slice(&self.producer_id.to_be_bytes());
        out[PRODUCER_EPOCH].copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[RECORD_COUNT].copy_from_slice(&self.record_count.to_be_bytes());
    }

    /// Size of the whole batch on disk: `12 + batchLength` (0 if batchLength is negative).
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |l| l + LOG_OVERHEAD)
    }

    /// Offset of the last record: `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The next offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The codec in the attributes (an error for ids 5–7).
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_id((self.attributes & ATTR_CODEC_MASK) as u8)
    }

    /// Whether timestamps are the broker's append time rather than the producer's create time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether every header byte was zero: what a preallocated or zero-filled tail looks like,
    /// as opposed to a damaged batch.
    pub fn is_zeroed(buf: &[u8]) -> bool {
        buf.iter().take(HEADER_LEN).all(|b| *b == 0)
    }
}

/// CRC-32C of a whole batch as Kafka defines it: bytes `CRC_START..` of the batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_START..).unwrap_or(&[]))
}

/// Recomputes the CRC of `batch` and stores it in the header (after any field under the CRC
/// changed). Does nothing to a buffer shorter than the header.
pub fn write_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    if let Some(field) = batch.get_mut(CRC) {
        field.copy_from_slice(&crc.to_be_bytes());
    }
}

/// Checks the batch at the start of `buf`, which may continue with further batches: the length
/// is within `[MIN_BATCH_LENGTH, max_total_len]` and within `buf`, the magic is 2 and the CRC
/// matches. Returns the header; the batch is `buf[..header.total_len()]`.
///
/// This is what recovery and the tools run over every stored batch; it does not decompress.
pub fn check_batch(buf: &[u8], max_total_len: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let length = i64::from(header.batch_length);
    let max_length = i64::try_from(max_total_len.saturating_sub(LOG_OVERHEAD)).unwrap_or(i64::MAX);
    if length < MIN_BATCH_LENGTH as i64 || length > max_length {
        return Err(BatchError::BadLength {
            length,
            min: MIN_BATCH_LENGTH as i64,
            max: max_length,
        });
    }
    let total = header.total_len();
    let batch = buf.get(..total).ok_or(BatchError::Truncated {
        needed: total,
        available: buf.len(),
    })?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic { got: header.magic });
    }
    let got = compute_crc(batch);
    if got != header.crc {
        return Err(BatchError::BadCrc {
            expected: header.crc,
            got,
        });
    }
    Ok(header)
}

/// Full validation of a batch handed to the engine for appending: `buf` must be exactly one
/// batch, pass [`check_batch`], name a known codec, hold at least one record and have
/// `lastOffsetDelta == recordCount - 1` (the broker assigns contiguous offsets).
pub fn validate_batch(buf: &[u8], max_total_len: usize) -> Result<BatchHeader, BatchError> {
    let header = check_batch(buf, max_total_len)?;
    if header.total_len() != buf.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.total_len(),
            actual: buf.len(),
        });
    }
    header.compression()?;
    if header.record_count < 1 {
        return Err(BatchError::BadRecordCount {
            count: header.record_count,
        });
    }
    if i64::from(header.last_offset_delta) != i64::from(header.record_count) - 1 {
        return Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    Ok(header)
}

/// A batch that passed [`validate_batch`], holding its bytes immutably so they cannot change
/// afterwards. Lets a caller that must inspect a batch before appending it (the broker checks
/// producer ids and flags) hand it to the log (`PartitionLog::append_validated`) without the CRC
/// being computed a second time. The bytes may be a slice of a larger shared buffer (the broker
/// passes the records of a request frame as received): the log never writes into them, it
/// writes the assigned baseOffset from a buffer of its own. To modify the bytes, copy them and
/// append the copy with `append_batch`, which validates again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl ValidBatch {
    /// Validates `bytes` as one batch of at most `max_total_len` bytes. A `Vec<u8>` or a
    /// `Bytes` is taken without a copy.
    pub fn new(bytes: impl Into<Bytes>, max_total_len: usize) -> Result<Self, BatchError> {
        let bytes = bytes.into();
        let header = validate_batch(&bytes, max_total_len)?;
        Ok(ValidBatch { header, bytes })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

/// Overwrites baseOffset. It lies outside the CRC, so the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(BASE_OFFSET) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Overwrites partitionLeaderEpoch (outside the CRC too).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(field) = batch.get_mut(PARTITION_LEADER_EPOCH) {
        field.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Overwrites maxTimestamp (a CreateTime batch whose header disagrees with its records, as
/// Kafka rewrites it) and recomputes the CRC.
#[expect(
    clippy::indexing_slicing,
    reason = "the length is checked against HEADER_LEN first and the range is a header constant"
)]
pub fn set_max_timestamp(batch: &mut [u8], timestamp: i64) {
    if batch.len() < HEADER_LEN {
        return;
    }
    batch[MAX_TIMESTAMP].copy_from_slice(&timestamp.to_be_bytes());
    write_crc(batch);
}

/// Marks the batch as LogAppendTime with `timestamp` as its maxTimestamp (what Kafka does for
/// `message.timestamp.type=LogAppendTime`), and recomputes the CRC these fields are under.
#[expect(
    clippy::indexing_slicing,
    reason = "the length is checked against HEADER_LEN first and every range is a header constant"
)]
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    if batch.len() < HEADER_LEN {
        return;
    }
    let attributes = be_i16(batch, ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP].copy_from_slice(&timestamp.to_be_bytes());
    write_crc(batch);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Field ranges tile the header exactly, in order, with no gap or overlap.
    #[test]
    fn field_offsets_tile_the_61_byte_header() {
        let ranges = [
            BASE_OFFSET,
            BATCH_LENGTH,
            PARTITION_LEADER_EPOCH,
            MAGIC..MAGIC + 1,
            CRC,
            ATTRIBUTES,
            LAST_OFFSET_DELTA,
            BASE_TIMESTAMP,
            MAX_TIMESTAMP,
            PRODUCER_ID,
            PRODUCER_EPOCH,
            BASE_SEQUENCE,
            RECORD_COUNT,
        ];
        let mut at = 0;
        for r in ranges {
            assert_eq!(r.start, at);
            at = r.end;
        }
        assert_eq!(at, HEADER_LEN);
        assert_eq!(MIN_BATCH_LENGTH, 49);
        assert_eq!(CRC_START, 21);
    }

    fn sample() -> Vec<u8> {
        let h = BatchHeader {
            base_offset: 0,
            batch_length: (HEADER_LEN - LOG_OVERHEAD + 5) as i32,
            partition_leader_epoch: 0,
            magic: MAGIC_V2,
            crc: 0,
            attributes: Compression::None as i16,
            last_offset_delta: 0,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_000,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            record_count: 1,
        };
        let mut head = [0u8; HEADER_LEN];
        h.write_to(&mut head);
        let mut buf = head.to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4, 5]);
        write_crc(&mut buf);
        buf
    }

    #[test]
    fn header_roundtrips_through_parse_and_write() {
        let buf = sample();
        let h = validate_batch(&buf, 1 << 20).unwrap();
        let mut out = [0u8; HEADER_LEN];
        h.write_to(&mut out);
        assert_eq!(&out[..], &buf[..HEADER_LEN]);
        assert_eq!(h.total_len(), buf.len());
    }

    /// Any single flipped byte is caught: inside the CRC range by the CRC, in the length by the
    /// length checks, in the magic by the magic check. Only baseOffset and the leader epoch are
    /// outside every check, by Kafka's design (the broker rewrites them).
    #[test]
    fn every_flipped_byte_outside_offset_and_epoch_is_detected() {
        let buf = sample();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let res = validate_batch(&bad, 1 << 20);
            if BASE_OFFSET.contains(&i) || PARTITION_LEADER_EPOCH.contains(&i) {
                assert!(res.is_ok(), "byte {i} is outside the CRC by design");
            } else {
                assert!(res.is_err(), "flip at byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn base_offset_rewrite_keeps_the_batch_valid() {
        let mut buf = sample();
        set_base_offset(&mut buf, 42);
        let h = validate_batch(&buf, 1 << 20).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 42);
    }

    #[test]
    fn log_append_time_rewrite_keeps_the_crc_valid() {
        let mut buf = sample();
        set_log_append_time(&mut buf, 7);
        let h = validate_batch(&buf, 1 << 20).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 7);
    }

    #[test]
    fn truncated_and_oversized_batches_are_rejected_with_evidence() {
        let buf = sample();
        assert!(matches!(
            check_batch(&buf[..buf.len() - 1], 1 << 20),
            Err(BatchError::Truncated { needed, available }) if needed == buf.len() && available == buf.len() - 1
        ));
        assert!(matches!(
            check_batch(&buf, 40),
            Err(BatchError::BadLength { .. })
        ));
        assert!(matches!(
            validate_batch(&[buf.clone(), buf.clone()].concat(), 1 << 20),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert!(BatchHeader::is_zeroed(&[0u8; HEADER_LEN]));
        assert!(!BatchHeader::is_zeroed(&buf));
    }
}
