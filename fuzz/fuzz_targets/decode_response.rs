//! Fuzzes the bounded response decoders (`herald::protocol::responses`).
//!
//! The first byte picks one (API, version) pair among every pair the decoders support; the
//! rest is the response body. The decoders must never panic, and never allocate more than the
//! input can justify (run with `-rss_limit_mb` so an unbounded allocation fails the run).
//! Whatever they accept must decode identically with extra trailing bytes, which the protocol
//! allows and ignores.
#![no_main]

use herald::protocol::responses::{
    decode_api_versions_response, decode_init_producer_id_response, decode_metadata_response,
    decode_produce_response, decode_response_header,
};
use herald::ProtocolError;
use libfuzzer_sys::fuzz_target;

/// Decodes `body`, and if it is accepted, checks that trailing bytes change nothing.
fn check<T: PartialEq + std::fmt::Debug>(
    body: &[u8],
    version: i16,
    decode: fn(&[u8], i16) -> Result<T, ProtocolError>,
) {
    if let Ok(value) = decode(body, version) {
        let mut longer = body.to_vec();
        longer.extend_from_slice(&[0xff, 0x00, 0x80]);
        let again = decode(&longer, version).expect("accepted body rejected with trailing bytes");
        assert_eq!(value, again);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // (api, min version, max version), in the order the selector walks them.
    const APIS: [(u8, i16, i16); 5] = [(0, 0, 1), (1, 0, 4), (2, 0, 13), (3, 3, 13), (4, 0, 6)];
    let pairs = APIS
        .iter()
        .flat_map(|&(api, lo, hi)| (lo..=hi).map(move |v| (api, v)));
    let count = pairs.clone().count();
    let Some((api, version)) = pairs.clone().nth(usize::from(selector) % count) else {
        return;
    };
    match api {
        0 => {
            if let Ok((_, len)) = decode_response_header(body, version) {
                assert!(len <= body.len());
            }
        }
        1 => check(body, version, decode_api_versions_response),
        2 => check(body, version, decode_metadata_response),
        3 => check(body, version, decode_produce_response),
        _ => check(body, version, decode_init_producer_id_response),
    }
});
