//! Kafka v2 record batches (magic 2), as specified in the Kafka protocol guide's "Record
//! Batch" section and KIP-98.
//!
//! ```text
//! offset  field                    written by
//!  0      baseOffset: i64          0 (the broker assigns offsets)
//!  8      batchLength: i32         close(): bytes after this field
//! 12      partitionLeaderEpoch: i32 -1
//! 16      magic: i8 = 2
//! 17      crc: u32 (CRC-32C)       close()/restamp(): over bytes 21..end
//! 21      attributes: i16          compression, transactional bit
//! 23      lastOffsetDelta: i32
//! 27      baseTimestamp: i64       first record's timestamp
//! 35      maxTimestamp: i64
//! 43      producerId: i64          restamp() for idempotence
//! 51      producerEpoch: i16
//! 53      baseSequence: i32
//! 57      recordCount: i32
//! 61      records (compressed as one block when a codec is set)
//! ```
//!
//! [`BatchBuilder`] writes records straight into one pre-sized buffer; [`decode`] reads
//! batches back (tests, validation, fuzzing); [`split_batch`] cuts a batch the broker refused
//! as too large into smaller ones.

mod builder;
pub mod decode;
mod split;

pub use builder::{record_size, restamp, BatchBuilder, BatchFull, ProducerIds};
pub use split::{split_batch, Piece};

/// Bytes of the batch header before the first record.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

pub(crate) const LENGTH_OFFSET: usize = 8;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const PRODUCER_ID_OFFSET: usize = 43;
/// Bytes before `batchLength` counts from (baseOffset and batchLength itself).
pub(crate) const LOG_OVERHEAD: usize = 12;

/// Attribute bit: the batch belongs to a transaction.
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit: the batch is a control batch.
pub const CONTROL_FLAG: i16 = 0x20;
/// Attribute bit: timestamps are LogAppendTime.
pub const LOG_APPEND_TIME_FLAG: i16 = 0x08;
