//! Zig-zag varints as used inside v2 records (protobuf encoding; KIP-98 record format).
//!
//! Encoders write into a `BufMut` and never fail. Decoders read from a slice cursor, return
//! the value and the bytes consumed, and reject overlong encodings instead of looping.

use bytes::BufMut;

use crate::error::ProtocolError;

/// Bytes an unsigned varint of `v` takes.
#[inline]
pub fn uvarint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte. A table by leading zeros:
    // the batch builder sizes six varints per record, and the division cost more than the
    // rest of the sizing.
    UVARINT_LEN[(v | 1).leading_zeros() as usize] as usize
}

/// `uvarint_len` by the value's leading zeros (0..=63; `v | 1` has at most 63).
const UVARINT_LEN: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut zeros = 0;
    while zeros < 64 {
        let bits = 64 - zeros;
        table[zeros] = bits.div_ceil(7) as u8;
        zeros += 1;
    }
    table
};

/// Bytes the zig-zag varint of a signed 32-bit value takes.
#[inline]
pub fn varint_len(v: i32) -> usize {
    uvarint_len(zigzag32(v) as u64)
}

/// Bytes the zig-zag varlong of a signed 64-bit value takes.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Writes an unsigned varint.
#[inline]
pub fn put_uvarint(buf: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes a zig-zag varint.
#[inline]
pub fn put_varint(buf: &mut impl BufMut, v: i32) {
    put_uvarint(buf, zigzag32(v) as u64)
}

/// Writes a zig-zag varlong.
#[inline]
pub fn put_varlong(buf: &mut impl BufMut, v: i64) {
    put_uvarint(buf, zigzag64(v))
}

/// Writes an unsigned varint at the front of `out` and returns the bytes it took. For encoders
/// that sized their output first: a store per byte, where `BufMut::put_u8` checks capacity and
/// copies a one-byte slice per byte. Panics if `out` is too short.
#[inline]
pub fn write_uvarint(out: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

/// [`write_uvarint`] of a zig-zag varint.
#[inline]
pub fn write_varint(out: &mut [u8], v: i32) -> usize {
    write_uvarint(out, zigzag32(v) as u64)
}

/// [`write_uvarint`] of a zig-zag varlong.
#[inline]
pub fn write_varlong(out: &mut [u8], v: i64) -> usize {
    write_uvarint(out, zigzag64(v))
}

/// Reads an unsigned varint of at most `max_bytes` bytes from the front of `input`.
/// Returns the value and how many bytes it took.
#[inline]
pub fn get_uvarint(input: &[u8], max_bytes: usize) -> Result<(u64, usize), ProtocolError> {
    let mut value = 0u64;
    for (i, &b) in input.iter().take(max_bytes).enumerate() {
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() < max_bytes {
        Err(ProtocolError::Truncated {
            context: "varint",
            needed: 1,
        })
    } else {
        Err(ProtocolError::Malformed {
            context: "varint",
            reason: format!("longer than {max_bytes} bytes"),
        })
    }
}

/// Reads a zig-zag varint (32-bit).
#[inline]
pub fn get_varint(input: &[u8]) -> Result<(i32, usize), ProtocolError> {
    let (raw, n) = get_uvarint(input, 5)?;
    if raw > u32::MAX as u64 {
        return Err(ProtocolError::Malformed {
            context: "varint",
            reason: "value exceeds 32 bits".into(),
        });
    }
    let raw = raw as u32;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), n))
}

/// Reads a zig-zag varlong (64-bit).
#[inline]
pub fn get_varlong(input: &[u8]) -> Result<(i64, usize), ProtocolError> {
    let (raw, n) = get_uvarint(input, 10)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v in any::<i32>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_len(v));
            let mut written = [0u8; 5];
            let n = write_varint(&mut written, v);
            prop_assert_eq!(&written[..n], &buf[..]);
            prop_assert_eq!(get_varint(&buf).unwrap(), (v, buf.len()));
        }

        #[test]
        fn varlong_round_trip(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            prop_assert_eq!(buf.len(), varlong_len(v));
            let mut written = [0u8; 10];
            let n = write_varlong(&mut written, v);
            prop_assert_eq!(&written[..n], &buf[..]);
            prop_assert_eq!(get_varlong(&buf).unwrap(), (v, buf.len()));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = get_varint(&bytes);
            let _ = get_varlong(&bytes);
        }
    }

    #[test]
    fn lengths_match_the_encoding_at_every_width() {
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> (63 - shift)] {
                let mut buf = Vec::new();
                put_uvarint(&mut buf, v);
                assert_eq!(uvarint_len(v), buf.len(), "{v}");
            }
        }
        assert_eq!(uvarint_len(0), 1);
    }

    #[test]
    fn known_encodings() {
        let mut buf = Vec::new();
        put_varint(&mut buf, -1);
        put_varint(&mut buf, 1);
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0x01, 0x02, 0xd8, 0x04]);
        assert!(get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert!(get_varint(&[0x80]).is_err());
    }
}
