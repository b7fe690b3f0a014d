//! The records API: build a complete RecordBatch v2 from keys, values, headers and timestamps.
//!
//! Records are encoded as they are pushed into one reusable buffer (no allocation per record);
//! [`BatchBuilder::build`] compresses that buffer once and writes the header around it. What the
//! header holds is specified in `storage/FORMAT.md` ("What the builder writes"): baseOffset 0 (the
//! log assigns offsets), partitionLeaderEpoch -1, attributes = codec only (CreateTime, not
//! transactional, not control), baseTimestamp = the first record's timestamp, maxTimestamp = the
//! largest, producer fields as configured (default -1/-1/-1), CRC-32C filled in.

use super::compression::{ZSTD_LEVEL, compress_into, zstd_compress_into};
use super::header::{
    BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    NO_SEQUENCE, write_crc,
};
use super::record::{encode_varint, encode_varlong, varint_len, varlong_len};
use super::{BatchError, Compression, RecordHeader};

/// partitionLeaderEpoch of a batch that no leader has stamped yet (Kafka's
/// `RecordBatch.NO_PARTITION_LEADER_EPOCH`, what producers write).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// A record to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<RecordHeader>,
    pub timestamp: i64,
}

impl NewRecord {
    /// A record with `value`, no key, no headers, timestamp 0.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        NewRecord {
            value: Some(value.into()),
            ..NewRecord::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Adds a header; keys may repeat.
    pub fn with_header(mut self, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        self.headers.push(RecordHeader {
            key: key.into(),
            value,
        });
        self
    }
}

/// Builds one batch. Push records, then [`build`](Self::build) (repeatable) or
/// [`build_reusing`](Self::build_reusing) (keeps a zstd context across batches);
/// [`clear`](Self::clear) to start the next batch with the same buffers, or
/// [`take_batch`](Self::take_batch) to build and clear at once (without copying the records
/// when uncompressed).
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// [`HEADER_LEN`] bytes of room for the header, then the encoded records, uncompressed,
    /// back to back: uncompressed, this buffer becomes the batch.
    records: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("compression", &self.compression)
            .field("producer_id", &self.producer_id)
            .field("producer_epoch", &self.producer_epoch)
            .field("base_sequence", &self.base_sequence)
            .field("count", &self.count)
            .field("encoded_bytes", &self.encoded().len())
            .field("base_timestamp", &self.base_timestamp)
            .field("max_timestamp", &self.max_timestamp)
            .finish_non_exhaustive()
    }
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            records: vec![0; HEADER_LEN],
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            zstd: None,
        }
    }

    /// Sets producerId, producerEpoch and baseSequence (idempotent producers).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn producer_id(mut self, producer_id: i64) -> Self {
        self.producer_id = producer_id;
        self
    }

    pub fn producer_epoch(mut self, producer_epoch: i16) -> Self {
        self.producer_epoch = producer_epoch;
        self
    }

    pub fn base_sequence(mut self, base_sequence: i32) -> Self {
        self.base_sequence = base_sequence;
        self
    }

    /// Reserves room for `bytes` more bytes of encoded records.
    pub fn reserve(&mut self, bytes: usize) {
        self.records.reserve(bytes);
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built uncompressed (an upper bound in practice for compressed ones).
    pub fn estimated_size(&self) -> usize {
        self.records.len()
    }

    /// The encoded records (after the room for the header).
    fn encoded(&self) -> &[u8] {
        self.records.get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Forgets the records (keeping the buffers and the zstd context) to build the next batch.
    pub fn clear(&mut self) {
        self.records.truncate(HEADER_LEN);
        self.count = 0;
        self.base_timestamp = 0;
        self.max_timestamp = 0;
    }

    /// Appends a record. Fails (leaving the builder unchanged) if the batch already holds
    /// `i32::MAX` records, a key/value/header is longer than `i32::MAX` bytes, or the timestamp
    /// is so far from the first record's that the delta overflows an i64.
    pub fn push(&mut self, record: NewRecord) -> Result<(), BatchError> {
        self.push_parts(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
    }

    /// [`push`](Self::push) from borrowed parts, without building a [`NewRecord`].
    pub fn push_parts(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<(), BatchError> {
        let index = self.count;
        if index == i32::MAX {
            return Err(BatchError::Encode(format!(
                "a batch holds at most {} records",
                i32::MAX
            )));
        }
        let base = if index == 0 {
            timestamp
        } else {
            self.base_timestamp
        };
        let delta = timestamp.checked_sub(base).ok_or_else(|| {
            BatchError::Encode(format!(
                "record {index}: timestamp {timestamp} is too far from the base timestamp {base}"
            ))
        })?;
        let key_len = nullable_len("key", index, key)?;
        let value_len = nullable_len("value", index, value)?;
        let headers_count = i32::try_from(headers.len()).map_err(|_| {
            BatchError::Encode(format!("record {index}: {} headers", headers.len()))
        })?;

        let mut body: usize = 1 // attributes
            + varlong_len(delta)
            + varint_len(index)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len)
            + value.map_or(0, <[u8]>::len)
            + varint_len(headers_count);
        // Every length is checked before anything is written, so a failure leaves the buffer
        // untouched.
        for h in headers {
            let k = nullable_len("header key", index, Some(&h.key))?;
            let v = nullable_len("header value", index, h.value.as_deref())?;
            body +=
                varint_len(k) + h.key.len() + varint_len(v) + h.value.as_ref().map_or(0, Vec::len);
        }
        let body_len = i32::try_from(body).map_err(|_| {
            BatchError::Encode(format!(
                "record {index}: {body} bytes is more than a record holds"
            ))
        })?;

        let out = &mut self.records;
        out.reserve(varint_len(body_len) + body);
        encode_varint(body_len, out);
        out.push(0); // attributes
        encode_varlong(delta, out);
        encode_varint(index, out);
        encode_varint(key_len, out);
        if let Some(k) = key {
            out.extend_from_slice(k);
        }
        encode_varint(value_len, out);
        if let Some(v) = value {
            out.extend_from_slice(v);
        }
        encode_varint(headers_count, out);
        for h in headers {
            // Lengths checked to fit an i32 above.
            encode_varint(h.key.len() as i32, out);
            out.extend_from_slice(&h.key);
            match &h.value {
                Some(v) => {
                    encode_varint(v.len() as i32, out);
                    out.extend_from_slice(v);
                }
                None => encode_varint(-1, out),
            }
        }

        if index == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp);
        }
        self.count = index + 1;
        Ok(())
    }

    /// The complete batch: header (CRC filled in) and the payload compressed once.
    /// Building an empty batch is an error.
    pub fn build(&self) -> Result<Vec<u8>, BatchError> {
        let mut out = self.start_batch()?;
        compress_into(self.compression, self.encoded(), &mut out)?;
        self.finish_batch(out)
    }

    /// [`build_reusing`](Self::build_reusing), then [`clear`](Self::clear) (whatever the
    /// result). Uncompressed, the batch is the builder's own buffer with the header written
    /// into its room: the records are not copied, and the builder starts its next batch in a
    /// fresh buffer of the same capacity.
    pub fn take_batch(&mut self) -> Result<Vec<u8>, BatchError> {
        if self.compression != Compression::None {
            let batch = self.build_reusing();
            self.clear();
            return batch;
        }
        if self.count == 0 {
            return Err(empty_batch());
        }
        let mut next = Vec::with_capacity(self.records.capacity());
        next.resize(HEADER_LEN, 0);
        let records = std::mem::replace(&mut self.records, next);
        let batch = self.finish_batch(records);
        self.clear();
        batch
    }

    /// [`build`](Self::build), keeping the zstd compression context for the next batch (what a
    /// producer loop should use with zstd; identical output).
    pub fn build_reusing(&mut self) -> Result<Vec<u8>, BatchError> {
        let mut out = self.start_batch()?;
        if self.compression == Compression::Zstd {
            if self.zstd.is_none() {
                let c = zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| BatchError::Encode(format!("zstd: {e}")))?;
                self.zstd = Some(c);
            }
            if let Some(c) = self.zstd.as_mut() {
                let encoded = self.records.get(HEADER_LEN..).unwrap_or(&[]);
                zstd_compress_into(c, encoded, &mut out)?;
            }
        } else {
            compress_into(self.compression, self.encoded(), &mut out)?;
        }
        self.finish_batch(out)
    }

    /// A buffer holding the 61 header bytes (zeroed for now) and room for the payload.
    fn start_batch(&self) -> Result<Vec<u8>, BatchError> {
        if self.count == 0 {
            return Err(empty_batch());
        }
        let encoded = self.encoded().len();
        let room = match self.compression {
            Compression::None => encoded,
            Compression::Zstd => zstd::zstd_safe::compress_bound(encoded),
            // The others grow as they write; most payloads shrink.
            _ => encoded / 2,
        };
        let mut out = Vec::with_capacity(HEADER_LEN + room);
        out.resize(HEADER_LEN, 0);
        Ok(out)
    }

    /// Writes the header (with the CRC over everything after it) into `out[..61]`.
    fn finish_batch(&self, mut out: Vec<u8>) -> Result<Vec<u8>, BatchError> {
        let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| {
            BatchError::Encode(format!(
                "batch of {} bytes exceeds the 2 GiB a batchLength can say",
                out.len()
            ))
        })?;
        let header = BatchHeader {
            base_offset: 0,
            batch_length,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            magic: MAGIC_V2,
            crc: 0,
            attributes: i16::from(self.compression.id()),
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.count,
        };
        let mut head = [0u8; HEADER_LEN];
        header.write_to(&mut head);
        if let Some(h) = out.get_mut(..HEADER_LEN) {
            h.copy_from_slice(&head);
        }
        write_crc(&mut out);
        Ok(out)
    }
}

fn empty_batch() -> BatchError {
    BatchError::Encode("a batch needs at least one record".into())
}

/// The length field of a nullable byte string: -1 for null.
fn nullable_len(what: &str, index: i32, bytes: Option<&[u8]>) -> Result<i32, BatchError> {
    match bytes {
        None => Ok(-1),
        Some(b) => i32::try_from(b.len()).map_err(|_| {
            BatchError::Encode(format!("record {index}: {what} of {} bytes", b.len()))
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::batch::{decode_records, validate_batch};

    #[test]
    fn batch_builder_refuses_an_empty_batch() {
        assert!(matches!(
            BatchBuilder::new(Compression::None).build(),
            Err(BatchError::Encode(_))
        ));
    }

    #[test]
    fn batch_builder_reusing_zstd_context_gives_identical_bytes_across_clear() {
        let mut b = BatchBuilder::new(Compression::Zstd);
        for round in 0..3 {
            for i in 0..100 {
                b.push(NewRecord::new(vec![round as u8; i]).with_timestamp(i as i64))
                    .unwrap();
            }
            let reused = b.build_reusing().unwrap();
            assert_eq!(reused, b.build().unwrap());
            let h = validate_batch(&reused, 1 << 20).unwrap();
            assert_eq!(decode_records(&h, &reused).unwrap().len(), 100);
            b.clear();
            assert!(b.is_empty());
        }
    }

    #[test]
    fn take_batch_gives_the_bytes_build_gives_and_leaves_the_builder_empty() {
        for codec in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let mut b = BatchBuilder::new(codec).producer(7, 1, 10);
            for round in 0..3u8 {
                for i in 0..50 {
                    b.push(
                        NewRecord::new(vec![round; i * 3])
                            .with_key(vec![i as u8])
                            .with_header("h", Some(vec![round]))
                            .with_timestamp(1000 + i as i64),
                    )
                    .unwrap();
                }
                let built = b.build().unwrap();
                let taken = b.take_batch().unwrap();
                assert_eq!(taken, built, "{codec:?} round {round}");
                let h = validate_batch(&taken, 1 << 20).unwrap();
                assert_eq!(decode_records(&h, &taken).unwrap().len(), 50);
                assert!(b.is_empty());
                assert_eq!(b.estimated_size(), HEADER_LEN);
                assert!(matches!(b.take_batch(), Err(BatchError::Encode(_))));
            }
        }
    }

    #[test]
    fn batch_builder_failed_push_leaves_the_builder_unchanged() {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(NewRecord::new("a").with_timestamp(i64::MAX))
            .unwrap();
        let before = b.estimated_size();
        assert!(matches!(
            b.push(NewRecord::new("b").with_timestamp(-2)),
            Err(BatchError::Encode(reason)) if reason.contains("record 1")
        ));
        assert_eq!(b.len(), 1);
        assert_eq!(b.estimated_size(), before);
    }
}
