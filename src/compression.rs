//! Codecs for the records section of a v2 batch (the batch header is never compressed).
//!
//! Formats follow what Kafka brokers and librdkafka read:
//! - gzip: an RFC 1952 stream;
//! - snappy: a raw snappy block, as librdkafka writes it (readers also accept the xerial
//!   framing that the Java client writes, and so does [`decompress`]);
//! - lz4: the LZ4 frame format (KIP-57: a correct header checksum), independent blocks;
//! - zstd: a zstd frame.
//!
//! Decompression is bounded: a batch that claims to inflate past `max_len` is an error, so a
//! decompression bomb costs at most `max_len` bytes.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;

mod lz4hc;

/// `compression.lz4.level`'s default, at which Java uses LZ4's fast compressor (LZ4 HC at
/// any other level).
pub const LZ4_DEFAULT_LEVEL: i32 = 9;

/// Compression codec of a batch, numbered as in the batch attributes (bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip (deflate).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The attribute bits of this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec named by attribute bits 0-2.
    pub fn from_attributes(attributes: i16) -> Result<Self, ProtocolError> {
        Ok(match attributes & 0x7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => {
                return Err(ProtocolError::Malformed {
                    context: "record batch attributes",
                    reason: format!("unknown compression codec {other}"),
                })
            }
        })
    }

    /// The name `compression.type` uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The most uncompressed bytes whose compressed form surely fits in `limit` bytes.
    /// Data that does not compress (encrypted, already compressed) comes out a little larger
    /// than it went in: each codec frames it (gzip's stored blocks, lz4's and zstd's block
    /// headers, snappy's literal runs; a few bytes per 64 KiB or more, and a header). A batch
    /// grown to `max.request.size` (1 MiB by default) uncompressed then passes the broker's
    /// `message.max.bytes` (1 MiB + 12 by default), which refuses it as too large. Allowed
    /// for here: 8 bytes per 4 KiB and 64 besides, above each codec's framing with room to
    /// spare (2,112 bytes of 1 MiB).
    pub fn fit_within(self, limit: usize) -> usize {
        if self == Compression::None {
            return limit;
        }
        limit.saturating_sub(limit.div_ceil(4096) * 8 + 64)
    }

    /// Parses a `compression.type` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

fn codec_error(codec: Compression, e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Compression {
        codec: codec.name(),
        reason: e.to_string(),
    }
}

/// Appends `input` compressed with `codec` to `out`.
///
/// `level` is the codec's level as the Java client takes it (`compression.gzip.level` 1-9,
/// `compression.lz4.level` 1-17, `compression.zstd.level`); `None` uses the codec's default.
/// LZ4 at its default level is LZ4's fast compressor, at any other a hash-chain search
/// whose depth grows with the level, as Java switches to LZ4 HC.
pub fn compress(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let level = match level {
                Some(l @ 1..=9) => flate2::Compression::new(l as u32),
                _ => flate2::Compression::default(),
            };
            let mut enc = flate2::write::GzEncoder::new(out.writer(), level);
            enc.write_all(input).map_err(|e| codec_error(codec, e))?;
            enc.finish().map_err(|e| codec_error(codec, e))?;
        }
        Compression::Snappy => {
            let start = out.len();
            out.resize(start + snap::raw::max_compress_len(input.len()), 0);
            let n = snap::raw::Encoder::new()
                .compress(input, &mut out[start..])
                .map_err(|e| codec_error(codec, e))?;
            out.truncate(start + n);
        }
        Compression::Lz4 => match level {
            Some(l) if l != LZ4_DEFAULT_LEVEL => lz4hc::compress_frame(input, l, out),
            _ => {
                let mut info = lz4_flex::frame::FrameInfo::new();
                info.block_mode = lz4_flex::frame::BlockMode::Independent;
                info.block_size = lz4_flex::frame::BlockSize::Max64KB;
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
                enc.write_all(input).map_err(|e| codec_error(codec, e))?;
                enc.finish().map_err(|e| codec_error(codec, e))?;
            }
        },
        Compression::Zstd => {
            let level = level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL);
            let mut enc = zstd::stream::write::Encoder::new(out.writer(), level)
                .map_err(|e| codec_error(codec, e))?;
            enc.include_checksum(false)
                .map_err(|e| codec_error(codec, e))?;
            enc.set_pledged_src_size(Some(input.len() as u64))
                .map_err(|e| codec_error(codec, e))?;
            enc.write_all(input).map_err(|e| codec_error(codec, e))?;
            enc.finish().map_err(|e| codec_error(codec, e))?;
        }
    }
    Ok(())
}

/// The xerial snappy-java stream header (magic, version 1, compatible version 1).
const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

/// Decompresses a records section, refusing to produce more than `max_len` bytes.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, ProtocolError> {
    let too_large = || ProtocolError::Compression {
        codec: codec.name(),
        reason: format!("decompressed size exceeds {max_len} bytes"),
    };
    let read_bounded = |reader: &mut dyn Read| -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        reader
            .take(max_len as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| codec_error(codec, e))?;
        if out.len() > max_len {
            return Err(too_large());
        }
        Ok(out)
    };
    // Every codec's stream has a header, so an empty one is no stream; lz4_flex's and zstd's
    // readers would take it for zero frames and give back nothing (Java's refuse it).
    if input.is_empty() && codec != Compression::None {
        return Err(ProtocolError::Compression {
            codec: codec.name(),
            reason: "empty input: no compressed stream".into(),
        });
    }
    match codec {
        Compression::None => {
            if input.len() > max_len {
                return Err(too_large());
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_bounded(&mut flate2::read::GzDecoder::new(input)),
        Compression::Lz4 => read_bounded(&mut lz4_flex::frame::FrameDecoder::new(input)),
        Compression::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::new(input).map_err(|e| codec_error(codec, e))?;
            read_bounded(&mut dec)
        }
        Compression::Snappy => {
            if input.starts_with(XERIAL_MAGIC) && input.len() >= 16 {
                // xerial framing: 16-byte header, then (u32 big-endian length, raw block)*.
                let mut out = Vec::new();
                let mut rest = &input[16..];
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(ProtocolError::Truncated {
                            context: "xerial snappy chunk length",
                            needed: 4 - rest.len(),
                        });
                    }
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    rest = &rest[4..];
                    if len > rest.len() {
                        return Err(ProtocolError::Truncated {
                            context: "xerial snappy chunk",
                            needed: len - rest.len(),
                        });
                    }
                    snappy_raw_into(&rest[..len], max_len, &mut out)?;
                    rest = &rest[len..];
                }
                Ok(out)
            } else {
                let mut out = Vec::new();
                snappy_raw_into(input, max_len, &mut out)?;
                Ok(out)
            }
        }
    }
}

fn snappy_raw_into(block: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let codec = Compression::Snappy;
    let n = snap::raw::decompress_len(block).map_err(|e| codec_error(codec, e))?;
    if out.len() + n > max_len {
        return Err(ProtocolError::Compression {
            codec: codec.name(),
            reason: format!("decompressed size exceeds {max_len} bytes"),
        });
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| codec_error(codec, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Incompressible data of `fit_within(limit)` bytes compresses to at most `limit` bytes
    /// at every level, for limits about a default batch and a default request.
    #[test]
    fn incompressible_data_of_fit_within_fits_compressed() {
        let mut rng = fastrand::Rng::with_seed(7);
        for limit in [16_384usize, 1_048_576] {
            for codec in ALL {
                let n = codec.fit_within(limit);
                assert!(n <= limit && n + 2200 >= limit, "{codec:?}: {n}");
                let input: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                let levels: &[Option<i32>] = match codec {
                    Compression::Gzip => &[None, Some(1), Some(9)],
                    Compression::Lz4 => &[None, Some(9), Some(17)],
                    Compression::Zstd => &[None, Some(1), Some(19)],
                    _ => &[None],
                };
                for &level in levels {
                    let mut out = BytesMut::new();
                    compress(codec, level, &input, &mut out).unwrap();
                    assert!(
                        out.len() <= limit,
                        "{codec:?} at {level:?}: {n} bytes came out as {} > {limit}",
                        out.len()
                    );
                }
            }
        }
    }

    #[test]
    fn round_trip_every_codec() {
        let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for codec in ALL {
            let mut out = BytesMut::new();
            compress(codec, None, &input, &mut out).unwrap();
            assert_eq!(
                decompress(codec, &out, input.len()).unwrap(),
                input,
                "{codec:?}"
            );
            assert!(
                decompress(codec, &out, input.len() - 1).is_err(),
                "{codec:?} bound"
            );
            assert_eq!(
                Compression::from_attributes(codec.attribute_bits()).unwrap(),
                codec
            );
            assert_eq!(Compression::from_name(codec.name()), Some(codec));
        }
    }

    #[test]
    fn levels_are_honoured() {
        // JSON-like records with repeats at many distances: a level that searches more finds
        // more of them. (Not any text: on "record {i % 1000} of {i / 7}; " zstd's level 19
        // makes more bytes than its level 1, the zstd command line's too.)
        let words = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
        ];
        let input: Vec<u8> = (0..20_000usize)
            .flat_map(|i| {
                format!(
                    "{{\"id\":{i},\"user\":\"user-{}\",\"amount\":{},\"note\":\"{} {}\"}}\n",
                    i * 7919 % 1000,
                    i * 31337 % 100_000,
                    words[i * 13 % 7],
                    words[i * 5 % 6]
                )
                .into_bytes()
            })
            .collect();
        let size = |codec, level| {
            let mut out = BytesMut::new();
            compress(codec, Some(level), &input, &mut out).unwrap();
            assert_eq!(
                decompress(codec, &out, input.len()).unwrap(),
                input,
                "{codec:?} at level {level}"
            );
            out.len()
        };
        for (codec, low, high) in [
            (Compression::Gzip, 1, 9),
            (Compression::Zstd, 1, 19),
            (Compression::Lz4, 10, 17),
        ] {
            let (fast, thorough) = (size(codec, low), size(codec, high));
            assert!(
                thorough < fast,
                "{codec:?}: level {high} made {thorough} bytes, level {low} {fast}"
            );
        }
    }

    #[test]
    fn lz4_default_level_is_the_fast_compressor_as_in_java() {
        let input: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("record {} of {}; ", i % 1000, i / 7).into_bytes())
            .collect();
        let at = |level| {
            let mut out = BytesMut::new();
            compress(Compression::Lz4, level, &input, &mut out).unwrap();
            out
        };
        assert_eq!(at(Some(LZ4_DEFAULT_LEVEL)), at(None));
        assert_ne!(at(Some(10)), at(None), "another level searches more");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in ALL {
            for garbage in [&b""[..], b"\x00\x01\x02", &[0xff; 64][..], XERIAL_MAGIC] {
                let result = decompress(codec, garbage, 1 << 20);
                if codec != Compression::None {
                    assert!(result.is_err(), "{codec:?} took {garbage:?} for {result:?}");
                }
            }
        }
    }
}
