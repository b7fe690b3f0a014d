//! The records inside a batch: Kafka's record v2 framing (`storage/FORMAT.md`, "Records"), and
//! the zigzag varints it is built from.
//!
//! The payload after the 61-byte header is decompressed (for a compressed batch, capped at a
//! limit) and then read as exactly `recordCount` records, each `length`-prefixed. Every length
//! read from the payload is checked against the bytes that remain before anything is sliced or
//! allocated, so a hostile batch yields [`BatchError::BadRecord`] naming the record, the field
//! and the numbers, never a panic or an allocation larger than the (decompressed) payload.
//!
//! Decoding has two forms: [`decode_records`] collects a `Vec`, [`records`] iterates (what a
//! tool walking a large batch wants). Both take a batch that [`super::check_batch`] accepted.

use std::borrow::Cow;

use super::compression::decompress;
use super::header::HEADER_LEN;
use super::{BatchError, BatchHeader};

/// Cap on the decompressed payload used by [`decode_records`] and [`records`]: far above any
/// payload a producer sends (Kafka's producer limits a request to 1 MiB by default) and small
/// enough that a decompression bomb cannot exhaust memory. Use the `_with_limit` forms to choose.
pub const DEFAULT_DECOMPRESSED_LIMIT: usize = 64 << 20;

/// The smallest encoded record: `length` (1) + attributes (1) + timestampDelta (1) +
/// offsetDelta (1) + keyLength (1) + valueLength (1) + headersCount (1).
pub const MIN_RECORD_LEN: usize = 7;

/// The smallest encoded record header: headerKeyLength (1) + headerValueLength (1).
pub const MIN_HEADER_LEN: usize = 2;

/// Longest varint Kafka accepts for an int32 (`ByteUtils.readVarint`).
pub const MAX_VARINT_LEN: usize = 5;
/// Longest varint for an int64 (`ByteUtils.readVarlong`).
pub const MAX_VARLONG_LEN: usize = 10;

/// One record header: a key (UTF-8 in practice, bytes on the wire) and an optional value.
/// A record may carry several headers with the same key; order is kept.
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

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended while the continuation bit was still set (or was empty).
    Truncated,
    /// More than [`MAX_VARINT_LEN`] (int32) or [`MAX_VARLONG_LEN`] (int64) bytes.
    TooLong,
}

impl std::fmt::Display for VarintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarintError::Truncated => f.write_str("varint truncated"),
            VarintError::TooLong => f.write_str("varint longer than allowed"),
        }
    }
}

/// Appends `value` as a zigzag varint (protobuf `sint32`, Kafka `ByteUtils.writeVarint`).
#[inline]
pub fn encode_varint(value: i32, out: &mut Vec<u8>) {
    encode_unsigned(u64::from(((value << 1) ^ (value >> 31)) as u32), out);
}

/// Appends `value` as a zigzag varlong (protobuf `sint64`, Kafka `ByteUtils.writeVarlong`).
#[inline]
pub fn encode_varlong(value: i64, out: &mut Vec<u8>) {
    encode_unsigned(((value << 1) ^ (value >> 63)) as u64, out);
}

#[inline]
fn encode_unsigned(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`encode_varint`] writes for `value`.
#[inline]
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(((value << 1) ^ (value >> 31)) as u32))
}

/// Bytes [`encode_varlong`] writes for `value`.
#[inline]
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

#[inline]
fn unsigned_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a zigzag varint from the start of `buf`: the value and the bytes it took.
///
/// As Kafka's `readVarint`: at most 5 bytes; bits of the 5th byte beyond 32 are dropped.
pub fn decode_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, n) = decode_unsigned(buf, MAX_VARINT_LEN)?;
    let raw = raw as u32;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), n))
}

/// Reads a zigzag varlong from the start of `buf`: the value and the bytes it took.
///
/// As Kafka's `readVarlong`: at most 10 bytes; bits of the 10th byte beyond 64 are dropped.
pub fn decode_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, n) = decode_unsigned(buf, MAX_VARLONG_LEN)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), n))
}

#[inline]
fn decode_unsigned(buf: &[u8], max_len: usize) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (i, b) in buf.iter().take(max_len).enumerate() {
        // Shifts reach 63 at most (i <= 9); overflowing bits are dropped as Java's `<<` does.
        value |= u64::from(b & 0x7f).wrapping_shl(7 * i as u32);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= max_len {
        Err(VarintError::TooLong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Decodes every record of a batch that [`super::check_batch`] accepted (`batch` is the whole
/// batch, header included), decompressing up to [`DEFAULT_DECOMPRESSED_LIMIT`] bytes.
pub fn decode_records(header: &BatchHeader, batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    decode_records_with_limit(header, batch, DEFAULT_DECOMPRESSED_LIMIT)
}

/// [`decode_records`] with an explicit cap on the decompressed payload.
pub fn decode_records_with_limit(
    header: &BatchHeader,
    batch: &[u8],
    limit: usize,
) -> Result<Vec<Record>, BatchError> {
    let iter = records_with_limit(header, batch, limit)?;
    let mut out = Vec::with_capacity(iter.capacity_hint());
    for record in iter {
        out.push(record?);
    }
    Ok(out)
}

/// Iterates the records of a checked batch (decompressing up to [`DEFAULT_DECOMPRESSED_LIMIT`]).
/// The iterator yields each record, then stops; a malformed record, too few records or trailing
/// bytes yield one `Err` after which it stops.
pub fn records<'a>(header: &BatchHeader, batch: &'a [u8]) -> Result<RecordIter<'a>, BatchError> {
    records_with_limit(header, batch, DEFAULT_DECOMPRESSED_LIMIT)
}

/// [`records`] with an explicit cap on the decompressed payload. For an uncompressed batch the
/// iterator borrows `batch`; for a compressed one it owns the decompressed payload.
pub fn records_with_limit<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
    limit: usize,
) -> Result<RecordIter<'a>, BatchError> {
    let codec = header.compression()?;
    let count = usize::try_from(header.record_count).map_err(|_| BatchError::BadRecordCount {
        count: header.record_count,
    })?;
    let total = header.total_len().max(HEADER_LEN);
    let raw = batch.get(HEADER_LEN..total).ok_or(BatchError::Truncated {
        needed: total,
        available: batch.len(),
    })?;
    let payload = match codec {
        super::Compression::None => Cow::Borrowed(raw),
        other => Cow::Owned(decompress(other, raw, limit)?),
    };
    Ok(RecordIter {
        payload,
        pos: 0,
        index: 0,
        count,
        base_offset: header.base_offset,
        base_timestamp: header.base_timestamp,
        log_append_time: header.is_log_append_time().then_some(header.max_timestamp),
        finished: false,
    })
}

/// Iterator over the records of one batch; see [`records`].
#[derive(Debug)]
pub struct RecordIter<'a> {
    payload: Cow<'a, [u8]>,
    pos: usize,
    index: usize,
    count: usize,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    finished: bool,
}

impl RecordIter<'_> {
    /// The (decompressed) payload the records are read from.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Byte position in [`Self::payload`] of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many records can possibly remain: `recordCount` minus those read, bounded by what the
    /// remaining payload can hold. Safe to preallocate.
    pub fn capacity_hint(&self) -> usize {
        let left = self.payload.len().saturating_sub(self.pos) / MIN_RECORD_LEN;
        self.count.saturating_sub(self.index).min(left)
    }

    fn decode_next(&mut self) -> Result<Record, BatchError> {
        let index = self.index;
        let bad = |reason: String| BatchError::BadRecord { index, reason };
        let rest = self.payload.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Err(bad(format!(
                "payload ends after {index} of {} records (recordCount)",
                self.count
            )));
        }
        let (length, n) = decode_varint(rest).map_err(|e| bad(format!("length: {e}")))?;
        let body_all = rest.get(n..).unwrap_or_default();
        let body_len =
            usize::try_from(length).map_err(|_| bad(format!("length {length} is negative")))?;
        let body = body_all.get(..body_len).ok_or_else(|| {
            bad(format!(
                "length {length} exceeds the {} bytes left in the payload",
                body_all.len()
            ))
        })?;
        let parsed = parse_body(body).map_err(bad)?;
        self.pos += n + body_len;
        let timestamp = match self.log_append_time {
            Some(t) => t,
            None => self.base_timestamp.saturating_add(parsed.timestamp_delta),
        };
        Ok(Record {
            offset: self
                .base_offset
                .saturating_add(i64::from(parsed.offset_delta)),
            timestamp,
            key: parsed.key.map(<[u8]>::to_vec),
            value: parsed.value.map(<[u8]>::to_vec),
            headers: parsed.headers,
        })
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.index >= self.count {
            self.finished = true;
            let trailing = self.payload.len().saturating_sub(self.pos);
            if trailing == 0 {
                return None;
            }
            return Some(Err(BatchError::BadRecord {
                index: self.index,
                reason: format!(
                    "{trailing} bytes follow the last of {} records (recordCount)",
                    self.count
                ),
            }));
        }
        let res = self.decode_next();
        match res {
            Ok(_) => self.index += 1,
            Err(_) => self.finished = true,
        }
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            (0, Some(0))
        } else {
            // Every remaining record, plus possibly one error.
            (
                0,
                Some(self.count.saturating_sub(self.index).saturating_add(1)),
            )
        }
    }
}

impl std::iter::FusedIterator for RecordIter<'_> {}

/// The fields of one record body (after its `length`), borrowing key and value.
struct Body<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<RecordHeader>,
}

/// A reader over one record body whose every read is bounded by the body.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn varint(&mut self, field: &str) -> Result<i32, String> {
        let (v, n) = decode_varint(self.rest()).map_err(|e| self.varint_err(field, e))?;
        self.pos += n;
        Ok(v)
    }

    fn varlong(&mut self, field: &str) -> Result<i64, String> {
        let (v, n) = decode_varlong(self.rest()).map_err(|e| self.varint_err(field, e))?;
        self.pos += n;
        Ok(v)
    }

    fn varint_err(&self, field: &str, e: VarintError) -> String {
        format!(
            "{field}: {e} at byte {} of a {}-byte record",
            self.pos,
            self.buf.len()
        )
    }

    fn byte(&mut self, field: &str) -> Result<u8, String> {
        let b = *self
            .rest()
            .first()
            .ok_or_else(|| format!("{field}: record ends at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    /// `len` bytes, checked against what is left of the record.
    fn bytes(&mut self, field: &str, len: i32) -> Result<&'a [u8], String> {
        let left = self.left();
        let slice = usize::try_from(len)
            .ok()
            .and_then(|l| self.rest().get(..l))
            .ok_or_else(|| format!("{field} {len} exceeds the {left} bytes left in the record"))?;
        self.pos += slice.len();
        Ok(slice)
    }

    /// A varint length (-1 = null) and that many bytes.
    fn nullable(&mut self, field: &str) -> Result<Option<&'a [u8]>, String> {
        let len = self.varint(field)?;
        match len {
            -1 => Ok(None),
            l if l < -1 => Err(format!("{field} {l} is negative (only -1 means null)")),
            l => self.bytes(field, l).map(Some),
        }
    }
}

fn parse_body(body: &[u8]) -> Result<Body<'_>, String> {
    let mut c = Cursor { buf: body, pos: 0 };
    // attributes: unused by record v2; read and ignored, as Kafka does.
    c.byte("attributes")?;
    let timestamp_delta = c.varlong("timestampDelta")?;
    let offset_delta = c.varint("offsetDelta")?;
    let key = c.nullable("keyLength")?;
    let value = c.nullable("valueLength")?;
    let count = c.varint("headersCount")?;
    let count = usize::try_from(count).map_err(|_| format!("headersCount {count} is negative"))?;
    if count > c.left() / MIN_HEADER_LEN {
        return Err(format!(
            "headersCount {count} cannot fit in the {} bytes left in the record ({MIN_HEADER_LEN} bytes per header at least)",
            c.left()
        ));
    }
    let mut headers = Vec::with_capacity(count);
    for h in 0..count {
        let key_len = c.varint("headerKeyLength")?;
        if key_len < 0 {
            return Err(format!("header {h}: headerKeyLength {key_len} is negative"));
        }
        let key = c
            .bytes("headerKeyLength", key_len)
            .map_err(|e| format!("header {h}: {e}"))?;
        let value = c
            .nullable("headerValueLength")
            .map_err(|e| format!("header {h}: {e}"))?;
        headers.push(RecordHeader {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        });
    }
    if c.left() != 0 {
        return Err(format!(
            "length {} but the fields end after {} bytes",
            body.len(),
            c.pos
        ));
    }
    Ok(Body {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn roundtrip32(v: i32) {
        let mut buf = Vec::new();
        encode_varint(v, &mut buf);
        assert_eq!(buf.len(), varint_len(v), "{v}");
        assert_eq!(decode_varint(&buf).unwrap(), (v, buf.len()), "{v}");
    }

    fn roundtrip64(v: i64) {
        let mut buf = Vec::new();
        encode_varlong(v, &mut buf);
        assert_eq!(buf.len(), varlong_len(v), "{v}");
        assert_eq!(decode_varlong(&buf).unwrap(), (v, buf.len()), "{v}");
    }

    #[test]
    fn batch_varints_roundtrip_at_every_width_boundary() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i32::MAX, i32::MIN] {
            roundtrip32(v);
        }
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ] {
            roundtrip64(v);
        }
        assert_eq!(varint_len(i32::MIN), 5);
        assert_eq!(varlong_len(i64::MIN), 10);
    }

    #[test]
    fn batch_varint_zigzag_matches_kafka_bytes() {
        // Kafka ByteUtils: 0 -> 00, -1 -> 01, 1 -> 02, -64 -> 7f, 64 -> 80 01, 300 -> d8 04.
        for (v, bytes) in [
            (0, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (300, vec![0xd8, 0x04]),
        ] {
            let mut buf = Vec::new();
            encode_varint(v, &mut buf);
            assert_eq!(buf, bytes, "{v}");
        }
    }

    #[test]
    fn batch_varint_of_six_bytes_is_too_long_and_a_cut_one_is_truncated() {
        assert_eq!(
            decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(VarintError::TooLong)
        );
        assert_eq!(decode_varlong(&[0x80; 11]), Err(VarintError::TooLong));
        assert_eq!(decode_varint(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(decode_varint(&[]), Err(VarintError::Truncated));
    }
}
