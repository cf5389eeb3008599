//! Java KeyStore (JKS) files, read as the JDK's `sun.security.provider.JavaKeyStore` writes
//! them: Kafka's default `ssl.keystore.type` and `ssl.truststore.type` is JKS, so a Java
//! user's stores are often JKS files, and converting them first is a step a Java client does
//! not ask for.
//!
//! The format: magic `FEEDFEED`, version 1 or 2, a count, then entries: a trusted certificate
//! (tag 2) or a private key (tag 1) with its certificate chain, each after an alias and a
//! date; last, a SHA-1 over the store password (UTF-16BE), the words "Mighty Aphrodite" and
//! everything before it, which the JDK checks only when given a password. A private key is
//! a PKCS#8 `EncryptedPrivateKeyInfo` under Sun's own key protector (OID
//! 1.3.6.1.4.1.42.2.17.1.1): a 20-byte salt, the key XORed with a keystream of chained SHA-1
//! digests of the key password and the salt, and a SHA-1 of the password and the plain key
//! to check it with. JCEKS stores (`CECECECE`, Triple-DES key protection) are not read.

use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
use rustls::pki_types::CertificateDer;

const MAGIC: u32 = 0xFEED_FEED;
const JCEKS_MAGIC: u32 = 0xCECE_CECE;
const PRIVATE_KEY: u32 = 1;
const TRUSTED_CERT: u32 = 2;
const SHA1_LEN: usize = 20;
/// DER of the key protector's OID, 1.3.6.1.4.1.42.2.17.1.1.
const KEY_PROTECTOR_OID: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x11, 0x01, 0x01];

/// What a JKS store holds, in file order.
#[derive(Debug)]
pub(crate) struct JksStore {
    pub(crate) entries: Vec<Entry>,
}

pub(crate) enum Entry {
    /// A trusted certificate entry (`keytool -importcert`).
    Trusted(CertificateDer<'static>),
    /// A private key, still protected, and its certificate chain (leaf first).
    Key {
        protected: Vec<u8>,
        chain: Vec<CertificateDer<'static>>,
    },
}

/// A key entry shows only its length: the key protector is a keystream of the password, so
/// the bytes give the key to anyone who guesses a weak password.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Trusted(cert) => f.debug_tuple("Trusted").field(cert).finish(),
            Entry::Key { protected, chain } => f
                .debug_struct("Key")
                .field(
                    "protected",
                    &format_args!("[{} bytes hidden]", protected.len()),
                )
                .field("chain", chain)
                .finish(),
        }
    }
}

/// Why a store or a key could not be read. Says nothing of the passwords but whether one
/// was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JksError {
    #[error("not a JKS store: {0}")]
    Malformed(&'static str),
    #[error("a JCEKS store, which is not supported")]
    Jceks,
    /// The store's integrity digest does not match: a wrong store password, or a damaged file.
    #[error(
        "the store's integrity check failed: the store password is wrong or the file is damaged"
    )]
    Integrity,
    #[error("the private key is protected with an algorithm other than the JKS key protector")]
    KeyAlgorithm,
    /// The key's check digest does not match: a wrong key password.
    #[error("the private key's check failed: the key password is wrong")]
    KeyPassword,
}

/// Whether `bytes` begin as a JKS or JCEKS store.
pub(crate) fn is_jks(bytes: &[u8]) -> bool {
    matches!(u32_at(bytes, 0), Some(MAGIC | JCEKS_MAGIC))
}

/// Reads a store; with a password, checks its integrity first, as the JDK does.
pub(crate) fn parse(bytes: &[u8], password: Option<&str>) -> Result<JksStore, JksError> {
    match u32_at(bytes, 0) {
        Some(MAGIC) => {}
        Some(JCEKS_MAGIC) => return Err(JksError::Jceks),
        _ => return Err(JksError::Malformed("wrong magic number")),
    }
    if bytes.len() < 12 + SHA1_LEN {
        return Err(JksError::Malformed("too short"));
    }
    let (body, stored) = bytes.split_at(bytes.len() - SHA1_LEN);
    if let Some(password) = password {
        let mut ctx = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&utf16be(password));
        ctx.update(b"Mighty Aphrodite");
        ctx.update(body);
        if ctx.finish().as_ref() != stored {
            return Err(JksError::Integrity);
        }
    }
    let mut r = Reader { bytes: body, at: 4 };
    let version = r.u32()?;
    if version != 1 && version != 2 {
        return Err(JksError::Malformed("unknown version"));
    }
    let count = r.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let tag = r.u32()?;
        r.utf()?; // alias
        r.take(8)?; // creation date
        match tag {
            PRIVATE_KEY => {
                let len = r.u32()? as usize;
                let protected = r.take(len)?.to_vec();
                let n = r.u32()?;
                let mut chain = Vec::new();
                for _ in 0..n {
                    chain.push(r.cert(version)?);
                }
                entries.push(Entry::Key { protected, chain });
            }
            TRUSTED_CERT => entries.push(Entry::Trusted(r.cert(version)?)),
            _ => return Err(JksError::Malformed("unknown entry tag")),
        }
    }
    if r.at != body.len() {
        return Err(JksError::Malformed("bytes after the last entry"));
    }
    Ok(JksStore { entries })
}

/// The PKCS#8 `PrivateKeyInfo` of a protected key entry, opened with `password`.
pub(crate) fn recover_key(protected: &[u8], password: &str) -> Result<Vec<u8>, JksError> {
    // EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }
    let (info, _) = der(protected, 0x30)?;
    let (algorithm, rest) = der(info, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    if oid != KEY_PROTECTOR_OID {
        return Err(JksError::KeyAlgorithm);
    }
    let (data, _) = der(rest, 0x04)?;
    if data.len() < 2 * SHA1_LEN {
        return Err(JksError::Malformed("protected key too short"));
    }
    let (salt, rest) = data.split_at(SHA1_LEN);
    let (encrypted, check) = rest.split_at(rest.len() - SHA1_LEN);
    let password = utf16be(password);
    let mut key = Vec::with_capacity(encrypted.len());
    let mut block = salt.to_vec();
    for chunk in encrypted.chunks(SHA1_LEN) {
        let mut ctx = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&password);
        ctx.update(&block);
        block = ctx.finish().as_ref().to_vec();
        key.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
    }
    let mut ctx = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&password);
    ctx.update(&key);
    if ctx.finish().as_ref() != check {
        return Err(JksError::KeyPassword);
    }
    Ok(key)
}

/// A password as Java's `char[]` bytes: UTF-16, big-endian.
fn utf16be(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The content of the DER element at the start of `bytes`, which must have tag `tag`, and
/// what follows it.
fn der(bytes: &[u8], tag: u8) -> Result<(&[u8], &[u8]), JksError> {
    let bad = JksError::Malformed("bad DER in a protected key");
    if bytes.first() != Some(&tag) {
        return Err(bad);
    }
    let first = *bytes.get(1).ok_or(bad.clone())?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 {
            return Err(bad);
        }
        let len_bytes = bytes.get(2..2 + n).ok_or(bad.clone())?;
        (
            len_bytes.iter().fold(0usize, |l, b| (l << 8) | *b as usize),
            2 + n,
        )
    };
    let end = header.checked_add(len).ok_or(bad.clone())?;
    let content = bytes.get(header..end).ok_or(bad)?;
    Ok((content, &bytes[end..]))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JksError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(JksError::Malformed("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, JksError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `DataOutputStream.writeUTF` string: a 16-bit length, then (modified) UTF-8.
    fn utf(&mut self) -> Result<&'a [u8], JksError> {
        let b = self.take(2)?;
        self.take(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    /// A certificate: its type (version 2 only; X.509 is the one a TLS store holds), then
    /// its encoding.
    fn cert(&mut self, version: u32) -> Result<CertificateDer<'static>, JksError> {
        if version == 2 && self.utf()? != b"X.509" {
            return Err(JksError::Malformed("a certificate that is not X.509"));
        }
        let len = self.u32()? as usize;
        Ok(CertificateDer::from(self.take(len)?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store made by the JDK's keytool (`-genkeypair -keyalg RSA -storetype JKS`, store
    /// password `store-pass`, key password `key-pass`, then `-importcert` of another
    /// certificate as a trusted entry): the reader against the format's writer, not against
    /// itself.
    const KEYTOOL_JKS: &[u8] = include_bytes!("../testdata/keytool.jks");

    /// SHA-1 of `bytes`, for tests that build stores.
    fn sha1(bytes: &[u8]) -> Vec<u8> {
        ring::digest::digest(&SHA1_FOR_LEGACY_USE_ONLY, bytes)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn reads_a_keytool_store_and_opens_its_key() {
        assert!(is_jks(KEYTOOL_JKS));
        let store = parse(KEYTOOL_JKS, Some("store-pass")).expect("the store");
        let (mut keys, mut trusted) = (Vec::new(), 0);
        for e in &store.entries {
            match e {
                Entry::Trusted(_) => trusted += 1,
                Entry::Key { protected, chain } => keys.push((protected, chain.len())),
            }
        }
        assert_eq!((keys.len(), trusted), (1, 1));
        let (protected, chain) = keys[0];
        assert_eq!(chain, 1);
        let key = recover_key(protected, "key-pass").expect("the key");
        // A PKCS#8 PrivateKeyInfo rustls accepts as an RSA key.
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.into());
        rustls::crypto::ring::sign::any_supported_type(&der).expect("a usable key");
        assert_eq!(
            recover_key(protected, "store-pass"),
            Err(JksError::KeyPassword)
        );
    }

    #[test]
    fn a_wrong_store_password_or_a_damaged_store_fails_the_integrity_check() {
        assert_eq!(
            parse(KEYTOOL_JKS, Some("wrong")).err(),
            Some(JksError::Integrity)
        );
        let mut damaged = KEYTOOL_JKS.to_vec();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 1;
        assert_eq!(
            parse(&damaged, Some("store-pass")).err(),
            Some(JksError::Integrity)
        );
        // Without a password the JDK reads a store unchecked, as a truststore may be.
        assert!(parse(KEYTOOL_JKS, None).is_ok());
    }

    /// Garbage is an error, never a panic: the store with bytes flipped, cut or doubled at
    /// random, read unchecked (no password, so damage reaches the entry parser) and every
    /// key it still yields opened.
    #[test]
    fn damaged_stores_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3_000 {
            let mut bytes = KEYTOOL_JKS.to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..bytes.len());
                match rng.u8(..3) {
                    0 => bytes[at] = rng.u8(..),
                    1 => bytes.truncate(at.max(1)),
                    _ => {
                        let tail = bytes[at..].to_vec();
                        bytes.extend_from_slice(&tail);
                    }
                }
            }
            if let Ok(store) = parse(&bytes, None) {
                for e in store.entries {
                    if let Entry::Key { protected, .. } = e {
                        let _ = recover_key(&protected, "key-pass");
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused() {
        for n in [0, 3, 8, 30, KEYTOOL_JKS.len() / 2] {
            assert!(parse(&KEYTOOL_JKS[..n], None).is_err(), "{n} bytes");
        }
        assert_eq!(
            parse(&[0xCE, 0xCE, 0xCE, 0xCE, 0, 0, 0, 2], None).err(),
            Some(JksError::Jceks)
        );
        // A store whose digest matches but whose count promises an entry that is not there.
        let mut body = vec![0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1];
        let mut digest_input = utf16be("p");
        digest_input.extend_from_slice(b"Mighty Aphrodite");
        digest_input.extend_from_slice(&body);
        body.extend(sha1(&digest_input));
        assert_eq!(
            parse(&body, Some("p")).err(),
            Some(JksError::Malformed("truncated"))
        );
    }
}
