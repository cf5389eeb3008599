//! A request frame as the writer task sends it: pieces written in order, the record batches
//! of a Produce request among them by reference (see `herald::protocol::produce`). As a
//! [`Buf`] it hands all its pieces to one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// The unwritten pieces of one frame.
#[derive(Default)]
pub(crate) struct Frame {
    pieces: VecDeque<Bytes>,
    remaining: usize,
}

/// Sizes only: a frame may be a SaslAuthenticate request, whose bytes carry a password or a
/// token.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Frame([{} bytes in {} pieces hidden])",
            self.remaining,
            self.pieces.len()
        )
    }
}

impl Frame {
    /// A frame of `pieces`, in write order.
    pub(crate) fn new(pieces: impl IntoIterator<Item = Bytes>) -> Frame {
        let pieces: VecDeque<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        let remaining = pieces.iter().map(Bytes::len).sum();
        Frame { pieces, remaining }
    }
}

impl Buf for Frame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.pieces.front().map_or(&[], |p| p.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advanced past the frame's end");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self
                .pieces
                .front_mut()
                .expect("remaining counts the pieces");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.pieces.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(&self.pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_as_its_pieces_in_order_across_partial_writes() {
        let mut frame = Frame::new([
            Bytes::from_static(b"head"),
            Bytes::new(),
            Bytes::from_static(b"batch"),
            Bytes::from_static(b"!"),
        ]);
        assert_eq!(frame.remaining(), 10);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(
            frame.chunks_vectored(&mut slices),
            3,
            "empty pieces dropped"
        );
        frame.advance(6);
        assert_eq!(frame.chunk(), b"tch");
        assert_eq!(frame.remaining(), 4);
        let mut rest = Vec::new();
        while frame.has_remaining() {
            let c = frame.chunk().to_vec();
            frame.advance(c.len());
            rest.extend(c);
        }
        assert_eq!(rest, b"tch!");
    }

    #[test]
    fn debug_shows_the_size_not_the_bytes() {
        let frame = Frame::new([Bytes::from_static(b"\0user\0hunter2")]);
        let shown = format!("{frame:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("13 bytes"), "{shown}");
    }
}
