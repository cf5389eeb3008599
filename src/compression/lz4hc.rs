//! LZ4 with a hash-chain match search (LZ4 HC's method), for a `compression.lz4.level`
//! other than Java's default.
//!
//! Java's producer (lz4-java) compresses with LZ4's fast compressor at the default level 9,
//! and with LZ4 HC at any other level, 1 to 17; a higher level searches more candidates for
//! each match. The output is an ordinary LZ4 frame (the header Java writes: independent
//! 64 KiB blocks, no checksums), so every reader decodes it. Ours takes the longest match
//! among the candidates it searches, with one step of lazy matching (a longer match one byte
//! on wins), without HC's optimal parsing, so its output is not lz4's byte for byte, and is
//! larger at the highest levels.

use bytes::{BufMut, BytesMut};

const MIN_MATCH: usize = 4;
/// A block ends with at least this many literals.
const LAST_LITERALS: usize = 5;
/// No match starts within this many bytes of a block's end.
const MF_LIMIT: usize = 12;
const MAX_DISTANCE: usize = 65_535;
const BLOCK: usize = 64 * 1024;
const NONE: u32 = u32::MAX;

/// Magic, FLG (version 1, independent blocks), BD (64 KiB blocks) and the descriptor's
/// checksum byte: the header lz4-java writes for Kafka (KIP-57).
pub(crate) const HEADER: [u8; 7] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];

/// Candidates searched per position at `level`: 2 at level 2, doubling per level as LZ4 HC's
/// hash-chain levels do (256 at 9), up to 4,096.
fn attempts(level: i32) -> usize {
    1 << (level.clamp(2, 13) - 1)
}

/// Appends `input` as an LZ4 frame compressed at `level` (1-17) to `out`.
pub(crate) fn compress_frame(input: &[u8], level: i32, out: &mut BytesMut) {
    out.extend_from_slice(&HEADER);
    let attempts = attempts(level);
    let mut block = Vec::new();
    for chunk in input.chunks(BLOCK) {
        block.clear();
        compress_block(chunk, attempts, &mut block);
        if block.len() >= chunk.len() {
            // Incompressible: stored as is, flagged by the size's high bit.
            out.put_u32_le(chunk.len() as u32 | 0x8000_0000);
            out.extend_from_slice(chunk);
        } else {
            out.put_u32_le(block.len() as u32);
            out.extend_from_slice(&block);
        }
    }
    out.put_u32_le(0);
}

fn read_u32(src: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(src[at..at + 4].try_into().expect("four bytes"))
}

/// One LZ4 block of `src` (at most 64 KiB, so every position is within reach of every
/// other, and positions index the chain directly).
fn compress_block(src: &[u8], attempts: usize, out: &mut Vec<u8>) {
    let n = src.len();
    let mut anchor = 0;
    if n > MF_LIMIT {
        let limit = n - MF_LIMIT;
        let mut chains = Chains::new(src, attempts);
        // The search at `ip` when the lazy step already made it.
        let mut searched = None;
        let mut ip = 0;
        while ip < limit {
            let (len, distance) = searched.take().unwrap_or_else(|| chains.longest_match(ip));
            if len < MIN_MATCH {
                ip += 1;
                continue;
            }
            // Lazy: a longer match one byte on is worth a literal.
            if ip + 1 < limit {
                let next = chains.longest_match(ip + 1);
                if next.0 > len {
                    ip += 1;
                    searched = Some(next);
                    continue;
                }
            }
            sequence(out, &src[anchor..ip], Some((distance as u16, len)));
            ip += len;
            anchor = ip;
        }
    }
    sequence(out, &src[anchor..], None);
}

/// The hash chains of one block: every position before the one searched is inserted, so a
/// search finds the nearest earlier positions with the same 4-byte hash first.
struct Chains<'a> {
    src: &'a [u8],
    hash_log: u32,
    /// The latest position of each hash.
    head: Vec<u32>,
    /// chain[p]: how far back the previous position with p's hash is (0: none).
    chain: Vec<u16>,
    /// Positions below this are inserted.
    inserted: usize,
    attempts: usize,
    /// Matches end here at the latest (the block's last literals follow).
    end: usize,
}

impl<'a> Chains<'a> {
    fn new(src: &'a [u8], attempts: usize) -> Chains<'a> {
        let n = src.len();
        let hash_log = (usize::BITS - (n - 1).leading_zeros()).clamp(8, 16);
        Chains {
            src,
            hash_log,
            head: vec![NONE; 1 << hash_log],
            chain: vec![0; n],
            inserted: 0,
            attempts,
            end: n - LAST_LITERALS,
        }
    }

    fn hash(&self, p: usize) -> usize {
        (read_u32(self.src, p).wrapping_mul(2_654_435_761) >> (32 - self.hash_log)) as usize
    }

    /// The longest match for `ip` among up to `attempts` earlier positions with its hash, not
    /// reaching past `end`: (length, distance); length 0 if none.
    fn longest_match(&mut self, ip: usize) -> (usize, usize) {
        while self.inserted < ip {
            let p = self.inserted;
            let h = self.hash(p);
            let prev = self.head[h];
            if prev != NONE && p - prev as usize <= MAX_DISTANCE {
                self.chain[p] = (p - prev as usize) as u16;
            }
            self.head[h] = p as u32;
            self.inserted += 1;
        }
        let src = self.src;
        let (mut best, mut distance) = (0, 0);
        let mut candidate = self.head[self.hash(ip)];
        for _ in 0..self.attempts {
            if candidate == NONE {
                break;
            }
            let c = candidate as usize;
            if ip - c > MAX_DISTANCE {
                break;
            }
            // Only a candidate that could beat the best is measured.
            if ip + best < self.end && src[c + best] == src[ip + best] {
                let len = src[c..]
                    .iter()
                    .zip(&src[ip..self.end])
                    .take_while(|(a, b)| a == b)
                    .count();
                if len > best {
                    best = len;
                    distance = ip - c;
                }
            }
            match self.chain[c] {
                0 => break,
                back => candidate = (c - back as usize) as u32,
            }
        }
        (best, distance)
    }
}

/// One sequence: a token, the literals, and the match (`None` for a block's last literals).
fn sequence(out: &mut Vec<u8>, literals: &[u8], matched: Option<(u16, usize)>) {
    let lit = literals.len();
    let ml = matched.map_or(0, |(_, len)| len - MIN_MATCH);
    out.push(((lit.min(15) as u8) << 4) | ml.min(15) as u8);
    if lit >= 15 {
        length(out, lit - 15);
    }
    out.extend_from_slice(literals);
    if let Some((offset, _)) = matched {
        out.extend_from_slice(&offset.to_le_bytes());
        if ml >= 15 {
            length(out, ml - 15);
        }
    }
}

fn length(out: &mut Vec<u8>, mut n: usize) {
    while n >= 255 {
        out.push(255);
        n -= 255;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(frame)
            .read_to_end(&mut out)
            .expect("a valid LZ4 frame");
        out
    }

    fn frame(input: &[u8], level: i32) -> BytesMut {
        let mut out = BytesMut::new();
        compress_frame(input, level, &mut out);
        check_end_rules(&out);
        out
    }

    /// The block format's end rules, which liblz4 (librdkafka) and lz4-java (the broker)
    /// enforce and lz4_flex's decoder does not: a compressed block ends with at least 5
    /// literals, and its last match starts at least 12 bytes before the block's end.
    fn check_end_rules(frame: &[u8]) {
        let mut at = HEADER.len();
        loop {
            let size = u32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
            at += 4;
            if size == 0 {
                return;
            }
            let stored = size & 0x8000_0000 != 0;
            let len = (size & 0x7fff_ffff) as usize;
            if !stored {
                let block = &frame[at..at + len];
                let (mut i, mut produced, mut last_match_start) = (0, 0usize, None);
                let read_len = |i: &mut usize, mut n: usize| loop {
                    let b = block[*i];
                    *i += 1;
                    n += b as usize;
                    if b != 255 {
                        return n;
                    }
                };
                let out_len = loop {
                    let token = block[i];
                    i += 1;
                    let mut lit = (token >> 4) as usize;
                    if lit == 15 {
                        lit = read_len(&mut i, lit);
                    }
                    i += lit;
                    produced += lit;
                    if i == block.len() {
                        assert!(
                            lit >= 5 || last_match_start.is_none(),
                            "{lit} last literals"
                        );
                        break produced;
                    }
                    i += 2;
                    let mut ml = (token & 15) as usize;
                    if ml == 15 {
                        ml = read_len(&mut i, ml);
                    }
                    last_match_start = Some(produced);
                    produced += ml + MIN_MATCH;
                };
                if let Some(start) = last_match_start {
                    assert!(
                        start + MF_LIMIT <= out_len,
                        "a match at {start} of {out_len}"
                    );
                }
            }
            at += len;
        }
    }

    /// Text-like records: JSON with repeated field names and varying values.
    fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!(
                    r#"{{"id":{i},"user":"user-{}","event":"page_view","path":"/items/{}","ms":{}}}"#,
                    i % 97,
                    (i * 7919) % 1000,
                    1_700_000_000_000u64 + i as u64 * 13
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn frames_decode_to_their_input_at_every_level() {
        let mut rng = fastrand::Rng::with_seed(7);
        let random: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
        let runs: Vec<u8> = (0..150_000u32).map(|i| (i / 300 % 7) as u8).collect();
        let short_alphabet: Vec<u8> = (0..70_000).map(|_| b"ab"[rng.usize(..2)]).collect();
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"x".to_vec(),
            b"abcdabcdabcd".to_vec(),
            b"abcdabcdabcdabcdabcdabcd".to_vec(),
            vec![0; BLOCK],
            vec![0; BLOCK + 1],
            records(3_000),
            random,
            runs,
            short_alphabet,
        ];
        for level in [1, 2, 4, 8, 10, 12, 17] {
            for input in &inputs {
                assert_eq!(
                    decode(&frame(input, level)),
                    *input,
                    "level {level}, {} bytes",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn random_inputs_round_trip() {
        // Mixtures of copies and noise, so that matches overlap, reach back far and end
        // near a block's end.
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..200 {
            let len = rng.usize(0..140_000);
            let mut input = Vec::with_capacity(len);
            while input.len() < len {
                if input.len() > 8 && rng.bool() {
                    let from = rng.usize(..input.len());
                    let n = rng.usize(1..300).min(len - input.len());
                    for k in 0..n {
                        input.push(input[from + k % (input.len() - from)]);
                    }
                } else {
                    let n = rng.usize(1..40).min(len - input.len());
                    input.extend((0..n).map(|_| rng.u8(..4)));
                }
            }
            let level = rng.i32(1..=17);
            assert_eq!(decode(&frame(&input, level)), input, "level {level}");
        }
    }

    #[test]
    fn the_header_is_the_one_java_and_the_fast_compressor_write() {
        let mut fast = BytesMut::new();
        crate::compression::compress(
            crate::compression::Compression::Lz4,
            None,
            b"abc",
            &mut fast,
        )
        .unwrap();
        assert_eq!(&fast[..7], &HEADER);
        // Incompressible input is stored, flagged by the size's high bit.
        let mut rng = fastrand::Rng::with_seed(1);
        let random: Vec<u8> = (0..1000).map(|_| rng.u8(..)).collect();
        let f = frame(&random, 4);
        assert_eq!(&f[7..11], &(1000u32 | 0x8000_0000).to_le_bytes());
    }

    #[test]
    fn higher_levels_compress_text_better_than_the_fast_compressor() {
        let input = records(2_000);
        let mut fast = BytesMut::new();
        crate::compression::compress(
            crate::compression::Compression::Lz4,
            None,
            &input,
            &mut fast,
        )
        .unwrap();
        let low = frame(&input, 1).len();
        let high = frame(&input, 12).len();
        assert!(high < fast.len(), "level 12 {high} vs fast {}", fast.len());
        assert!(high < low, "level 12 {high} vs level 1 {low}");
    }
}
