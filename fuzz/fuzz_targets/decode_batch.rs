//! Fuzzes the record batch decoder (`herald::batch::decode`) with arbitrary bytes, as the
//! `records` field of a ProduceRequest or FetchResponse could hold: it must return `Ok` or
//! `Err`, never panic, and never allocate beyond its documented bounds.
//!
//! Each input is decoded twice: as it is (the CRC check refuses almost every mutation), and
//! with the CRC-32C of every batch it frames recomputed, so the mutations reach the
//! attributes, the decompressors and the record parser behind the CRC.

#![no_main]

use libfuzzer_sys::fuzz_target;

use herald::batch::decode::decode_batches;
use herald::ProtocolError;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    if fix_crcs(&mut fixed) {
        let result = check(&fixed);
        // Every framed batch now has a correct CRC: a mismatch would mean `fix_crcs` (or
        // the decoder's framing) is wrong, and this target would be testing nothing.
        assert!(!matches!(result, Err(ProtocolError::CrcMismatch { .. })));
    }
});

fn check(data: &[u8]) -> Result<(), ProtocolError> {
    let batches = decode_batches(data)?;
    // Only an empty input is zero batches.
    assert_eq!(batches.is_empty(), data.is_empty());
    Ok(())
}

/// Rewrites the CRC of every batch the length fields frame; false if nothing changed.
fn fix_crcs(data: &mut [u8]) -> bool {
    let mut changed = false;
    let mut at = 0usize;
    while data.len() - at >= 61 {
        let len = i32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap());
        let Ok(len) = usize::try_from(len) else { break };
        let end = at + 12 + len;
        if len < 49 || end > data.len() {
            break;
        }
        let crc = crc32c(&data[at + 21..end]).to_be_bytes();
        changed |= data[at + 17..at + 21] != crc;
        data[at + 17..at + 21].copy_from_slice(&crc);
        at = end;
    }
    changed
}

/// Bitwise CRC-32C (Castagnoli), reflected, as Kafka uses it.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
