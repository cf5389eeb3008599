//! Splitting a batch the broker refused as too large (MESSAGE_TOO_LARGE), as Java's
//! `ProducerBatch.split` does: the records are decoded and written again, in order, into
//! smaller batches with the same codec and producer id and epoch. Sequences carry on from the
//! refused batch's base sequence, so the pieces cover exactly the sequence numbers it held and
//! the batches after it keep theirs.

use bytes::Bytes;

use super::decode::decode_batch;
use super::{BatchBuilder, ProducerIds};
use crate::error::ProtocolError;

/// One piece of a split batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The closed batch.
    pub bytes: Bytes,
    /// Its producer id, epoch and base sequence.
    pub ids: ProducerIds,
    /// Records in it.
    pub records: usize,
}

/// Splits the closed batch `batch` into batches of at most `records_per_piece` records each
/// (the last may hold fewer), compressed with the batch's own codec at `level`.
pub fn split_batch(
    batch: &[u8],
    records_per_piece: usize,
    level: Option<i32>,
) -> Result<Vec<Piece>, ProtocolError> {
    let (decoded, _) = decode_batch(batch)?;
    let per = records_per_piece.max(1);
    let mut pieces = Vec::with_capacity(decoded.records.len().div_ceil(per));
    let mut offset = 0usize;
    for chunk in decoded.records.chunks(per) {
        // No size limit: the records were in one batch already.
        let mut builder = BatchBuilder::with_buffer(
            bytes::BytesMut::new(),
            usize::MAX,
            decoded.compression,
            level,
        );
        builder.set_transactional(decoded.is_transactional);
        for r in chunk {
            builder
                .try_append(
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                )
                .expect("a batch without a size limit takes every record");
        }
        let base_sequence = if decoded.base_sequence < 0 {
            -1
        } else {
            // Sequences wrap at i32::MAX as in Java's DefaultRecordBatch.incrementSequence.
            ((decoded.base_sequence as i64 + offset as i64) % (i32::MAX as i64 + 1)) as i32
        };
        let ids = ProducerIds {
            producer_id: decoded.producer_id,
            producer_epoch: decoded.producer_epoch,
            base_sequence,
        };
        pieces.push(Piece {
            bytes: builder.close(ids)?,
            ids,
            records: chunk.len(),
        });
        offset += chunk.len();
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use crate::record::Header;

    fn batch(compression: Compression, n: usize, ids: ProducerIds) -> Bytes {
        let mut b = BatchBuilder::new(1 << 20, compression, None);
        for i in 0..n {
            let headers = vec![Header::new("h", format!("{i}").into_bytes())];
            let key = format!("k{i}");
            let value = vec![i as u8; 100 + i];
            b.try_append(
                1_000 + i as i64,
                Some(key.as_bytes()),
                Some(&value),
                &headers,
            )
            .unwrap();
        }
        b.close(ids).unwrap()
    }

    #[test]
    fn pieces_hold_the_records_in_order_with_sequences_carried_on() {
        let ids = ProducerIds {
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 10,
        };
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let whole = batch(codec, 5, ids);
            let (original, _) = decode_batch(&whole).unwrap();
            let pieces = split_batch(&whole, 2, None).unwrap();
            assert_eq!(
                pieces.iter().map(|p| p.records).collect::<Vec<_>>(),
                [2, 2, 1]
            );
            assert_eq!(
                pieces
                    .iter()
                    .map(|p| p.ids.base_sequence)
                    .collect::<Vec<_>>(),
                [10, 12, 14]
            );
            let mut records = Vec::new();
            for p in &pieces {
                let (d, used) = decode_batch(&p.bytes).unwrap();
                assert_eq!(used, p.bytes.len());
                assert_eq!(d.compression, codec);
                assert_eq!((d.producer_id, d.producer_epoch), (7, 2));
                assert_eq!(d.base_sequence, p.ids.base_sequence);
                assert_eq!(d.records.len(), p.records);
                records.extend(
                    d.records
                        .into_iter()
                        .map(|r| (r.timestamp, r.key, r.value, r.headers)),
                );
            }
            let expected: Vec<_> = original
                .records
                .into_iter()
                .map(|r| (r.timestamp, r.key, r.value, r.headers))
                .collect();
            assert_eq!(records, expected, "{codec:?}");
        }
    }

    #[test]
    fn without_idempotence_pieces_carry_no_sequence_and_sequences_wrap() {
        let pieces = split_batch(&batch(Compression::None, 3, ProducerIds::NONE), 1, None).unwrap();
        assert!(pieces.iter().all(|p| p.ids == ProducerIds::NONE));
        let near_max = ProducerIds {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX,
        };
        let pieces = split_batch(&batch(Compression::None, 2, near_max), 1, None).unwrap();
        assert_eq!(pieces[0].ids.base_sequence, i32::MAX);
        assert_eq!(pieces[1].ids.base_sequence, 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(split_batch(b"not a batch", 1, None).is_err());
    }
}
