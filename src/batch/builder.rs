//! The incremental batch builder: the producer's hot path.
//!
//! Modelled on Java's `MemoryRecordsBuilder`: records are encoded one by one into a buffer
//! that already has room for the batch, the header is filled in once at `close()`, and the
//! result is a `Bytes` that goes into a ProduceRequest without another copy. Size checks are
//! arithmetic on lengths, so a record that does not fit costs nothing to refuse.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    ATTRIBUTES_OFFSET, CRC_OFFSET, LENGTH_OFFSET, LOG_OVERHEAD, PRODUCER_ID_OFFSET,
    RECORD_BATCH_OVERHEAD, TRANSACTIONAL_FLAG,
};
use crate::compression::{self, Compression};
use crate::error::ProtocolError;
use crate::record::Header;
use crate::varint::{varint_len, varlong_len, write_varint, write_varlong};

/// Producer identity stamped into a batch; all `-1` without idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIds {
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
}

impl ProducerIds {
    /// The values of a non-idempotent batch.
    pub const NONE: ProducerIds = ProducerIds {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// The record did not fit; the batch is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record of {record_size} bytes does not fit in the batch")]
pub struct BatchFull {
    /// Encoded size of the refused record.
    pub record_size: usize,
}

fn headers_size(headers: &[Header]) -> usize {
    let mut size = varint_len(headers.len() as i32);
    for h in headers {
        let k = h.key.len();
        size += varint_len(k as i32) + k;
        size += match &h.value {
            Some(v) => varint_len(v.len() as i32) + v.len(),
            None => 1,
        };
    }
    size
}

fn bytes_field_size(field: Option<&[u8]>) -> usize {
    match field {
        Some(b) => varint_len(b.len() as i32) + b.len(),
        None => 1,
    }
}

/// Encoded size of one record, its length prefix included.
pub fn record_size(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    let body = 1 // attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + bytes_field_size(key)
        + bytes_field_size(value)
        + headers_size(headers);
    varint_len(body as i32) + body
}

/// Builds one v2 record batch for one partition.
#[derive(Debug)]
pub struct BatchBuilder {
    /// Header space followed by the uncompressed records.
    buf: BytesMut,
    /// `batch.size`: records stop fitting once the batch would pass it (the first record
    /// always fits; the caller checks `max.request.size` before).
    limit: usize,
    count: i32,
    /// The largest record appended, encoded bytes (for Java's `record-size-*` metrics).
    max_record: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    compression: Compression,
    level: Option<i32>,
    transactional: bool,
}

impl BatchBuilder {
    /// A builder whose buffer is pre-sized to `batch_size`.
    pub fn new(batch_size: usize, compression: Compression, level: Option<i32>) -> Self {
        Self::with_buffer(
            BytesMut::with_capacity(batch_size),
            batch_size,
            compression,
            level,
        )
    }

    /// A builder on a recycled buffer (cleared first), so a pool can avoid allocation.
    pub fn with_buffer(
        mut buf: BytesMut,
        batch_size: usize,
        compression: Compression,
        level: Option<i32>,
    ) -> Self {
        buf.clear();
        buf.resize(RECORD_BATCH_OVERHEAD, 0);
        BatchBuilder {
            buf,
            limit: batch_size,
            count: 0,
            max_record: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            compression,
            level,
            transactional: false,
        }
    }

    /// Marks the batch as part of a transaction.
    pub fn set_transactional(&mut self, transactional: bool) {
        self.transactional = transactional;
    }

    /// Records appended so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// The largest record appended so far, as a batch holding it alone would be: its
    /// encoded size plus the batch header (Java's `record-size-*` measure the same, as an
    /// upper bound). 0 while empty.
    pub fn max_record_size(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            RECORD_BATCH_OVERHEAD + self.max_record
        }
    }

    /// Uncompressed size of the batch so far, header included.
    pub fn size_in_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The size records stop fitting at: `batch.size` unless raised.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Lets the batch grow to `limit` bytes. The producer raises it while the partition
    /// cannot send, so that the batch that goes once it can carries what came meanwhile
    /// (librdkafka's message sets grow alike until a request is built); it never lowers it.
    pub fn raise_limit(&mut self, limit: usize) {
        self.limit = self.limit.max(limit);
    }

    /// Makes room for the records section to reach `bytes` without moving: a batch that will
    /// grow (see [`raise_limit`](Self::raise_limit)) is otherwise copied each time its buffer
    /// doubles, which cost the router as many bytes copied again as the batch ends up
    /// holding. Memory accounting is unchanged: a large block's pages are taken only when
    /// written.
    pub fn reserve_capacity(&mut self, bytes: usize) {
        let len = self.buf.len();
        if bytes > len {
            self.buf.reserve(bytes - len);
        }
    }

    /// Moves the batch so far into `buf` (emptied first) and hands back the buffer it was
    /// in: a batch about to grow moves into a buffer that already has the room, rather than
    /// reallocating into fresh memory.
    pub fn move_to(&mut self, mut buf: BytesMut) -> BytesMut {
        buf.clear();
        buf.extend_from_slice(&self.buf);
        std::mem::replace(&mut self.buf, buf)
    }

    /// Whether another record can hardly fit (Java's `isFull`): used to close a batch early
    /// and to let sticky partitioning move on.
    pub fn is_full(&self) -> bool {
        self.count > 0 && self.buf.len() >= self.limit
    }

    /// Timestamp of the first record, the base of every delta.
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    fn deltas(&self, timestamp: i64) -> (i64, i32) {
        if self.count == 0 {
            (0, 0)
        } else {
            (timestamp.wrapping_sub(self.base_timestamp), self.count)
        }
    }

    /// Whether a record fits without passing `batch.size` (an empty batch takes anything).
    pub fn has_room_for(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> bool {
        let (ts_delta, offset_delta) = self.deltas(timestamp);
        self.count == 0
            || self.buf.len() + record_size(ts_delta, offset_delta, key, value, headers)
                <= self.limit
    }

    /// Appends a record if it fits; returns its encoded size.
    pub fn try_append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<usize, BatchFull> {
        let (ts_delta, offset_delta) = self.deltas(timestamp);
        let body = 1
            + varlong_len(ts_delta)
            + varint_len(offset_delta)
            + bytes_field_size(key)
            + bytes_field_size(value)
            + headers_size(headers);
        let size = varint_len(body as i32) + body;
        if self.count > 0 && self.buf.len() + size > self.limit {
            return Err(BatchFull { record_size: size });
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        // The record is written into its exact room: `size` is what the fields below take.
        let start = self.buf.len();
        self.buf.resize(start + size, 0);
        let mut w = Cursor {
            out: &mut self.buf[start..],
        };
        w.varint(body as i32);
        w.byte(0); // record attributes: unused
        w.varlong(ts_delta);
        w.varint(offset_delta);
        w.bytes_field(key);
        w.bytes_field(value);
        w.varint(headers.len() as i32);
        for h in headers {
            w.varint(h.key.len() as i32);
            w.slice(h.key.as_bytes());
            w.bytes_field(h.value.as_deref());
        }
        debug_assert!(w.out.is_empty(), "record_size and the encoder disagree");
        self.count += 1;
        self.max_record = self.max_record.max(size);
        if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        Ok(size)
    }

    /// Finishes the batch: compresses the records section if a codec is set, fills in the
    /// header and the CRC-32C, and yields bytes ready for a ProduceRequest.
    pub fn close(self, ids: ProducerIds) -> Result<Bytes, ProtocolError> {
        let BatchBuilder {
            buf,
            count,
            base_timestamp,
            max_timestamp,
            compression,
            level,
            transactional,
            ..
        } = self;
        let mut out = if compression == Compression::None {
            buf
        } else {
            let records = &buf[RECORD_BATCH_OVERHEAD..];
            let mut out = BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + records.len() / 2 + 64);
            out.resize(RECORD_BATCH_OVERHEAD, 0);
            compression::compress(compression, level, records, &mut out)?;
            out
        };
        let max_timestamp = if count == 0 {
            base_timestamp
        } else {
            max_timestamp
        };
        let mut attributes = compression.attribute_bits();
        if transactional {
            attributes |= TRANSACTIONAL_FLAG;
        }
        let batch_length = (out.len() - LOG_OVERHEAD) as i32;
        let mut header = &mut out[..RECORD_BATCH_OVERHEAD];
        header.put_i64(0); // baseOffset
        header.put_i32(batch_length);
        header.put_i32(-1); // partitionLeaderEpoch
        header.put_i8(2); // magic
        header.put_u32(0); // crc, below
        header.put_i16(attributes);
        header.put_i32(count - 1); // lastOffsetDelta
        header.put_i64(base_timestamp);
        header.put_i64(max_timestamp);
        header.put_i64(ids.producer_id);
        header.put_i16(ids.producer_epoch);
        header.put_i32(ids.base_sequence);
        header.put_i32(count);
        write_crc(&mut out);
        Ok(out.freeze())
    }
}

/// Writes a record's fields front to back into the room made for it.
struct Cursor<'a> {
    out: &'a mut [u8],
}

impl Cursor<'_> {
    #[inline]
    fn advance(&mut self, n: usize) {
        let out = std::mem::take(&mut self.out);
        self.out = &mut out[n..];
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.out[0] = b;
        self.advance(1);
    }

    #[inline]
    fn varint(&mut self, v: i32) {
        let n = write_varint(self.out, v);
        self.advance(n);
    }

    #[inline]
    fn varlong(&mut self, v: i64) {
        let n = write_varlong(self.out, v);
        self.advance(n);
    }

    #[inline]
    fn slice(&mut self, b: &[u8]) {
        self.out[..b.len()].copy_from_slice(b);
        self.advance(b.len());
    }

    #[inline]
    fn bytes_field(&mut self, field: Option<&[u8]>) {
        match field {
            Some(b) => {
                self.varint(b.len() as i32);
                self.slice(b);
            }
            None => self.varint(-1),
        }
    }
}

fn write_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites producer id, epoch and base sequence of a closed batch and its CRC. Used when an
/// idempotent producer's epoch is bumped and pending batches must be resequenced.
pub fn restamp(batch: &Bytes, ids: ProducerIds) -> Result<Bytes, ProtocolError> {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return Err(ProtocolError::Truncated {
            context: "record batch header",
            needed: RECORD_BATCH_OVERHEAD - batch.len(),
        });
    }
    let mut out = BytesMut::from(&batch[..]);
    let mut field = &mut out[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 14];
    field.put_i64(ids.producer_id);
    field.put_i16(ids.producer_epoch);
    field.put_i32(ids.base_sequence);
    write_crc(&mut out);
    Ok(out.freeze())
}

// Guard against an accidental edit of the layout constants.
const _: () = assert!(LENGTH_OFFSET == 8 && PRODUCER_ID_OFFSET + 18 == RECORD_BATCH_OVERHEAD);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_size_matches_what_is_written() {
        let headers = vec![
            Header::new("h", &b"v"[..]),
            Header {
                key: "n".into(),
                value: None,
            },
        ];
        let mut b = BatchBuilder::new(1 << 20, Compression::None, None);
        let mut expected = RECORD_BATCH_OVERHEAD;
        for i in 0..100i64 {
            let key = vec![1u8; i as usize];
            let size = record_size(i * 7, i as i32, Some(&key), None, &headers);
            assert_eq!(
                b.try_append(1_000 + i * 7, Some(&key), None, &headers),
                Ok(size)
            );
            expected += size;
            assert_eq!(b.size_in_bytes(), expected);
        }
    }

    #[test]
    fn batch_size_is_respected_but_first_record_always_fits() {
        let mut b = BatchBuilder::new(100, Compression::None, None);
        let big = vec![0u8; 500];
        assert!(b.try_append(0, None, Some(&big), &[]).is_ok());
        assert!(b.is_full());
        assert!(!b.has_room_for(0, None, Some(b"x"), &[]));
        assert!(b.try_append(0, None, Some(b"x"), &[]).is_err());
        assert_eq!(b.record_count(), 1);
    }

    /// The largest record is measured as a batch holding it alone: what a one-record batch
    /// of it closes to.
    #[test]
    fn max_record_size_is_the_largest_record_alone_in_a_batch() {
        let mut b = BatchBuilder::new(1 << 16, Compression::None, None);
        assert_eq!(b.max_record_size(), 0);
        let sizes = [10usize, 300, 20];
        for (i, n) in sizes.iter().enumerate() {
            b.try_append(i as i64, Some(b"key"), Some(&vec![1u8; *n]), &[])
                .expect("fits");
        }
        let mut alone = BatchBuilder::new(1 << 16, Compression::None, None);
        alone
            .try_append(1, Some(b"key"), Some(&[1u8; 300]), &[])
            .expect("fits");
        let alone = alone.close(ProducerIds::NONE).expect("closes");
        assert_eq!(b.max_record_size(), alone.len());
    }

    /// A raised limit takes the records a full batch refused, and decodes like any batch; the
    /// limit is never lowered (a batch that grew keeps what it holds).
    #[test]
    fn a_raised_limit_takes_more_records() {
        let mut b = BatchBuilder::new(100, Compression::None, None);
        let value = [7u8; 30];
        while b.try_append(0, None, Some(&value), &[]).is_ok() {}
        let first = b.record_count();
        assert!(b.is_full() || !b.has_room_for(0, None, Some(&value), &[]));
        b.raise_limit(300);
        assert_eq!(b.limit(), 300);
        assert!(!b.is_full());
        while b.try_append(0, None, Some(&value), &[]).is_ok() {}
        assert!(
            b.record_count() > first,
            "the raised limit took more records"
        );
        assert!(b.size_in_bytes() <= 300);
        b.raise_limit(200);
        assert_eq!(b.limit(), 300, "never lowered");
        let count = b.record_count() as usize;
        let bytes = b.close(ProducerIds::NONE).unwrap();
        let (decoded, used) = crate::batch::decode::decode_batch(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(decoded.records.len(), count);
    }

    #[test]
    fn a_batch_with_reserved_capacity_grows_without_moving() {
        let mut b = BatchBuilder::new(100, Compression::None, None);
        b.reserve_capacity(10_000);
        let capacity = b.buf.capacity();
        b.raise_limit(10_000);
        let value = [7u8; 30];
        while b.try_append(0, None, Some(&value), &[]).is_ok() {}
        assert!(b.size_in_bytes() > 9_000, "filled up to the raised limit");
        // A buffer that had to grow (and be copied, unless the allocator could extend it)
        // would have a new capacity.
        assert_eq!(b.buf.capacity(), capacity, "the buffer never grew");
        let count = b.record_count() as usize;
        let bytes = b.close(ProducerIds::NONE).unwrap();
        let (decoded, _) = crate::batch::decode::decode_batch(&bytes).unwrap();
        assert_eq!(decoded.records.len(), count);
    }

    #[test]
    fn header_fields_and_crc() {
        let mut b = BatchBuilder::new(16384, Compression::None, None);
        b.try_append(1000, Some(b"k"), Some(b"v"), &[]).unwrap();
        b.try_append(900, None, Some(b"w"), &[]).unwrap();
        let ids = ProducerIds {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 42,
        };
        let bytes = b.close(ids).unwrap();
        assert_eq!(&bytes[0..8], &[0; 8]);
        assert_eq!(
            i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize,
            bytes.len() - 12
        );
        assert_eq!(bytes[16], 2);
        assert_eq!(i32::from_be_bytes(bytes[23..27].try_into().unwrap()), 1);
        assert_eq!(i64::from_be_bytes(bytes[27..35].try_into().unwrap()), 1000);
        assert_eq!(i64::from_be_bytes(bytes[35..43].try_into().unwrap()), 1000);
        assert_eq!(i64::from_be_bytes(bytes[43..51].try_into().unwrap()), 7);
        assert_eq!(i32::from_be_bytes(bytes[53..57].try_into().unwrap()), 42);
        assert_eq!(i32::from_be_bytes(bytes[57..61].try_into().unwrap()), 2);
        let crc = u32::from_be_bytes(bytes[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&bytes[21..]));
        let again = restamp(
            &bytes,
            ProducerIds {
                base_sequence: 5,
                ..ids
            },
        )
        .unwrap();
        assert_eq!(i32::from_be_bytes(again[53..57].try_into().unwrap()), 5);
        assert_eq!(
            u32::from_be_bytes(again[17..21].try_into().unwrap()),
            crc32c::crc32c(&again[21..])
        );
    }
}
