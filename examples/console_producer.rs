//! A kcat-style console producer: every line of stdin becomes one record.
//!
//! ```text
//! console_producer [-b HOST:PORT] -t TOPIC [-K SEP] [-p PARTITION] [-H NAME[=VALUE]]...
//!                  [-X config.key=value]... [--txn-records N]
//!
//! seq 1000 | cargo run --example console_producer -- -b localhost:9092 -t numbers
//! printf 'k1:v1\nk2:v2\n' | cargo run --example console_producer -- -b localhost:9092 -t t -K : \
//!     -H source=console -X acks=1 -X compression.type=zstd
//! ```
//!
//! - Only the trailing newline is stripped: a CRLF line keeps its `\r` in the value, as kcat
//!   keeps it. An empty line is a record with an empty value, as kafka-console-producer makes
//!   one (kcat skips it); a last line without a newline is a record too. Lines are bytes, not
//!   necessarily UTF-8.
//! - With `-K SEP`, the text before the first SEP is the key and the rest the value; a line
//!   without SEP is all value, with a null key (as kcat does). SEP takes kcat's escapes, as
//!   its `-D` does: `\t`, `\n`, `\r`, `\0` and `\xNN` (a byte in hex) stand for those bytes,
//!   so that `-K '\t'` splits at a tab; any other character, a lone backslash too, is itself.
//! - `-H NAME` without `=` is a header with a null value, as in kcat.
//! - `-X` accepts every producer config key Herald knows (the Java producer's names);
//!   `-X bootstrap.servers=...` can stand for `-b`, as in kcat.
//! - `-p -1`, as in kcat, leaves the partition to the partitioner, as no `-p` does.
//! - A line longer than `max.request.size` can never be sent, and a source may send no
//!   newline for gigabytes: once more than that many bytes of a line came, it is reported
//!   failed and the rest of it is skipped rather than held in memory.
//!
//! At the end one JSON line goes to stderr:
//! `{"records":N,"delivered":D,"failed":F,"elapsed_ms":T}`, after one line per failed record.
//! Exit status: 0 if every record was delivered, 1 if any failed, 2 for bad arguments or config.
//!
//! # Transactions
//!
//! With `-X transactional.id=ID` the lines go in transactions: one for all of the input, or
//! one per `--txn-records N` lines, each committed once its lines have their outcomes (and
//! the last at EOF). Any transaction error (a record that failed, a commit refused) aborts
//! the open transaction, is reported on stderr, and ends the run with exit status 1, without
//! reading further input. The JSON line then also counts the records of committed
//! transactions and the transactions committed:
//! `{"records":N,"delivered":D,"failed":F,"elapsed_ms":T,"committed":C,"transactions":X}`.
//! `--txn-records` without `-X transactional.id` is refused (exit status 2).
//! Set `RUST_LOG=herald_actors=debug` to watch the producer work.
//!
//! # Interrupts
//!
//! As in kcat, the first SIGINT or SIGTERM (Ctrl-C) stops the reading of stdin, but not the
//! records already read: they still get their outcomes, then the summary comes, and the exit
//! status says whether all of them were delivered. Lines the reader thread has taken from
//! stdin and not yet handed on (fewer than 512, and those of the block being read) are
//! dropped, as kcat drops what its stdio buffer holds. A second signal stops the wait: the
//! producer closes at once and the records without an outcome count as failed. In a
//! transactional run a signal aborts the open transaction, as kcat's does, and the exit
//! status is 1 (with no transaction open, every line read was committed: exit status 0).
//!
//! # How lines travel
//!
//! ```text
//!  stdin ──blocks──▶ reader thread ──Lines (records sliced from a block)──▶ main task
//!                    (waits while the channel is full)                        │ ProduceBatchTally
//!                                                                             ▼
//!                    the chunk's count and failed lines ◀─────────────── Router
//! ```
//!
//! - stdin is read in blocks of [`BLOCK_SIZE`] on a thread of its own (reading blocks; a
//!   block ends early when stdin has nothing more waiting, so a slow source's lines go out
//!   as they come), and
//!   split into lines with `memchr` (a one-byte `-K` is found in the same pass). Each line's
//!   key and value are `Bytes::slice`s of its block: no allocation and no copy per line (only
//!   a line cut by the block's end is copied, into the next block). A block gets one
//!   CreateTime, read when it was read.
//! - Records go to the router as `ProduceBatchTally` messages of [`CHUNK_RECORDS`] lines, and
//!   their outcomes come back as one reply per message, a count of the delivered lines and
//!   the failed ones with their errors: no actix message, no reply and no metadata per line
//!   (the summary and the stderr lines need no more, as kcat's delivery reports).
//! - Backpressure follows `buffer.memory`: the bytes of stdin sent and not yet answered stay
//!   at most `buffer.memory` (one chunk is always allowed). While the bound is reached the
//!   main task takes no chunk, the channel fills and the reader stops reading stdin; answers
//!   resume it. This is kcat's queue bound (`queue.buffering.max.kbytes`) under the Java
//!   producer's name, so `-X buffer.memory=...` moves the producer's buffer and the bound
//!   together.
//!
//! # Defaults
//!
//! Herald's defaults are the Java producer's, made for many small sends from an application.
//! A console producer is fed a stream, so it changes one (`-X` overrides it):
//!
//! - `batch.size` is librdkafka's (and so kcat's) default, 1,000,000 bytes, but at most a
//!   32nd of `buffer.memory` ([`BATCHES_PER_BUFFER`]), so that a smaller buffer still holds
//!   a batch per partition and the batches in flight. With the Java default of 16 KiB a
//!   batch holds about 150 lines of 100 bytes and the cost per batch (a buffer reservation, a
//!   request slot, an acknowledgement) comes every 150 lines instead of every few thousand:
//!   measured with `console_bench`, about 30% more CPU.
//! - Everything else is Herald's default, which is kcat's where it matters for speed:
//!   `linger.ms=5` (kcat: 5), `acks=all` (kcat: all), `buffer.memory` 32 MiB as the bound of
//!   unanswered input (kcat: a queue of 1 GiB or 100,000 messages; 32 MiB are about 300,000
//!   lines of 100 bytes, more than are in flight at the speeds measured here). Herald enables
//!   idempotence by default; kcat does not.

use std::borrow::Cow;
use std::future::Future;
use std::io::Read;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Addr, MailboxError};
use bytes::Bytes;
use clap::Parser;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use herald::{ConfigError, Header, ProducerConfig, ProducerRecord};
use herald_actors::{
    BatchTally, Produce, ProduceBatchTally, Producer, Router, TraceContext, TransactionResult,
};
use tokio::signal::unix::{Signal, SignalKind};

#[path = "common/key_value.rs"]
mod key_value;

/// How much of stdin is read at once.
const BLOCK_SIZE: usize = 1 << 20;

/// Records per `ProduceBatchTally` message. Few enough that a chunk's vector of `Produce`s
/// (about 100 KB) stays below the allocator's threshold for mapping fresh
/// memory: 1,024 took a new mapping, page faults included, for every chunk.
const CHUNK_RECORDS: usize = 512;

/// Chunks read ahead of the producer: the reader fills the next ones while the main task
/// sends.
const READ_AHEAD: usize = 16;

/// `batch.size` unless `-X` sets it: librdkafka's default (see the module docs)...
const BATCH_SIZE: usize = 1_000_000;

/// ...but at most this share of `buffer.memory`: every partition's open batch reserves
/// `batch.size` of it, and batches in flight keep theirs until acknowledged.
const BATCHES_PER_BUFFER: usize = 32;

/// How long `close` may take to deliver what is left at EOF.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(about = "Produce stdin lines as Kafka records with Herald (kcat -P style)")]
struct Args {
    /// Bootstrap brokers, host:port[,host:port...] (or -X bootstrap.servers=...).
    #[arg(short = 'b', value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Topic to produce to.
    #[arg(short = 't', value_name = "TOPIC")]
    topic: String,
    /// Key delimiter: the text before the first SEP is the key. Escapes as kcat's -D:
    /// \t, \n, \r, \0, \xNN.
    #[arg(short = 'K', value_name = "SEP", value_parser = parse_delimiter)]
    key_delimiter: Option<Delimiter>,
    /// Partition to produce to (default, or -1 as kcat takes it: the partitioner picks).
    #[arg(
        short = 'p',
        value_name = "PARTITION",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i32).range(-1..)
    )]
    partition: Option<i32>,
    /// A header for every record (repeatable); NAME alone has a null value.
    #[arg(short = 'H', value_name = "NAME[=VALUE]", value_parser = parse_header)]
    headers: Vec<(String, Option<String>)>,
    /// A producer config setting (repeatable), e.g. -X acks=1 -X linger.ms=20.
    #[arg(short = 'X', value_name = "CONFIG.KEY=VALUE", value_parser = key_value::KeyValue)]
    config: Vec<(String, String)>,
    /// With -X transactional.id: commit every N lines (default: all input in one
    /// transaction).
    #[arg(long = "txn-records", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    txn_records: Option<u64>,
}

/// `-K`'s bytes, which its escapes may make other than UTF-8 (`\xff`).
#[derive(Debug, Clone)]
struct Delimiter(Vec<u8>);

/// `-K`'s argument as kcat reads its delimiters (`parse_delim`): a key delimiter such as a
/// tab or a NUL cannot be typed on most command lines. kcat knows `\n`, `\t` and `\xNN`;
/// `\r` and `\0` are here too. Anything else stays as written, a backslash included, so
/// that a delimiter without escapes means what it always meant.
fn parse_delimiter(text: &str) -> Result<Delimiter, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        let escaped = match (b, rest.first()) {
            (b'\\', Some(b'n')) => b'\n',
            (b'\\', Some(b't')) => b'\t',
            (b'\\', Some(b'r')) => b'\r',
            (b'\\', Some(b'0')) => 0,
            (b'\\', Some(b'x')) => {
                let digits = rest[1..]
                    .iter()
                    .take(2)
                    .take_while(|d| d.is_ascii_hexdigit())
                    .count();
                if digits == 0 {
                    return Err(format!("\\x in {text:?} expects a hex number"));
                }
                let hex = std::str::from_utf8(&rest[1..1 + digits]).map_err(|e| e.to_string())?;
                let byte = u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                out.push(byte);
                rest = &rest[1 + digits..];
                continue;
            }
            _ => {
                out.push(b);
                continue;
            }
        };
        out.push(escaped);
        rest = &rest[1..];
    }
    Ok(Delimiter(out))
}

/// `-H NAME=VALUE`, or `-H NAME` for a null value, as kcat takes them.
fn parse_header(text: &str) -> Result<(String, Option<String>), String> {
    if text.is_empty() || text.starts_with('=') {
        return Err("expected NAME=VALUE, or NAME for a null value".to_string());
    }
    Ok(match text.split_once('=') {
        Some((name, value)) => (name.to_string(), Some(value.to_string())),
        None => (text.to_string(), None),
    })
}

/// How a line becomes a record: what every record shares.
#[derive(Debug, Clone)]
struct LineFormat {
    /// Leaked once at start, so that records name the topic without an allocation each.
    topic: &'static str,
    key_delimiter: KeyDelimiter,
    headers: Vec<(&'static str, Option<Bytes>)>,
    partition: Option<i32>,
}

/// What `-K` asked for.
#[derive(Debug, Clone)]
enum KeyDelimiter {
    /// No `-K` (or an empty one): every line is all value.
    None,
    /// One byte, the common case: found in the same pass over a block as the newlines.
    Byte(u8),
    /// Several bytes: searched for in each line.
    Bytes(Box<memchr::memmem::Finder<'static>>),
}

impl LineFormat {
    fn new(args: &Args) -> LineFormat {
        fn leak(s: &str) -> &'static str {
            Box::leak(s.to_owned().into_boxed_str())
        }
        let key_delimiter = match args.key_delimiter.as_ref().map(|d| d.0.as_slice()) {
            None | Some([]) => KeyDelimiter::None,
            Some(&[byte]) => KeyDelimiter::Byte(byte),
            Some(sep) => {
                KeyDelimiter::Bytes(Box::new(memchr::memmem::Finder::new(sep).into_owned()))
            }
        };
        LineFormat {
            topic: leak(&args.topic),
            key_delimiter,
            headers: args
                .headers
                .iter()
                .map(|(k, v)| (leak(k), v.clone().map(Bytes::from)))
                .collect(),
            // kcat's -1: no partition named.
            partition: args.partition.filter(|p| *p >= 0),
        }
    }

    /// Hands each record of `lines` (newline-separated lines) to `sink` with the bytes of
    /// stdin it took (its newline included); a last line without a newline is a record too,
    /// and an empty `lines` has none. All get `timestamp` as their CreateTime.
    fn for_each_record(
        &self,
        lines: &Bytes,
        timestamp: i64,
        mut sink: impl FnMut(ProducerRecord, usize),
    ) {
        let mut push = |line: Range<usize>, separator: Option<Range<usize>>| {
            let taken = (line.end + 1).min(lines.len()) - line.start;
            sink(self.record(lines, line, separator, timestamp), taken);
        };
        let mut start = 0;
        match &self.key_delimiter {
            // One pass over the block for newlines and separators together; a line's key ends
            // at the first separator after its start.
            &KeyDelimiter::Byte(sep) if sep != b'\n' => {
                let mut separator = None;
                for at in memchr::memchr2_iter(b'\n', sep, lines) {
                    if lines[at] == b'\n' {
                        push(start..at, separator.take());
                        start = at + 1;
                    } else if separator.is_none() {
                        separator = Some(at..at + 1);
                    }
                }
                if start < lines.len() {
                    push(start..lines.len(), separator);
                }
            }
            delimiter => {
                let find = |line: Range<usize>| match delimiter {
                    KeyDelimiter::Bytes(finder) => finder
                        .find(&lines[line.clone()])
                        .map(|at| line.start + at..line.start + at + finder.needle().len()),
                    // A newline as separator never splits a line.
                    KeyDelimiter::Byte(_) | KeyDelimiter::None => None,
                };
                for end in memchr::memchr_iter(b'\n', lines) {
                    push(start..end, find(start..end));
                    start = end + 1;
                }
                if start < lines.len() {
                    push(start..lines.len(), find(start..lines.len()));
                }
            }
        }
    }

    /// The `-H` headers of a record; without any, skips `collect`, which costs more than an
    /// empty `Vec` on the path of every line.
    fn headers(&self) -> Vec<Header> {
        if self.headers.is_empty() {
            return Vec::new();
        }
        self.headers
            .iter()
            .map(|(k, v)| Header {
                key: Cow::Borrowed(*k),
                value: v.clone(),
            })
            .collect()
    }

    /// The record of `lines[line]` (without its newline): the key before `separator`, the
    /// value after it, or all value without one. Key and value are slices of `lines`, sharing
    /// its allocation. Built as one struct literal: `Produce`'s builder methods move the whole
    /// record at every step, which cost more than the rest of this function.
    fn record(
        &self,
        lines: &Bytes,
        line: Range<usize>,
        separator: Option<Range<usize>>,
        timestamp: i64,
    ) -> ProducerRecord {
        let (key, value) = match separator {
            Some(sep) => (
                Some(lines.slice(line.start..sep.start)),
                lines.slice(sep.end..line.end),
            ),
            None => (None, lines.slice(line)),
        };
        ProducerRecord {
            topic: Cow::Borrowed(self.topic),
            partition: self.partition,
            key,
            value: Some(value),
            headers: self.headers(),
            timestamp: Some(timestamp),
        }
    }
}

/// Milliseconds since the epoch, now.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Reader thread → main task.
#[derive(Debug)]
enum Input {
    Lines(Lines),
    /// A line longer than max.request.size, given up on before its end came: it could never
    /// be sent, and carrying it on to its end would hold all of it in memory.
    TooLong {
        /// Number of the line, counted from 0.
        line: u64,
        /// Bytes of it read when it was given up on.
        seen: usize,
        /// max.request.size.
        max: usize,
    },
}

/// The records of consecutive lines, at most [`CHUNK_RECORDS`].
#[derive(Debug)]
struct Lines {
    /// Number of the first line, counted from 0.
    first_line: u64,
    /// Bytes of stdin the lines took, counted against buffer.memory.
    bytes: usize,
    records: Vec<Produce>,
}

impl Lines {
    fn new(first_line: u64) -> Lines {
        Lines {
            first_line,
            bytes: 0,
            records: Vec::with_capacity(CHUNK_RECORDS),
        }
    }
}

/// Reads `input` in blocks of `block_size` and sends their whole lines on, in chunks of
/// [`CHUNK_RECORDS`] records; the part of the last line a block cut is copied to the start
/// of the next block, and a block in which no line ends is read on into rather than copied,
/// so that a long line costs one copy per doubling of its size, not one per block. A line
/// that grows past `max_line` bytes is given up on ([`Input::TooLong`]) and skipped to its
/// end. A block ends early when `ready` says nothing more is waiting after a read that did
/// not fill it, and its lines go on at once, the last chunk short: a slow source (a terminal,
/// `tail -f`) has each line sent as it comes, as kcat sends it, rather than when a megabyte
/// or 512 lines have gathered. Stops at EOF, at a read error (after sending what was read)
/// or when the receiver is gone.
fn read_blocks(
    mut input: impl Read,
    mut ready: impl FnMut() -> bool,
    format: &LineFormat,
    block_size: usize,
    max_line: usize,
    tx: &tokio::sync::mpsc::Sender<Input>,
) -> std::io::Result<()> {
    let mut chunk = Lines::new(0);
    let pool = BlockPool::default();
    // An error means the receiver is gone; the loop below sees that.
    let send = |input: Input| {
        let _ = tx.blocking_send(input);
    };
    let flush = |chunk: &mut Lines| {
        if !chunk.records.is_empty() {
            let next = Lines::new(chunk.first_line + chunk.records.len() as u64);
            send(Input::Lines(std::mem::replace(chunk, next)));
        }
    };
    // After the lines before it, so that a transaction takes the failure in its place.
    let give_up = |chunk: &mut Lines, seen: usize| {
        flush(chunk);
        let line = chunk.first_line;
        send(Input::TooLong {
            line,
            seen,
            max: max_line,
        });
        chunk.first_line = line + 1;
    };
    let mut carry = Bytes::new();
    // The start of a line no block has ended yet, to be read on into.
    let mut open_line: Option<Vec<u8>> = None;
    // Within a line given up on: its bytes go nowhere until its newline.
    let mut skipping = false;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        // The first read of a block may wait on stdin for as long as the source likes: the
        // lines read before it go on now rather than wait with it (or be lost to a signal).
        if !chunk.records.is_empty() && !ready() {
            flush(&mut chunk);
        }
        let mut buf = match open_line.take() {
            Some(buf) => buf,
            None => {
                let mut buf = pool.take();
                buf.reserve(carry.len() + block_size);
                buf.extend_from_slice(&carry);
                carry = Bytes::new();
                buf
            }
        };
        // What `buf` held before this read has no newline.
        let old = buf.len();
        buf.reserve(block_size);
        // `read_to_end` on `take` fills the block (several reads from a pipe) without zeroing
        // it first, and stops at the block's end, at EOF, or once the source has nothing
        // more waiting (`UntilIdle`). On an error, what was read before it is kept and
        // produced, as at EOF, and the error returned after it.
        let mut source = UntilIdle {
            inner: &mut input,
            ready: &mut ready,
            idle: false,
            eof: false,
        };
        let error = (&mut source)
            .take(block_size as u64)
            .read_to_end(&mut buf)
            .err();
        let eof = error.is_some() || source.eof;
        let idle = source.idle;
        let mut start = 0;
        if skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(end) => {
                    skipping = false;
                    start = end + 1;
                }
                None if eof => {
                    flush(&mut chunk);
                    return error.map_or(Ok(()), Err);
                }
                None => {
                    buf.clear();
                    open_line = Some(buf);
                    continue;
                }
            }
        }
        let last_newline = memchr::memrchr(b'\n', &buf[old..]).map(|at| old + at);
        if last_newline.is_none() && !eof {
            // No line ended: all of `buf` is the start of one line. Given up on, it is let
            // go, grown as it is; the skipping reads a block of the pool at a time.
            if buf.len() > max_line {
                give_up(&mut chunk, buf.len());
                skipping = true;
            } else {
                open_line = Some(buf);
            }
            if idle {
                flush(&mut chunk);
            }
            continue;
        }
        let mut lines = Bytes::from_owner(Block {
            data: buf,
            pool: pool.clone(),
        })
        .slice(start..);
        carry = match last_newline {
            _ if eof => Bytes::new(),
            Some(last) => lines.split_off(last + 1 - start),
            None => std::mem::take(&mut lines),
        };
        // One clock read per block: a line's CreateTime is when its block was read. One
        // trace-context read per block too (see `TraceContext`).
        let timestamp = now_millis();
        let context = TraceContext::current();
        for segment in segments(&lines) {
            format.for_each_record(&segment, timestamp, |record, taken| {
                chunk
                    .records
                    .push(Produce::from_record_in(record, &context));
                chunk.bytes += taken;
                if chunk.records.len() == CHUNK_RECORDS {
                    flush(&mut chunk);
                }
            });
        }
        if carry.len() > max_line {
            give_up(&mut chunk, carry.len());
            carry = Bytes::new();
            skipping = true;
        }
        if eof {
            flush(&mut chunk);
            return error.map_or(Ok(()), Err);
        }
        if idle {
            flush(&mut chunk);
        }
    }
}

/// A reader that ends (reads 0 bytes) once a read did not fill the buffer it was given and
/// `ready` then says nothing more is waiting: the reader has caught up with a slower source.
/// A source that keeps up (a file, a fast pipe) still fills whole blocks.
struct UntilIdle<'a, R, F> {
    inner: &'a mut R,
    ready: &'a mut F,
    /// The source had nothing more waiting.
    idle: bool,
    /// The source ended.
    eof: bool,
}

impl<R: Read, F: FnMut() -> bool> Read for UntilIdle<'_, R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.idle || self.eof {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        } else if n < buf.len() && !(self.ready)() {
            self.idle = true;
        }
        Ok(n)
    }
}

/// Whether stdin has input waiting now (a poll that does not wait). On an error it says yes:
/// the next read then waits for the input, as a plain blocking read does.
fn stdin_ready() -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).map_or(true, |n| n > 0)
}

/// `lines` cut after every [`CHUNK_RECORDS`]th newline, each piece with a reference count of
/// its own. A record's key and value are slices of its piece: slicing takes a reference on
/// this thread and the router drops it on its own. Sliced from the whole block, every line
/// would touch the block's one count from both threads at once, and that cache line's trips
/// between the cores cost more (13% of the process's CPU, measured with perf) than reading
/// and splitting the lines. A piece holds the lines of about one chunk, which the reader is
/// done with before the router sees them.
fn segments(lines: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut cuts = memchr::memchr_iter(b'\n', lines)
        .skip(CHUNK_RECORDS - 1)
        .step_by(CHUNK_RECORDS)
        .map(|at| at + 1);
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= lines.len() {
            return None;
        }
        let end = cuts.next().unwrap_or(lines.len());
        let piece = Bytes::from_owner(Piece(lines.slice(start..end)));
        start = end;
        Some(piece)
    })
}

/// Blocks of stdin whose records are all gone, for the reader to fill again: a fresh 1 MiB
/// block is fresh memory, and the kernel's copy into it faulted in every page (a quarter of
/// the process's page faults).
#[derive(Debug, Clone, Default)]
struct BlockPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// Blocks kept at most; more are outstanding only while the producer is behind.
const SPARE_BLOCKS: usize = 8;

/// The largest block kept: one grown for a long line (up to max.request.size) is let go, not
/// held for the rest of the run.
const SPARE_BLOCK_CAPACITY: usize = 4 * BLOCK_SIZE;

impl BlockPool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }
}

/// A block read from stdin, as the owner of the `Bytes` its lines are sliced from; goes back
/// to its pool when the last of them is dropped.
#[derive(Debug)]
struct Block {
    data: Vec<u8>,
    pool: BlockPool,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        let mut spare = self.pool.0.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_BLOCKS && data.capacity() <= SPARE_BLOCK_CAPACITY {
            spare.push(data);
        }
    }
}

/// A piece of a block, as the owner of its slices. Aligned so that its reference count, which
/// `Bytes::from_owner` keeps beside it, has cache lines of its own: pieces are allocated one
/// after another, and the count of the piece the router is dropping would otherwise share a
/// line with the count of the one the reader is slicing.
#[repr(align(128))]
struct Piece(Bytes);

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The answer to one chunk of lines: an outcome per record in line order, or actix's error
/// for all of them.
#[derive(Debug)]
struct Answer {
    first_line: u64,
    bytes: usize,
    records: u64,
    outcomes: Result<BatchTally, MailboxError>,
}

/// Sends a chunk's records as one `ProduceBatchTally`; the future waits for all their
/// outcomes. The message goes into the router's mailbox now, not when the future is first
/// polled: chunks reach the router in line order, and a transaction's records go out while
/// the run waits for more input (only a full mailbox leaves the message to the first poll).
fn produce_lines(router: &Addr<Router>, lines: Lines) -> impl Future<Output = Answer> + 'static {
    let records = lines.records.len() as u64;
    let request = router.send(ProduceBatchTally(lines.records));
    let (first_line, bytes) = (lines.first_line, lines.bytes);
    async move {
        Answer {
            first_line,
            bytes,
            records,
            outcomes: request.await,
        }
    }
}

/// The chunks sent and not yet answered. Their bytes bound the reading (buffer.memory); their
/// records are what a run cut short by a second signal leaves without an outcome.
#[derive(Default)]
struct InFlight {
    answers: FuturesUnordered<LocalBoxFuture<'static, Answer>>,
    bytes: usize,
    records: u64,
}

impl InFlight {
    fn send(&mut self, router: &Addr<Router>, lines: Lines) {
        self.bytes += lines.bytes;
        self.records += lines.records.len() as u64;
        self.answers.push(Box::pin(produce_lines(router, lines)));
    }

    /// The next answer. Cancel-safe, as a `select!` branch must be: the counts change only
    /// once an answer is taken.
    async fn next(&mut self) -> Option<Answer> {
        let answer = self.answers.next().await?;
        self.bytes -= answer.bytes;
        self.records -= answer.records;
        Some(answer)
    }

    fn len(&self) -> usize {
        self.answers.len()
    }

    fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// What the summary counts.
#[derive(Debug, Default)]
struct Tally {
    records: u64,
    delivered: u64,
    failed: u64,
}

impl Tally {
    /// Counts the outcomes of a chunk, one stderr line per failed record.
    fn answer(&mut self, answer: Answer) {
        match answer.outcomes {
            Ok(tally) => {
                self.records += tally.delivered as u64;
                self.delivered += tally.delivered as u64;
                for (i, e) in tally.failed {
                    self.record(answer.first_line + i as u64, Some(e.to_string()));
                }
            }
            // actix's error: the router's mailbox closed, the producer stopped.
            Err(e) => {
                let e = e.to_string();
                for i in 0..answer.records {
                    self.record(answer.first_line + i, Some(e.clone()));
                }
            }
        }
    }

    /// A line never sent (see [`Input::TooLong`]): failed as a record the producer refused
    /// would be, so that the summary and a transaction count it alike.
    fn too_long(&mut self, line: u64, seen: usize, max: usize) {
        let error = format!(
            "longer than max.request.size ({max} bytes): {seen} bytes of it came without its \
             end; not sent, the rest of it skipped"
        );
        self.record(line, Some(error));
    }

    /// Records whose answers never came, the run having stopped waiting: their outcome is
    /// unknown, and only delivered records count as delivered.
    fn unanswered(&mut self, records: u64) {
        if records > 0 {
            self.records += records;
            self.failed += records;
            eprintln!(
                "console_producer: {records} record(s) without an outcome when the run ended"
            );
        }
    }

    fn record(&mut self, line: u64, error: Option<String>) {
        self.records += 1;
        match error {
            None => self.delivered += 1,
            Some(e) => {
                self.failed += 1;
                eprintln!("line {} failed: {e}", line + 1);
            }
        }
    }
}

/// SIGINT and SIGTERM. Once caught they no longer end the process as the default action
/// does, losing the records read and the summary: the run decides what each one does (see
/// the module docs).
#[derive(Debug)]
struct Interrupts {
    int: Option<Signal>,
    term: Option<Signal>,
    /// Signals received so far.
    count: u32,
}

impl Interrupts {
    /// Catches both. One that cannot be caught keeps its default action: the run can still
    /// be stopped, as before.
    fn new() -> Interrupts {
        let catch = |kind: SignalKind, name: &str| {
            tokio::signal::unix::signal(kind)
                .map_err(|e| eprintln!("console_producer: cannot catch {name}: {e}"))
                .ok()
        };
        Interrupts {
            int: catch(SignalKind::interrupt(), "SIGINT"),
            term: catch(SignalKind::terminate(), "SIGTERM"),
            count: 0,
        }
    }

    /// The next signal; returns how many came so far. Cancel-safe.
    async fn recv(&mut self) -> u32 {
        async fn one(signal: &mut Option<Signal>) {
            if let Some(s) = signal {
                if s.recv().await.is_some() {
                    return;
                }
            }
            std::future::pending().await
        }
        tokio::select! {
            _ = one(&mut self.int) => {}
            _ = one(&mut self.term) => {}
        }
        self.count += 1;
        self.count
    }
}

/// How a run went, for [`finish`].
#[derive(Default)]
struct Run {
    tally: Tally,
    /// Empty, unless a signal stopped the wait for answers.
    in_flight: InFlight,
    /// No more input comes: the reader ended (EOF, a read error), or a signal closed the
    /// channel and the chunks already in it were taken.
    input_done: bool,
}

/// Counts answers until at most `keep` chunks are in flight; false if a signal came first.
async fn settle(
    in_flight: &mut InFlight,
    tally: &mut Tally,
    keep: usize,
    interrupts: &mut Interrupts,
) -> bool {
    while in_flight.len() > keep {
        tokio::select! {
            biased;
            Some(answer) = in_flight.next() => tally.answer(answer),
            _ = interrupts.recv() => return false,
        }
    }
    true
}

/// The producer's config: `-b`, then every `-X` in order (later settings win), and the
/// console's `batch.size` unless `-X` set one. The error is the message to print.
fn config(args: &Args) -> Result<ProducerConfig, String> {
    let pairs = || {
        let brokers = args.brokers.iter();
        brokers
            .map(|b| ("bootstrap.servers".to_string(), b.clone()))
            .chain(args.config.iter().cloned())
    };
    let build = || {
        if args.config.iter().any(|(k, _)| k == "batch.size") {
            return ProducerConfig::from_pairs(pairs());
        }
        let with_batch_size = |n: usize| {
            ProducerConfig::from_pairs(
                std::iter::once(("batch.size".to_string(), n.to_string())).chain(pairs()),
            )
        };
        // First with a batch.size any buffer.memory holds, to read buffer.memory.
        let buffer_memory = with_batch_size(1)?.buffer_memory;
        with_batch_size((buffer_memory / BATCHES_PER_BUFFER).clamp(1, BATCH_SIZE))
    };
    let config = build().map_err(|e| match e {
        ConfigError::Missing { key } if key == "bootstrap.servers" => {
            "no brokers: give -b HOST:PORT or -X bootstrap.servers=HOST:PORT".to_string()
        }
        // ConfigError's message names the offending key.
        e => format!("invalid configuration: {e}"),
    })?;
    // Without a transaction there is nothing to commit every N lines: running on would
    // silently drop the atomicity the flag asked for.
    if args.txn_records.is_some() && config.transactional_id.is_none() {
        return Err("--txn-records needs -X transactional.id=ID".to_string());
    }
    Ok(config)
}

#[actix_rt::main]
async fn main() -> ExitCode {
    // clap exits with 2 on bad arguments, like a bad config below.
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }

    // The router on this thread, whose task only relays the reader thread's chunks to it
    // and counts the answers (see `ProducerBuilder::arbiter`).
    let start = |c| {
        Producer::builder(c)
            .arbiter(actix::Arbiter::current())
            .start()
            .map_err(|e| format!("invalid configuration: {e}"))
    };
    let producer = match config(&args).and_then(start) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("console_producer: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the first line is read: from then on a signal must not lose it.
    let mut interrupts = Interrupts::new();
    let started = Instant::now();
    let max_outstanding = producer.config().buffer_memory;
    let max_line = producer.config().max_request_size;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Input>(READ_AHEAD);
    let format = LineFormat::new(&args);
    let reader = std::thread::spawn(move || {
        read_blocks(
            std::io::stdin().lock(),
            stdin_ready,
            &format,
            BLOCK_SIZE,
            max_line,
            &tx,
        )
    });

    let router = producer.router().clone();
    let mut run = Run::default();
    if producer.config().transactional_id.is_some() {
        let transactions = run_transactions(
            &producer,
            &mut rx,
            args.txn_records,
            &mut run,
            &mut interrupts,
        )
        .await;
        // Whatever input is left stays unread: let the reader end.
        drop(rx);
        return finish(
            reader,
            producer,
            run,
            Some(transactions),
            started,
            &mut interrupts,
        )
        .await;
    }
    loop {
        if run.input_done && run.in_flight.is_empty() {
            break;
        }
        let room = run.in_flight.is_empty() || run.in_flight.bytes < max_outstanding;
        tokio::select! {
            biased;
            Some(answer) = run.in_flight.next() => run.tally.answer(answer),
            n = interrupts.recv() => {
                if n > 1 {
                    eprintln!("console_producer: interrupted again: closing without waiting");
                    break;
                }
                eprintln!(
                    "console_producer: interrupted: reading no more of stdin, waiting for the \
                     outcomes of the records read (signal again to stop waiting)"
                );
                // The chunks the reader already handed on are still taken (below), then
                // `recv` ends.
                rx.close();
            }
            input = rx.recv(), if !run.input_done && room => match input {
                Some(Input::Lines(lines)) => run.in_flight.send(&router, lines),
                Some(Input::TooLong { line, seen, max }) => run.tally.too_long(line, seen, max),
                None => run.input_done = true,
            },
        }
    }

    drop(rx);
    finish(reader, producer, run, None, started, &mut interrupts).await
}

/// How long, once the producer is closed, the answers a second signal stopped waiting for
/// may still take: close fails every record it holds, so they are due at once.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Joins the reader, closes the producer, prints the summary and picks the exit status.
async fn finish(
    reader: std::thread::JoinHandle<std::io::Result<()>>,
    producer: Producer,
    run: Run,
    transactions: Option<Transactions>,
    started: Instant,
    interrupts: &mut Interrupts,
) -> ExitCode {
    let Run {
        mut tally,
        mut in_flight,
        input_done,
    } = run;
    // A run that stopped before EOF (a signal, a failed transaction) may leave the reader
    // waiting on stdin for good, if the source sends nothing more and never closes (a
    // terminal, `tail -f`): the run ends without it, and the process takes the thread down.
    let cut_short = interrupts.count > 0 || !input_done;
    let read_error = if cut_short && !reader.is_finished() {
        None
    } else {
        match reader.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("stdin reader panicked".to_string()),
        }
    };
    if let Some(e) = &read_error {
        eprintln!("console_producer: reading stdin failed: {e}");
    }
    // Every outcome is in, unless a second signal stopped the wait: then close(0) fails what
    // is left. Either way close stops the producer's actors; a signal during it stops the
    // wait for that too.
    let timeout = if interrupts.count > 1 {
        Duration::ZERO
    } else {
        CLOSE_TIMEOUT
    };
    let closed = tokio::select! {
        _ = producer.close(timeout) => true,
        _ = interrupts.recv() => {
            eprintln!("console_producer: interrupted: not waiting for the producer to close");
            false
        }
    };
    let grace = if closed { ANSWER_GRACE } else { Duration::ZERO };
    let _ = tokio::time::timeout(grace, async {
        while let Some(answer) = in_flight.next().await {
            tally.answer(answer);
        }
    })
    .await;
    tally.unanswered(in_flight.records);

    // Written by hand to keep the keys in this order for scripts that match the line.
    let Tally {
        records,
        delivered,
        failed,
    } = tally;
    let elapsed_ms = started.elapsed().as_millis();
    let txn = match &transactions {
        Some(t) => format!(
            r#","committed":{},"transactions":{}"#,
            t.committed_records, t.committed
        ),
        None => String::new(),
    };
    eprintln!(
        r#"{{"records":{records},"delivered":{delivered},"failed":{failed},"elapsed_ms":{elapsed_ms}{txn}}}"#
    );
    let txn_ok = transactions.is_none_or(|t| t.error.is_none());
    if failed == 0 && read_error.is_none() && txn_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How the transactions of a transactional run went.
#[derive(Debug, Default)]
struct Transactions {
    /// Transactions committed.
    committed: u64,
    /// Records in them.
    committed_records: u64,
    /// The error that ended the run, if one did (already reported).
    error: Option<String>,
}

/// The open transaction.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Records sent in it so far.
    sent: u64,
    /// Failed records counted when it began: one counted since, wherever it was counted
    /// (while waiting for room to send, a line too long), dooms it.
    failed_before: u64,
}

/// The transactional run: lines go in transactions of `per_txn` records (all of the input
/// without it), each committed once its records have their outcomes; the first error, or a
/// signal, aborts the open transaction and ends the run.
async fn run_transactions(
    producer: &Producer,
    rx: &mut tokio::sync::mpsc::Receiver<Input>,
    per_txn: Option<u64>,
    run: &mut Run,
    interrupts: &mut Interrupts,
) -> Transactions {
    let mut t = Transactions::default();
    let init = tokio::select! {
        init = producer.init_transactions() => init.map_err(|e| e.to_string()),
        _ = interrupts.recv() => Err("interrupted".to_string()),
    };
    if let Err(e) = init {
        report(&mut t, "init_transactions", &e);
        return t;
    }
    let router = producer.router().clone();
    let mut open: Option<Open> = None;
    loop {
        let input = tokio::select! {
            biased;
            Some(answer) = run.in_flight.next() => {
                run.tally.answer(answer);
                match open {
                    // A failed record dooms the transaction: abort it now, not when more
                    // input comes (a slow source may send none for long).
                    Some(o) if run.tally.failed > o.failed_before => {
                        end_transaction(producer, run, &mut t, o, interrupts).await;
                        return t;
                    }
                    _ => continue,
                }
            }
            _ = interrupts.recv() => {
                interrupt(producer, open, run, &mut t, interrupts).await;
                return t;
            }
            input = rx.recv() => input,
        };
        let Some(input) = input else {
            break;
        };
        let Lines {
            mut first_line,
            mut records,
            ..
        } = match input {
            Input::Lines(lines) => lines,
            Input::TooLong { line, seen, max } => {
                run.tally.too_long(line, seen, max);
                // The line dooms the open transaction, or the next one, which then need
                // not begin.
                if let Some(o) = open {
                    end_transaction(producer, run, &mut t, o, interrupts).await;
                }
                return t;
            }
        };
        while !records.is_empty() {
            let o = match open {
                Some(o) => o,
                None => {
                    if let Err(e) = producer.begin_transaction().await {
                        report(&mut t, "begin_transaction", &e.to_string());
                        return t;
                    }
                    Open {
                        sent: 0,
                        failed_before: run.tally.failed,
                    }
                }
            };
            let take = per_txn.map_or(records.len(), |n| {
                (n - o.sent).min(records.len() as u64) as usize
            });
            let rest = records.split_off(take);
            let chunk = Lines {
                first_line,
                bytes: 0,
                records: std::mem::replace(&mut records, rest),
            };
            first_line += take as u64;
            run.in_flight.send(&router, chunk);
            let o = Open {
                sent: o.sent + take as u64,
                ..o
            };
            open = Some(o);
            if !settle(
                &mut run.in_flight,
                &mut run.tally,
                READ_AHEAD - 1,
                interrupts,
            )
            .await
            {
                interrupt(producer, open, run, &mut t, interrupts).await;
                return t;
            }
            // A failed record dooms the transaction: abort now rather than send the rest.
            if per_txn == Some(o.sent) || run.tally.failed > o.failed_before {
                if !end_transaction(producer, run, &mut t, o, interrupts).await {
                    return t;
                }
                open = None;
            }
        }
    }
    run.input_done = true;
    if let Some(o) = open {
        end_transaction(producer, run, &mut t, o, interrupts).await;
    }
    t
}

/// Waits for the outcomes of the open transaction's records, then commits it; a failed
/// record or a refused commit aborts it instead, and so does a signal. Returns whether it
/// was committed.
async fn end_transaction(
    producer: &Producer,
    run: &mut Run,
    t: &mut Transactions,
    open: Open,
    interrupts: &mut Interrupts,
) -> bool {
    if !settle(&mut run.in_flight, &mut run.tally, 0, interrupts).await {
        interrupt(producer, Some(open), run, t, interrupts).await;
        return false;
    }
    let failed = run.tally.failed - open.failed_before;
    let outcome: TransactionResult = if failed > 0 {
        Err(herald::TransactionError::Abortable(
            format!("{failed} record(s) of the transaction failed").into(),
        ))
    } else {
        producer.commit_transaction().await
    };
    match outcome {
        Ok(()) => {
            t.committed += 1;
            t.committed_records += open.sent;
            true
        }
        Err(e) => {
            report(t, "commit_transaction", &e.to_string());
            // A commit that timed out may have reached the coordinator: it is not aborted
            // (the producer refuses that), and the run ends with its outcome unknown.
            if e.class() == herald::ErrorClass::Abortable {
                match producer.abort_transaction().await {
                    Ok(()) => eprintln!("console_producer: transaction aborted"),
                    Err(abort) => eprintln!("console_producer: abort_transaction failed: {abort}"),
                }
            }
            false
        }
    }
}

/// The first signal in a transactional run. The open transaction is aborted, as kcat
/// aborts it: committing it would make part of the input visible as if it were all.
async fn interrupt(
    producer: &Producer,
    open: Option<Open>,
    run: &mut Run,
    t: &mut Transactions,
    interrupts: &mut Interrupts,
) {
    if open.is_none() {
        // Every line read is in a committed transaction: nothing is lost.
        eprintln!("console_producer: interrupted: reading no more of stdin");
        return;
    }
    eprintln!(
        "console_producer: interrupted: aborting the open transaction (signal again to stop \
         waiting)"
    );
    t.error = Some("interrupted".to_string());
    let aborted = tokio::select! {
        aborted = producer.abort_transaction() => aborted,
        _ = interrupts.recv() => {
            eprintln!(
                "console_producer: interrupted again: the transaction is left to its \
                 coordinator, which aborts it after transaction.timeout.ms"
            );
            return;
        }
    };
    match aborted {
        Ok(()) => eprintln!("console_producer: transaction aborted"),
        Err(e) => eprintln!("console_producer: abort_transaction failed: {e}"),
    }
    // The abort settled the transaction's records (those not yet sent failed): their answers
    // are due, for the summary.
    settle(&mut run.in_flight, &mut run.tally, 0, interrupts).await;
}

fn report(t: &mut Transactions, operation: &str, error: &str) {
    eprintln!("console_producer: {operation} failed: {error}");
    t.error = Some(error.to_string());
}
