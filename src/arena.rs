//! Copies of small keys and values that share a chunk instead of an allocation each.
//!
//! A producer copies what it is given on the application's thread and frees it later,
//! often on another one. With an allocation per key and per value that is two `malloc`s and
//! two `free`s per record, about a fifth of the instructions of `Producer::send` in
//! callgrind, and freeing memory another thread allocated also costs the allocator's
//! per-thread caches. librdkafka copies a record's key and payload into one allocation for
//! the same reason (`RD_KAFKA_MSG_F_COPY`).
//!
//! [`copy`] appends small slices to a chunk owned by the calling thread and hands out
//! reference-counted views of it ([`Bytes`]), so a chunk's allocation serves a hundred or
//! more records. A chunk whose every view was dropped is written again from its start, so a
//! thread that produces steadily reuses warm memory rather than asking for more.
//!
//! The trade-off is that a view keeps its whole chunk alive: a key held for an hour holds
//! [`CHUNK`] bytes for an hour. Slices above [`SMALL`] get an allocation of their own, so a
//! large value never pins (or wastes the rest of) a chunk. Data kept long after it was
//! produced is better copied with `Bytes::copy_from_slice`.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Bytes per chunk: room for about 150 records of 100-byte values with 10-byte keys.
pub const CHUNK: usize = 16 * 1024;

/// The largest slice copied into a chunk; larger ones are allocated alone.
pub const SMALL: usize = 1024;

thread_local! {
    /// The calling thread's chunk: what is left of it to write into.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A copy of `data`: in the calling thread's current chunk when it is at most [`SMALL`]
/// bytes, allocated alone otherwise.
#[inline]
pub fn copy(data: &[u8]) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    if data.len() > SMALL {
        return Bytes::copy_from_slice(data);
    }
    ARENA.with(|arena| {
        let mut chunk = arena.borrow_mut();
        if chunk.capacity() < data.len() {
            // `reserve` writes the chunk again from its start if no view of it is alive
            // (bytes' reclaim of a unique buffer), and otherwise leaves it to its views and
            // allocates a new one.
            chunk.reserve(CHUNK);
        }
        chunk.extend_from_slice(data);
        chunk.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_hold_their_data_and_small_ones_share_a_chunk() {
        let a = copy(b"key-1");
        let b = copy(b"a value of some length");
        assert_eq!(&a[..], b"key-1");
        assert_eq!(&b[..], b"a value of some length");
        // Consecutive small copies lie side by side in one allocation (unless the first
        // one ended a chunk, which a fresh thread's first copies do not).
        std::thread::spawn(|| {
            let a = copy(b"key-1");
            let b = copy(b"value");
            assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_chunk_nobody_holds_is_written_again_from_its_start() {
        std::thread::spawn(|| {
            let first = copy(&[1u8; 600]);
            let start = first.as_ptr();
            let mut next = start.wrapping_add(600);
            drop(first);
            // Fill the rest of the chunk, dropping each copy. The first copy that does not
            // follow the one before starts the next chunk: it must be the old one, written
            // again. (Compared at that moment, while the old chunk is still allocated, so the
            // allocator cannot hand its address back as a new chunk.)
            for i in 0..(2 * CHUNK / 600) {
                let c = copy(&[i as u8; 600]);
                assert!(c.iter().all(|&x| x == i as u8));
                if c.as_ptr() != next {
                    assert_eq!(
                        c.as_ptr(),
                        start,
                        "the chunk was not reused once every copy was dropped"
                    );
                    return;
                }
                next = c.as_ptr().wrapping_add(600);
            }
            panic!("no copy started a new chunk");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_held_copy_keeps_its_bytes_while_later_chunks_are_written() {
        std::thread::spawn(|| {
            let held = copy(b"held while the chunk fills");
            let later: Vec<Bytes> = (0..(3 * CHUNK / 500))
                .map(|i| copy(&[i as u8; 500]))
                .collect();
            assert_eq!(&held[..], b"held while the chunk fills");
            for (i, c) in later.iter().enumerate() {
                assert!(c.iter().all(|&x| x == i as u8), "copy {i} was overwritten");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn large_and_empty_slices_are_copied_alone() {
        let big = vec![7u8; SMALL + 1];
        let c = copy(&big);
        assert_eq!(&c[..], &big[..]);
        let small = copy(b"x");
        // Not in the chunk: the small copy does not follow the large one.
        assert_ne!(c.as_ptr().wrapping_add(c.len()), small.as_ptr());
        assert!(copy(b"").is_empty());
    }

    #[test]
    fn copies_can_be_dropped_on_another_thread() {
        let copies: Vec<Bytes> = (0..1000u32).map(|i| copy(&i.to_be_bytes())).collect();
        let back = std::thread::spawn(move || {
            copies
                .iter()
                .enumerate()
                .all(|(i, c)| c[..] == (i as u32).to_be_bytes())
        })
        .join()
        .unwrap();
        assert!(back);
        // The chunk these came from is still usable here.
        assert_eq!(&copy(b"after")[..], b"after");
    }
}
