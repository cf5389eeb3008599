//! Fuzzes the SASL clients with arbitrary broker answers, and the `sasl.jaas.config` parser
//! with arbitrary text (`herald::sasl`).
//!
//! The first byte splits the rest in two broker answers. The SCRAM-SHA-256 client reads them
//! as server-first and server-final, with every `NONCE` in the first replaced by the client's
//! own nonce, so mutations get past the nonce check to the salt, the iteration count and the
//! signature; answers asking for more than 8192 iterations are skipped to keep runs fast. The
//! OAUTHBEARER client reads them as its broker answers. The whole input, as UTF-8, is also a
//! `sasl.jaas.config`. Nothing may panic, and no error or `Debug` may show the password.
#![no_main]

use herald::sasl::{
    JaasConfig, OAuthBearerClient, SaslClient, ScramClient, ScramHash, Secret, Step, Token,
};
use libfuzzer_sys::fuzz_target;

const PASSWORD: &str = "fuzz-password-7d1e";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = JaasConfig::parse(text) {
            let _ = config.login();
        }
    }
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (first, last) = rest.split_at(usize::from(split).min(rest.len()));
    scram(first, last);
    oauthbearer(first, last);
});

fn scram(first: &[u8], last: &[u8]) {
    let mut client = ScramClient::new(ScramHash::Sha256, "user", Secret::new(PASSWORD)).unwrap();
    let client_first = client.initial_response().unwrap().into_vec();
    let nonce = &client_first[client_first.windows(2).position(|w| w == b"r=").unwrap() + 2..];
    let first = replace(first, b"NONCE", nonce);
    if iterations(&first).is_some_and(|i| i > 8192) {
        return;
    }
    let outcome = match client.step(&first) {
        Ok(Step::Send(_)) => client.step(last),
        other => other,
    };
    if let Err(e) = outcome {
        assert!(!format!("{e:?} {e} {client:?}").contains(PASSWORD));
    }
}

fn oauthbearer(first: &[u8], last: &[u8]) {
    let token = Token::new(Secret::new("a.b."), None).unwrap();
    let mut client = OAuthBearerClient::new(token);
    let _ = client.initial_response().unwrap();
    if let Ok(Step::Send(_)) = client.step(first) {
        let _ = client.step(last);
        let _ = client.rejected(58, Some(&String::from_utf8_lossy(last)));
    }
}

/// `haystack` with every `needle` replaced by `with`.
fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// The number after the first `,i=`, if any (saturating). The fields before the iteration
/// count hold no comma, so in any server-first the client accepts this is the count.
fn iterations(message: &[u8]) -> Option<u64> {
    let start = message.windows(3).position(|w| w == b",i=")? + 3;
    let digits = message[start..].iter().take_while(|b| b.is_ascii_digit());
    Some(digits.fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}
