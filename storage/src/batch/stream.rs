//! Streaming codecs and record walking: what the broker needs to look inside a producer's batch
//! (re-encode it with another codec, find its records' timestamps) without ever holding its
//! decompressed records in memory.
//!
//! A decompression bomb (a few kilobytes that expand to tens of megabytes) costs here what the
//! codec's working memory costs, never what it expands to:
//!
//! | codec  | working memory of a [`decoder`]                                        |
//! |--------|------------------------------------------------------------------------|
//! | none   | nothing                                                                |
//! | gzip   | the 32 KiB deflate window                                              |
//! | lz4    | the frame's block size, at most 4 MiB (and its previous block)         |
//! | zstd   | the frame's window, refused above [`STREAM_WINDOW`]                    |
//! | snappy | one block (xerial: 32 KiB from the Java client; raw: the whole payload), refused above [`STREAM_WINDOW`] |
//!
//! plus a 64 KiB read buffer. Output is capped: a payload that decompresses to more than the
//! caller's limit fails with [`BatchError::DecompressedTooLarge`] as soon as the limit is passed
//! (before, for a zstd frame that declares its size), and an encoder writing more than its limit
//! fails with [`BatchError::EncodedTooLarge`].

use std::io::{BufRead, BufReader, Read, Write};
use std::ops::ControlFlow;

use super::compression::{GZIP_LEVEL, SNAPPY_BLOCK, XERIAL_HEADER_LEN, XERIAL_MAGIC, ZSTD_LEVEL};
use super::header::{self, BatchHeader, HEADER_LEN};
use super::record::{MAX_VARINT_LEN, MAX_VARLONG_LEN};
use super::{BatchError, Compression};

/// Most working memory a streaming decoder may need for one zstd window or one snappy block:
/// 8 MiB, the window zstd uses up to level 19 for large inputs (a batch compressed in one piece,
/// whose window is its own size, may be up to 8 MiB uncompressed). A payload asking for more is
/// refused ([`BatchError::Decompress`]) rather than given the memory.
pub const STREAM_WINDOW: usize = 8 << 20;

/// The read buffer between a decoder and the record walker.
const READ_BUFFER: usize = 64 << 10;

fn decompress_err(codec: Compression, reason: impl std::fmt::Display) -> BatchError {
    BatchError::Decompress {
        codec,
        reason: reason.to_string(),
    }
}

/// Carries a [`BatchError`] through `Read`/`Write` calls, which can only return `io::Error`.
fn io_err(e: BatchError) -> std::io::Error {
    std::io::Error::other(e)
}

/// The [`BatchError`] an `io::Error` from this module's readers and writers stands for.
fn batch_err(codec: Compression, e: std::io::Error) -> BatchError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<BatchError>())
    {
        Some(b) => b.clone(),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => decompress_err(
            codec,
            "the payload ends in the middle of the compressed data",
        ),
        None => decompress_err(codec, e),
    }
}

/// A streaming decoder of `payload` (in `codec`) that yields at most `limit` bytes: one more is
/// [`BatchError::DecompressedTooLarge`]. See the module table for the memory it holds.
pub fn decoder<'a>(
    codec: Compression,
    payload: &'a [u8],
    limit: usize,
) -> Result<Box<dyn Read + 'a>, BatchError> {
    let inner: Box<dyn Read + 'a> = match codec {
        Compression::None => Box::new(payload),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(payload)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(payload)),
        Compression::Snappy => Box::new(SnappyReader::new(payload)),
        Compression::Zstd => {
            // A frame that says how large it is can be refused before anything is expanded.
            if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(payload)
                && size > limit as u64
            {
                return Err(BatchError::DecompressedTooLarge { codec, limit });
            }
            let mut d = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| decompress_err(codec, e))?;
            d.window_log_max(STREAM_WINDOW.trailing_zeros())
                .map_err(|e| decompress_err(codec, e))?;
            Box::new(d)
        }
    };
    Ok(Box::new(Capped {
        inner,
        codec,
        left: limit,
    }))
}

/// Fails once more than `left` bytes have come out of `inner`.
struct Capped<R> {
    inner: R,
    codec: Compression,
    left: usize,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // Full: anything further is one byte too many.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io_err(BatchError::DecompressedTooLarge {
                    codec: self.codec,
                    limit: 0,
                })),
            };
        }
        let room = buf.len().min(self.left);
        let n = self.inner.read(buf.get_mut(..room).unwrap_or_default())?;
        self.left -= n;
        Ok(n)
    }
}

/// Snappy, block by block: xerial-framed if the payload starts with [`XERIAL_MAGIC`], else one
/// raw block (librdkafka). A block is decompressed whole, so one larger than [`STREAM_WINDOW`]
/// is refused before anything is allocated for it.
struct SnappyReader<'a> {
    rest: &'a [u8],
    xerial: bool,
    started: bool,
    block: Vec<u8>,
    pos: usize,
    at: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8]) -> Self {
        SnappyReader {
            rest: payload,
            xerial: payload.starts_with(&XERIAL_MAGIC),
            started: false,
            block: Vec::new(),
            pos: 0,
            at: 0,
        }
    }

    /// Decompresses the next block into `self.block`; `false` at the end of the payload.
    fn next_block(&mut self) -> Result<bool, BatchError> {
        const CODEC: Compression = Compression::Snappy;
        if !self.started {
            self.started = true;
            if self.xerial {
                self.rest = self
                    .rest
                    .get(XERIAL_HEADER_LEN..)
                    .ok_or_else(|| decompress_err(CODEC, "xerial header is truncated"))?;
                self.at = XERIAL_HEADER_LEN;
            }
        }
        if self.rest.is_empty() {
            return Ok(false);
        }
        let raw = if self.xerial {
            let (len, after) = self.rest.split_at_checked(4).ok_or_else(|| {
                decompress_err(
                    CODEC,
                    format!("xerial block length at byte {} needs 4 bytes", self.at),
                )
            })?;
            let mut be = [0u8; 4];
            be.copy_from_slice(len);
            let n = i32::from_be_bytes(be);
            let block = usize::try_from(n)
                .ok()
                .and_then(|l| after.get(..l))
                .ok_or_else(|| {
                    decompress_err(
                        CODEC,
                        format!(
                            "xerial block at byte {} declares {n} bytes, {} left",
                            self.at,
                            after.len()
                        ),
                    )
                })?;
            self.rest = after.get(block.len()..).unwrap_or_default();
            self.at += 4 + block.len();
            block
        } else {
            std::mem::take(&mut self.rest)
        };
        let declared = snap::raw::decompress_len(raw).map_err(|e| decompress_err(CODEC, e))?;
        if declared > STREAM_WINDOW {
            return Err(decompress_err(
                CODEC,
                format!(
                    "a block declares {declared} bytes, more than the {STREAM_WINDOW} a block may have"
                ),
            ));
        }
        self.block.clear();
        self.block.resize(declared, 0);
        let n = snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(|e| decompress_err(CODEC, e))?;
        if n != declared {
            return Err(decompress_err(
                CODEC,
                format!("block declares {declared} bytes but decodes to {n}"),
            ));
        }
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block().map_err(io_err)? {
                return Ok(0);
            }
        }
        let src = self.block.get(self.pos..).unwrap_or_default();
        let n = src.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

/// A `Vec` that refuses to grow past `limit` bytes.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
    codec: Compression,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(io_err(BatchError::EncodedTooLarge {
                codec: self.codec,
                limit: self.limit,
            }));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The xerial snappy framing the Java client writes, streamed: header, then per
/// [`SNAPPY_BLOCK`] of input a be32 length and a raw snappy block.
struct XerialWriter<W: Write> {
    out: W,
    pending: Vec<u8>,
    block: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl<W: Write> XerialWriter<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&XERIAL_MAGIC)?;
        out.write_all(&1i32.to_be_bytes())?;
        out.write_all(&1i32.to_be_bytes())?;
        Ok(XerialWriter {
            out,
            pending: Vec::with_capacity(SNAPPY_BLOCK),
            block: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        })
    }

    fn emit(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.block
            .resize(snap::raw::max_compress_len(self.pending.len()), 0);
        let n = self
            .encoder
            .compress(&self.pending, &mut self.block)
            .map_err(std::io::Error::other)?;
        let len = i32::try_from(n).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out
            .write_all(self.block.get(..n).unwrap_or_default())?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.emit()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for XerialWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = SNAPPY_BLOCK - self.pending.len();
        let n = data.len().min(room);
        self.pending
            .extend_from_slice(data.get(..n).unwrap_or_default());
        if self.pending.len() == SNAPPY_BLOCK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A streaming encoder in one of the five codecs, with the framing
/// [`super::compression::compress`] writes (zstd without a content size: it is not known up
/// front).
enum Encoder {
    None(Bounded),
    Gzip(flate2::write::GzEncoder<Bounded>),
    Snappy(Box<XerialWriter<Bounded>>),
    Lz4(Box<lz4_flex::frame::FrameEncoder<Bounded>>),
    Zstd(zstd::stream::write::Encoder<'static, Bounded>),
}

impl Encoder {
    fn new(codec: Compression, out: Bounded) -> std::io::Result<Self> {
        Ok(match codec {
            Compression::None => Encoder::None(out),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Compression::Snappy => Encoder::Snappy(Box::new(XerialWriter::new(out)?)),
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                Encoder::Lz4(Box::new(lz4_flex::frame::FrameEncoder::with_frame_info(
                    info, out,
                )))
            }
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
        })
    }

    fn finish(self) -> std::io::Result<Bounded> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Snappy(w) => (*w).finish(),
            Encoder::Lz4(w) => w.finish().map_err(std::io::Error::other),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(data),
            Encoder::Gzip(w) => w.write(data),
            Encoder::Snappy(w) => w.write(data),
            Encoder::Lz4(w) => w.write(data),
            Encoder::Zstd(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Snappy(w) => w.flush(),
            Encoder::Lz4(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// Passes every byte read from `inner` on to `out` (the re-encoded payload is the decoded one,
/// byte for byte).
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(buf.get(..n).unwrap_or_default())?;
        Ok(n)
    }
}

/// What the walk of one record learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub index: usize,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
}

/// Walks exactly `count` records read from `r` (a decompressed payload), checking each as the
/// record decoder does (every length bounded by the record's own length, the fields filling it
/// exactly) and that the payload ends after the last one, calling `f` for each; `f` may stop
/// the walk early (then the rest is not read). Keys, values and headers are streamed past,
/// never held.
pub fn walk_records<R: BufRead>(
    r: &mut R,
    count: usize,
    codec: Compression,
    mut f: impl FnMut(RecordMeta) -> Result<ControlFlow<()>, BatchError>,
) -> Result<(), BatchError> {
    for index in 0..count {
        let bad = |reason: String| BatchError::BadRecord { index, reason };
        let length = match read_varint(r, MAX_VARINT_LEN, codec) {
            Ok(Some(v)) => v as i32,
            Ok(None) => {
                return Err(bad(format!(
                    "payload ends after {index} of {count} records (recordCount)"
                )));
            }
            Err(e) => return Err(map_field(e, index, "length")),
        };
        let length =
            u64::try_from(length).map_err(|_| bad(format!("length {length} is negative")))?;
        let mut body = r.by_ref().take(length);
        let meta = walk_body(&mut body, index, codec)?;
        if body.limit() != 0 {
            return Err(bad(format!(
                "length {length} but the fields end {} bytes before it",
                body.limit()
            )));
        }
        if f(meta)?.is_break() {
            return Ok(());
        }
    }
    let mut probe = [0u8; 1];
    match r.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err(BatchError::BadRecord {
            index: count,
            reason: format!("bytes follow the last of {count} records (recordCount)"),
        }),
        Err(e) => Err(batch_err(codec, e)),
    }
}

/// Why a field could not be read: the stream failed (decompression), or the record ended.
enum FieldError {
    Stream(BatchError),
    Ended,
    TooLong,
}

fn map_field(e: FieldError, index: usize, field: &str) -> BatchError {
    match e {
        FieldError::Stream(b) => b,
        FieldError::Ended => BatchError::BadRecord {
            index,
            reason: format!("{field}: the record ends inside it"),
        },
        FieldError::TooLong => BatchError::BadRecord {
            index,
            reason: format!("{field}: varint longer than allowed"),
        },
    }
}

/// A zigzag varint of at most `max_len` bytes (5 for int32, 10 for int64), as Kafka reads it;
/// `None` if the stream ends before its first byte.
fn read_varint<R: Read>(
    r: &mut R,
    max_len: usize,
    codec: Compression,
) -> Result<Option<i64>, FieldError> {
    let mut value = 0u64;
    for i in 0..max_len {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(FieldError::Ended),
            Ok(_) => {}
            Err(e) => return Err(FieldError::Stream(batch_err(codec, e))),
        }
        value |= u64::from(b[0] & 0x7f).wrapping_shl(7 * i as u32);
        if b[0] & 0x80 == 0 {
            let v = if max_len == MAX_VARINT_LEN {
                let raw = value as u32;
                i64::from(((raw >> 1) as i32) ^ -((raw & 1) as i32))
            } else {
                ((value >> 1) as i64) ^ -((value & 1) as i64)
            };
            return Ok(Some(v));
        }
    }
    Err(FieldError::TooLong)
}

fn field<R: Read>(
    r: &mut R,
    max_len: usize,
    codec: Compression,
    index: usize,
    name: &str,
) -> Result<i64, BatchError> {
    match read_varint(r, max_len, codec) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(map_field(FieldError::Ended, index, name)),
        Err(e) => Err(map_field(e, index, name)),
    }
}

/// Streams `n` bytes of a field past; the record must hold them.
fn skip<R: Read>(
    r: &mut R,
    n: u64,
    codec: Compression,
    index: usize,
    name: &str,
) -> Result<(), BatchError> {
    let copied = std::io::copy(&mut r.by_ref().take(n), &mut std::io::sink())
        .map_err(|e| batch_err(codec, e))?;
    if copied != n {
        return Err(BatchError::BadRecord {
            index,
            reason: format!("{name} {n} exceeds the bytes left in the record"),
        });
    }
    Ok(())
}

/// The fields of one record body (record format v2, FORMAT.md §3.2).
fn walk_body<R: Read>(
    r: &mut R,
    index: usize,
    codec: Compression,
) -> Result<RecordMeta, BatchError> {
    let bad = |reason: String| BatchError::BadRecord { index, reason };
    let mut attributes = [0u8; 1];
    match r.read(&mut attributes) {
        Ok(1) => {}
        Ok(_) => return Err(bad("attributes: the record is empty".into())),
        Err(e) => return Err(batch_err(codec, e)),
    }
    let timestamp_delta = field(r, MAX_VARLONG_LEN, codec, index, "timestampDelta")?;
    let offset_delta = field(r, MAX_VARINT_LEN, codec, index, "offsetDelta")? as i32;
    for name in ["keyLength", "valueLength"] {
        let len = field(r, MAX_VARINT_LEN, codec, index, name)?;
        if len < -1 {
            return Err(bad(format!("{name} {len} is below -1")));
        }
        if len > 0 {
            skip(r, len as u64, codec, index, name)?;
        }
    }
    let headers = field(r, MAX_VARINT_LEN, codec, index, "headersCount")?;
    if headers < 0 {
        return Err(bad(format!("headersCount {headers} is negative")));
    }
    for h in 0..headers {
        let key = field(r, MAX_VARINT_LEN, codec, index, "headerKeyLength")?;
        if key < 0 {
            return Err(bad(format!(
                "header {h}: headerKeyLength {key} is negative"
            )));
        }
        skip(r, key as u64, codec, index, "headerKeyLength")?;
        let value = field(r, MAX_VARINT_LEN, codec, index, "headerValueLength")?;
        if value < -1 {
            return Err(bad(format!(
                "header {h}: headerValueLength {value} is below -1"
            )));
        }
        if value > 0 {
            skip(r, value as u64, codec, index, "headerValueLength")?;
        }
    }
    Ok(RecordMeta {
        index,
        timestamp_delta,
        offset_delta,
    })
}

/// Limits on a [`recode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecodeLimits {
    /// Most bytes the records may decompress to (else [`BatchError::DecompressedTooLarge`]).
    pub max_decompressed: usize,
    /// Most bytes the re-encoded batch may have, header included (else
    /// [`BatchError::EncodedTooLarge`]): the largest batch the log takes.
    pub max_output: usize,
}

/// Memory a [`recode`] may hold besides its output: the decoder's working memory
/// ([`STREAM_WINDOW`]), the read buffer and an encoder's context (zstd's at level 3 is about
/// 1.3 MiB). What a caller budgets per re-encode, with `max_output`.
pub const RECODE_WORKING_BYTES: usize = STREAM_WINDOW + READ_BUFFER + (2 << 20);

/// A batch re-encoded by [`recode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recoded {
    pub bytes: Vec<u8>,
    /// The largest record timestamp (what the header's maxTimestamp now says under CreateTime).
    pub max_timestamp: i64,
}

/// Re-encodes a validated batch with `codec`, keeping every record byte for byte (and the
/// header's offsets, timestamps base, producer fields and flags), streaming: the records are
/// decompressed, walked and checked (framing, count, `offsetDelta` equal to each record's place,
/// as Kafka checks inner offsets) and compressed again without being held. The header gets the
/// new codec, length and CRC, and under CreateTime the largest record timestamp as
/// maxTimestamp (as Kafka rebuilds a batch it re-compresses).
pub fn recode(
    h: &BatchHeader,
    batch: &[u8],
    codec: Compression,
    limits: RecodeLimits,
) -> Result<Recoded, BatchError> {
    let source = h.compression()?;
    let count = usize::try_from(h.record_count).map_err(|_| BatchError::BadRecordCount {
        count: h.record_count,
    })?;
    let total = h.total_len();
    let head = batch.get(..HEADER_LEN).ok_or(BatchError::Truncated {
        needed: HEADER_LEN,
        available: batch.len(),
    })?;
    let payload = batch.get(HEADER_LEN..total).ok_or(BatchError::Truncated {
        needed: total,
        available: batch.len(),
    })?;
    let mut out = Vec::with_capacity(batch.len().min(limits.max_output));
    out.extend_from_slice(head);
    let sink = Bounded {
        buf: out,
        limit: limits.max_output,
        codec,
    };
    let encoder = Encoder::new(codec, sink).map_err(|e| batch_err(codec, e))?;
    let decoded = decoder(source, payload, limits.max_decompressed)?;
    let mut reader = BufReader::with_capacity(
        READ_BUFFER,
        Tee {
            inner: decoded,
            out: encoder,
        },
    );
    let mut max_delta = i64::MIN;
    walk_records(&mut reader, count, source, |m| {
        if i64::from(m.offset_delta) != m.index as i64 {
            return Err(BatchError::BadRecord {
                index: m.index,
                reason: format!(
                    "offsetDelta {} where {} was expected (inner offsets must follow each other)",
                    m.offset_delta, m.index
                ),
            });
        }
        max_delta = max_delta.max(m.timestamp_delta);
        Ok(ControlFlow::Continue(()))
    })?;
    let sink = reader
        .into_inner()
        .out
        .finish()
        .map_err(|e| batch_err(codec, e))?;
    let mut out = sink.buf;
    let length = i32::try_from(out.len() - header::LOG_OVERHEAD)
        .map_err(|_| BatchError::Encode("re-encoded batch is too large".into()))?;
    let attributes = (h.attributes & !header::ATTR_CODEC_MASK) | codec as i16;
    let max_timestamp = if h.is_log_append_time() || count == 0 {
        h.max_timestamp
    } else {
        h.base_timestamp.saturating_add(max_delta)
    };
    let put = |out: &mut Vec<u8>, range: std::ops::Range<usize>, bytes: &[u8]| {
        if let Some(field) = out.get_mut(range) {
            field.copy_from_slice(bytes);
        }
    };
    put(&mut out, header::BATCH_LENGTH, &length.to_be_bytes());
    put(&mut out, header::ATTRIBUTES, &attributes.to_be_bytes());
    put(
        &mut out,
        header::MAX_TIMESTAMP,
        &max_timestamp.to_be_bytes(),
    );
    header::write_crc(&mut out);
    Ok(Recoded {
        bytes: out,
        max_timestamp,
    })
}

/// The first record of a checked batch whose timestamp is at least `timestamp`, as
/// `(offset, timestamp)`, found by streaming its records (the payload decompressed up to
/// `limit` bytes and never held whole; see the module table). Under LogAppendTime every record
/// carries the header's maxTimestamp.
pub fn first_at_or_after(
    h: &BatchHeader,
    batch: &[u8],
    timestamp: i64,
    limit: usize,
) -> Result<Option<(i64, i64)>, BatchError> {
    if h.is_log_append_time() {
        return Ok((h.max_timestamp >= timestamp).then_some((h.base_offset, h.max_timestamp)));
    }
    let mut found = None;
    walk_timestamps(h, batch, limit, |offset, t| {
        if t >= timestamp {
            found = Some((offset, t));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

/// The largest record timestamp of a checked batch (what its maxTimestamp must say under
/// CreateTime), by streaming its records (the payload decompressed up to `limit` bytes and
/// never held whole); -1 for a batch without records.
pub fn max_record_timestamp(
    h: &BatchHeader,
    batch: &[u8],
    limit: usize,
) -> Result<i64, BatchError> {
    let mut max = -1i64;
    walk_timestamps(h, batch, limit, |_, t| {
        max = max.max(t);
        ControlFlow::Continue(())
    })?;
    Ok(max)
}

/// Streams a checked batch's records (decompressed up to `limit` bytes, never held whole),
/// calling `f` with each record's offset and CreateTime timestamp until it breaks.
fn walk_timestamps(
    h: &BatchHeader,
    batch: &[u8],
    limit: usize,
    mut f: impl FnMut(i64, i64) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    let codec = h.compression()?;
    let count = usize::try_from(h.record_count).map_err(|_| BatchError::BadRecordCount {
        count: h.record_count,
    })?;
    let total = h.total_len();
    let payload = batch.get(HEADER_LEN..total).ok_or(BatchError::Truncated {
        needed: total,
        available: batch.len(),
    })?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, decoder(codec, payload, limit)?);
    walk_records(&mut reader, count, codec, |m| {
        Ok(f(
            h.base_offset.saturating_add(i64::from(m.offset_delta)),
            h.base_timestamp.saturating_add(m.timestamp_delta),
        ))
    })
}
