//! Benchmark payloads shared by the `bench` and `batch_bench` examples.

/// Text-like bytes, compressible about as much as typical JSON or log lines are (2-4x).
pub fn payload_template(len: usize) -> Vec<u8> {
    const WORDS: [&str; 24] = [
        "order",
        "user",
        "id",
        "\"status\":",
        "shipped",
        "pending",
        "amount",
        "42.17",
        "EUR",
        "{\"ts\":",
        "1700000000123,",
        "\"region\":",
        "eu-west",
        "us-east",
        "sku-",
        "9f3a",
        "b7",
        "null",
        "true",
        "false",
        "warehouse",
        "\"qty\":",
        "3,",
        "}",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize].as_bytes());
        out.push(if state & 0x300 == 0 {
            b'0' + (state >> 20) as u8 % 10
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}
