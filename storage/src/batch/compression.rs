//! Codecs of a batch payload (the bytes after the 61-byte header): decompression with an output
//! cap, and compression for the batches the engine builds itself.
//!
//! Framings are those Kafka clients write (`storage/FORMAT.md`, "Compression"):
//!
//! | codec  | decoded                                                  | written by [`compress`]          |
//! |--------|----------------------------------------------------------|----------------------------------|
//! | none   | the payload as is                                        | the payload as is                |
//! | gzip   | RFC 1952, one or more members                            | one member, level 6              |
//! | snappy | xerial framing (Java client) or one raw block (librdkafka) | xerial framing, 32 KiB blocks  |
//! | lz4    | LZ4 frame (one or more)                                  | LZ4 frame, independent 64 KiB blocks, no checksums |
//! | zstd   | zstd frame(s)                                            | one frame, level 3, content size |
//!
//! Every decoder is hostile-input safe: the output never exceeds `limit` bytes (exceeding it is
//! [`BatchError::DecompressedTooLarge`], checked before the memory is allocated), every length
//! read from the input is checked against the input before use, and nothing panics.

use std::io::{Read, Write};

use super::{BatchError, Compression};

/// zstd level the engine compresses at: zstd's and Kafka's default.
pub const ZSTD_LEVEL: i32 = 3;
/// gzip level: Kafka's default (`compression.gzip.level` = -1 = zlib's 6).
pub const GZIP_LEVEL: u32 = 6;
/// Uncompressed bytes per xerial snappy block: what the Java client's `SnappyOutputStream` uses.
pub const SNAPPY_BLOCK: usize = 32 * 1024;
/// The xerial snappy stream header: magic `\x82SNAPPY\0`, then version and compatible-version
/// (be32, both 1).
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Length of the xerial header: magic plus the two be32 version fields.
pub const XERIAL_HEADER_LEN: usize = 16;
/// Largest zstd window (log2) a payload may ask for. zstd allocates the window before producing
/// output, so it is bounded like the output: at least 2^23 (the window of level 19, so any
/// client's frames decode), at most 2^27 (zstd's own default limit), else the output limit.
pub const ZSTD_WINDOW_LOG_MIN: u32 = 23;
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Bytes the output buffer grows by when nothing better is known.
const GROW_STEP: usize = 64 * 1024;

fn decompress_err(codec: Compression, reason: impl std::fmt::Display) -> BatchError {
    BatchError::Decompress {
        codec,
        reason: reason.to_string(),
    }
}

/// Decompresses `input` (a payload in `codec`) into at most `limit` bytes.
///
/// For [`Compression::None`] the input is copied (the record decoder borrows instead; see
/// [`super::record::RecordIter`]). Errors: [`BatchError::Decompress`] for a malformed payload,
/// [`BatchError::DecompressedTooLarge`] if the output would exceed `limit`.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(BatchError::DecompressedTooLarge { codec, limit });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_capped(codec, flate2::read::MultiGzDecoder::new(input), limit),
        Compression::Snappy => snappy_decompress(input, limit),
        Compression::Lz4 => read_capped(codec, lz4_flex::frame::FrameDecoder::new(input), limit),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| decompress_err(codec, e))?;
            decoder
                .window_log_max(zstd_window_log_max(limit))
                .map_err(|e| decompress_err(codec, e))?;
            read_capped(codec, decoder, limit)
        }
    }
}

/// The largest zstd window accepted for an output limit of `limit` bytes.
fn zstd_window_log_max(limit: usize) -> u32 {
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX)
}

/// Reads `reader` to its end into a buffer that never holds (or reserves) more than `limit`
/// bytes; one byte beyond `limit` is an error.
fn read_capped<R: Read>(
    codec: Compression,
    mut reader: R,
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() >= limit {
            // Full: anything further is one byte too many.
            let mut probe = [0u8; 1];
            return match read_retrying(&mut reader, &mut probe) {
                Ok(0) => Ok(out),
                Ok(_) => Err(BatchError::DecompressedTooLarge { codec, limit }),
                Err(e) => Err(decompress_err(codec, e)),
            };
        }
        if out.len() == out.capacity() {
            let target = out.capacity().saturating_mul(2).max(GROW_STEP).min(limit);
            out.reserve_exact(target - out.len());
        }
        let start = out.len();
        let room = out.capacity().min(limit) - start;
        out.resize(start + room, 0);
        let got = match out.get_mut(start..) {
            Some(spare) => read_retrying(&mut reader, spare),
            None => Ok(0),
        };
        match got {
            Ok(n) => {
                out.truncate(start + n);
                if n == 0 {
                    return Ok(out);
                }
            }
            Err(e) => return Err(decompress_err(codec, e)),
        }
    }
}

fn read_retrying<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Snappy: xerial-framed if the payload starts with [`XERIAL_MAGIC`], else one raw block.
fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    const CODEC: Compression = Compression::Snappy;
    let mut out = Vec::new();
    if input.starts_with(&XERIAL_MAGIC) {
        let mut rest = input.get(XERIAL_HEADER_LEN..).ok_or_else(|| {
            decompress_err(
                CODEC,
                format!(
                    "xerial header needs {XERIAL_HEADER_LEN} bytes, payload has {}",
                    input.len()
                ),
            )
        })?;
        let mut at = XERIAL_HEADER_LEN;
        while !rest.is_empty() {
            let (len_bytes, after) = rest.split_at_checked(4).ok_or_else(|| {
                decompress_err(
                    CODEC,
                    format!(
                        "xerial block length at byte {at} needs 4 bytes, {} left",
                        rest.len()
                    ),
                )
            })?;
            let mut be = [0u8; 4];
            be.copy_from_slice(len_bytes);
            let block_len = i32::from_be_bytes(be);
            let block = usize::try_from(block_len)
                .ok()
                .and_then(|l| after.get(..l))
                .ok_or_else(|| {
                    decompress_err(
                        CODEC,
                        format!(
                            "xerial block at byte {at} declares {block_len} bytes, {} left",
                            after.len()
                        ),
                    )
                })?;
            snappy_raw_append(block, limit, &mut out)?;
            rest = after.get(block.len()..).unwrap_or(&[]);
            at += 4 + block.len();
        }
    } else {
        snappy_raw_append(input, limit, &mut out)?;
    }
    Ok(out)
}

/// Decompresses one raw snappy block onto `out`, refusing before allocating if its declared
/// length would take `out` past `limit`.
fn snappy_raw_append(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    const CODEC: Compression = Compression::Snappy;
    let declared = snap::raw::decompress_len(block).map_err(|e| decompress_err(CODEC, e))?;
    let start = out.len();
    if declared > limit.saturating_sub(start) {
        return Err(BatchError::DecompressedTooLarge {
            codec: CODEC,
            limit,
        });
    }
    out.resize(start + declared, 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let n = snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(|e| decompress_err(CODEC, e))?;
    if n != declared {
        return Err(decompress_err(
            CODEC,
            format!("block declares {declared} bytes but decodes to {n}"),
        ));
    }
    Ok(())
}

/// Compresses `input` in `codec` with the framing in the module table.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    compress_into(codec, input, &mut out)?;
    Ok(out)
}

/// Appends `input` compressed in `codec` to `out` (what the builder uses to write the payload
/// right after the header without a copy). zstd here makes a fresh context; the builder keeps
/// one.
pub fn compress_into(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let enc = |e: std::io::Error| BatchError::Encode(format!("{codec}: {e}"));
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            w.write_all(input).map_err(enc)?;
            w.finish().map_err(enc)?;
        }
        Compression::Snappy => snappy_xerial_compress(input, out)?,
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut w = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            w.write_all(input).map_err(enc)?;
            w.finish()
                .map_err(|e| BatchError::Encode(format!("{codec}: {e}")))?;
        }
        Compression::Zstd => {
            let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(enc)?;
            zstd_compress_into(&mut c, input, out)?;
        }
    }
    Ok(())
}

/// Appends one zstd frame of `input` to `out` with the given context.
pub(crate) fn zstd_compress_into(
    c: &mut zstd::bulk::Compressor<'_>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let start = out.len();
    out.reserve(zstd::zstd_safe::compress_bound(input.len()));
    let mut cursor = std::io::Cursor::new(std::mem::take(out));
    cursor.set_position(start as u64);
    let res = c.compress_to_buffer(input, &mut cursor);
    *out = cursor.into_inner();
    res.map(|_| ())
        .map_err(|e| BatchError::Encode(format!("zstd: {e}")))
}

/// The xerial framing the Java client writes: header, then per 32 KiB of input a be32 length and
/// a raw snappy block.
fn snappy_xerial_compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(SNAPPY_BLOCK) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
        let dst = out.get_mut(start..).unwrap_or_default();
        let n = encoder
            .compress(chunk, dst)
            .map_err(|e| BatchError::Encode(format!("snappy: {e}")))?;
        out.truncate(start + n);
        let len =
            i32::try_from(n).map_err(|_| BatchError::Encode("snappy block too large".into()))?;
        if let Some(field) = out.get_mut(len_at..start) {
            field.copy_from_slice(&len.to_be_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn every_codec_roundtrips_empty_small_and_multi_block_payloads() {
        for codec in ALL {
            for n in [0, 1, 100, SNAPPY_BLOCK, 3 * SNAPPY_BLOCK + 7, 300_000] {
                let data = sample(n);
                let packed = compress(codec, &data).unwrap();
                let back = decompress(codec, &packed, n).unwrap();
                assert_eq!(back, data, "{codec} n={n}");
            }
        }
    }

    #[test]
    fn every_codec_refuses_output_one_byte_over_the_limit() {
        for codec in ALL {
            let data = sample(10_000);
            let packed = compress(codec, &data).unwrap();
            assert!(
                matches!(
                    decompress(codec, &packed, 9_999),
                    Err(BatchError::DecompressedTooLarge { codec: c, limit: 9_999 }) if c == codec
                ),
                "{codec}"
            );
        }
    }

    #[test]
    fn written_framings_start_like_kafkas_java_client_writes_them() {
        let data = sample(100);
        let gz = compress(Compression::Gzip, &data).unwrap();
        assert_eq!(gz[..4], [0x1f, 0x8b, 0x08, 0x00]); // magic, deflate, no optional fields
        let lz4 = compress(Compression::Lz4, &data).unwrap();
        // magic, FLG 0x60 (v01, independent blocks, no checksums, no size), BD 0x40 (64 KiB)
        assert_eq!(lz4[..6], [0x04, 0x22, 0x4d, 0x18, 0x60, 0x40]);
        assert_eq!(lz4[lz4.len() - 4..], [0, 0, 0, 0]); // end mark, no content checksum
        let sn = compress(Compression::Snappy, &data).unwrap();
        assert_eq!(sn[..8], XERIAL_MAGIC);
        assert_eq!(sn[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let zs = compress(Compression::Zstd, &data).unwrap();
        assert_eq!(zs[..4], [0x28, 0xb5, 0x2f, 0xfd]);
        let fhd = zs[4];
        assert_eq!(fhd & 0x04, 0, "no checksum");
        assert!(fhd >> 6 != 0 || fhd & 0x20 != 0, "content size present");
    }

    #[test]
    fn raw_snappy_without_xerial_framing_is_decoded() {
        let data = sample(100_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 100_000).unwrap(),
            data
        );
    }

    #[test]
    fn xerial_block_length_past_the_end_is_an_error() {
        let mut packed = compress(Compression::Snappy, &sample(1000)).unwrap();
        packed[XERIAL_HEADER_LEN..XERIAL_HEADER_LEN + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decompress(Compression::Snappy, &packed, 1 << 20),
            Err(BatchError::Decompress { reason, .. }) if reason.contains("2147483647")
        ));
        packed[XERIAL_HEADER_LEN..XERIAL_HEADER_LEN + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            decompress(Compression::Snappy, &packed, 1 << 20),
            Err(BatchError::Decompress { .. })
        ));
    }

    #[test]
    fn zstd_window_limit_follows_the_output_limit_within_bounds() {
        assert_eq!(zstd_window_log_max(0), ZSTD_WINDOW_LOG_MIN);
        assert_eq!(zstd_window_log_max(1 << 20), ZSTD_WINDOW_LOG_MIN);
        assert_eq!(zstd_window_log_max((1 << 25) + 1), 26);
        assert_eq!(zstd_window_log_max(usize::MAX), ZSTD_WINDOW_LOG_MAX);
    }
}
