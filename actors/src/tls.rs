//! TLS for `security.protocol` SSL and SASL_SSL: the rustls client configuration built once,
//! at producer start, from the Java client's keys (and librdkafka's aliases), so a missing
//! file or a wrong store password fails `start` with an error naming the key instead of
//! failing every connection later.
//!
//! Crypto comes from rustls' `ring` provider: it builds with a C compiler alone (no cmake, Go
//! or prebuilt binaries, which `aws-lc-rs` may need), and is the provider the Rust ecosystem
//! has run longest. ring's primitives are C and assembly from BoringSSL: with TLS on, that is
//! the one place C is in the way (zstd is the other, with zstd compression).
//!
//! - Trust: `ssl.truststore.certificates` (PEM inline), `ssl.truststore.location` (PEM,
//!   PKCS12 or JKS with `ssl.truststore.password`; a JKS truststore without one is read
//!   unchecked, as the JDK reads it), librdkafka's `ssl.ca.location` (PEM); none of them: the
//!   system's roots.
//! - Client certificate (mutual TLS): `ssl.keystore.location` (PEM, PKCS12 or JKS with
//!   `ssl.keystore.password`), `ssl.keystore.certificate.chain` + `ssl.keystore.key`, or
//!   librdkafka's `ssl.certificate.location` + `ssl.key.location`; an encrypted PKCS#8 key,
//!   or a JKS store's key, is opened with `ssl.key.password` (a JKS key without it with the
//!   store's password, as Kafka does).
//! - A file that starts as a JKS store is read as one whatever its configured type, as the
//!   JDK's keystore compatibility mode reads it; JCEKS stores are refused with the `keytool`
//!   command that converts them.
//! - `ssl.endpoint.identification.algorithm=https` (the default) checks the broker's host name
//!   (or IP address) against its certificate; empty skips only that check.

use std::sync::Arc;

use herald::config::{EndpointIdentification, StoreType, TlsVersion};
use herald::sasl::Secret;
use herald::{ConfigError, ProducerConfig, SecurityProtocol};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::jks;

/// The TLS side of a connection: rustls' client configuration, shared by every connection of
/// one producer.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The TLS configuration `config` asks for; `None` for PLAINTEXT and SASL_PLAINTEXT.
    pub(crate) fn from_config(config: &ProducerConfig) -> Result<Option<Tls>, ConfigError> {
        Self::build(config).map_err(|e| naming_the_file(config, e))
    }

    fn build(config: &ProducerConfig) -> Result<Option<Tls>, ConfigError> {
        if !matches!(
            config.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        ) {
            return Ok(None);
        }
        // None above `ssl.protocol`, as Java's SSLContext of that protocol offers none.
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = config
            .ssl_enabled_protocols
            .iter()
            .filter(|v| **v <= config.ssl_protocol)
            .map(|v| match v {
                TlsVersion::V1_2 => &rustls::version::TLS12,
                TlsVersion::V1_3 => &rustls::version::TLS13,
            })
            .collect();
        let mut provider = rustls::crypto::ring::default_provider();
        if !config.ssl_cipher_suites.is_empty() {
            provider.cipher_suites =
                cipher_suites(provider.cipher_suites, &config.ssl_cipher_suites, &versions)?;
        }
        let provider = Arc::new(provider);
        let roots = Arc::new(roots(config)?);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| invalid("ssl.truststore.location", format!("no usable CA: {e}")))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| invalid("ssl.enabled.protocols", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                inner: verifier,
                check_name: config.ssl_endpoint_identification_algorithm
                    == EndpointIdentification::Https,
            }));
        let client = match identity(config)? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, with_ec_public_key(key))
                .map_err(|e| invalid("ssl.keystore.location", format!("unusable key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Some(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        }))
    }

    /// Runs the TLS handshake over `stream` to `host`, the name the certificate must carry.
    pub(crate) async fn connect<S>(
        &self,
        host: &str,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host} is not a valid TLS server name"),
            )
        })?;
        self.connector.connect(name, stream).await
    }
}

/// The IANA name of a suite, as Java's `ssl.cipher.suites` takes it (rustls names TLS 1.3
/// suites `TLS13_...`, IANA `TLS_...`).
fn iana_name(suite: &rustls::SupportedCipherSuite) -> String {
    let name = format!("{:?}", suite.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The suites of `available` that `wanted` names (in rustls's order of preference), or why
/// not: a name rustls does not have, or no suite left for the enabled TLS versions.
fn cipher_suites(
    available: Vec<rustls::SupportedCipherSuite>,
    wanted: &[String],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Vec<rustls::SupportedCipherSuite>, ConfigError> {
    let known: Vec<String> = available.iter().map(iana_name).collect();
    if let Some(unknown) = wanted.iter().find(|w| !known.contains(w)) {
        return Err(invalid(
            "ssl.cipher.suites",
            format!(
                "{unknown} is not supported; supported: {}",
                known.join(", ")
            ),
        ));
    }
    let chosen: Vec<_> = available
        .into_iter()
        .filter(|s| wanted.contains(&iana_name(s)))
        .collect();
    let usable = chosen
        .iter()
        .any(|s| versions.iter().any(|v| v.version == s.version().version));
    if !usable {
        return Err(invalid(
            "ssl.cipher.suites",
            "none of these suites is usable with ssl.enabled.protocols",
        ));
    }
    Ok(chosen)
}

/// The certificate verifier: webpki's, with the host-name check optional as Java has it.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Unusable {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// `e`, naming the file of the key it is about when it does not already: with templated
/// configs, which file is wrong is the question.
fn naming_the_file(config: &ProducerConfig, e: ConfigError) -> ConfigError {
    let ConfigError::Unusable { key, reason } = e else {
        return e;
    };
    let path = match key.as_str() {
        "ssl.truststore.location" => config.ssl_truststore_location.as_deref(),
        "ssl.keystore.location" => config.ssl_keystore_location.as_deref(),
        "ssl.ca.location" => config.ssl_ca_location.as_deref(),
        "ssl.certificate.location" => config.ssl_certificate_location.as_deref(),
        "ssl.key.location" => config.ssl_key_location.as_deref(),
        _ => None,
    };
    let reason = match path {
        Some(path) if !reason.contains(path) => format!("{path}: {reason}"),
        _ => reason,
    };
    ConfigError::Unusable { key, reason }
}

/// `value`, or the error that `key` must be set.
fn required<'a, T>(value: Option<&'a T>, key: &str) -> Result<&'a T, ConfigError> {
    value.ok_or_else(|| ConfigError::Missing { key: key.into() })
}

fn read(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))
}

/// The store's format: JKS if it starts as one (the JDK's keystore compatibility mode,
/// `keystore.type.compat`, on by default, reads a JKS file whatever type is configured), and
/// PKCS12 when JKS is configured for a file that is not JKS (the same mode reads PKCS12 as
/// type JKS: keytool has made PKCS12 by default since JDK 9, also for a file named
/// `kafka.truststore.jks`, while configs copied along still say `JKS`); else as configured,
/// else read from its bytes.
fn store_type(configured: Option<StoreType>, bytes: &[u8]) -> StoreType {
    if jks::is_jks(bytes) {
        return StoreType::Jks;
    }
    match configured {
        Some(StoreType::Jks) => StoreType::Pkcs12,
        Some(t) => t,
        None if bytes.windows(10).any(|w| w == b"-----BEGIN") => StoreType::Pem,
        None => StoreType::Pkcs12,
    }
}

/// Reads a JKS store, checking its integrity with `password` when there is one; errors name
/// `key` (the location's key) and, for a wrong password, the password's key.
fn jks_store(
    key: &str,
    path: &str,
    bytes: &[u8],
    password: (&str, Option<&Secret>),
) -> Result<jks::JksStore, ConfigError> {
    let (password_key, password) = password;
    jks::parse(bytes, password.map(Secret::expose)).map_err(|e| match e {
        jks::JksError::Integrity => invalid(
            key,
            format!(
                "cannot open the JKS store {path}: {password_key} is wrong or the file is damaged"
            ),
        ),
        jks::JksError::Jceks => invalid(
            key,
            format!(
                "JCEKS stores are not supported; convert {path} to PKCS12 with \
                 `keytool -importkeystore -srckeystore {path} -srcstoretype JCEKS \
                 -destkeystore {path}.p12 -deststoretype PKCS12` and set the type to PKCS12"
            ),
        ),
        other => invalid(key, format!("cannot read {path}: {other}")),
    })
}

/// The certificates of a PEM file, which may hold the private key as well. The parser's
/// error is not quoted: it carries the lines it could not read, and a key whose line breaks
/// were lost (a one-line PEM, or one with spaces for newlines) is such a line.
fn pem_certs(key: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    use rustls::pki_types::pem::Error;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            let why = match e {
                Error::MissingSectionEnd { .. } | Error::IllegalSectionStart { .. } => {
                    "a section is not well formed (its BEGIN and END lines must be lines \
                     of their own)"
                }
                Error::Base64Decode(_) => "a section is not valid base64",
                Error::SectionTooLarge => "a section is too large",
                _ => "not readable as PEM",
            };
            invalid(key, format!("bad PEM: {why}"))
        })?;
    if certs.is_empty() {
        return Err(invalid(key, "no certificate found"));
    }
    Ok(certs)
}

/// Trust for an https token endpoint (`sasl.oauthbearer.token.endpoint.url`): the system's
/// roots, as Java's default, and the CAs the broker trust is configured with, for a
/// provider inside the same private PKI. The endpoint's name is always checked, and no
/// client certificate is offered.
pub(crate) fn token_endpoint_tls(config: &ProducerConfig) -> Result<Tls, ConfigError> {
    let key = "sasl.oauthbearer.token.endpoint.url";
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    add_configured(&mut store, configured_certs(config)?)?;
    if store.is_empty() {
        return Err(invalid(
            key,
            "an https URL, and no system CA certificates nor ssl.truststore.* / ssl.ca.location to check it with",
        ));
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(key, e.to_string()))?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
    })
}

/// Adds the configured CA certificates to `store`.
fn add_configured(
    store: &mut RootCertStore,
    certs: Vec<(&'static str, CertificateDer<'static>)>,
) -> Result<(), ConfigError> {
    for (key, c) in certs {
        store
            .add(c)
            .map_err(|e| invalid(key, format!("unusable CA certificate: {e}")))?;
    }
    Ok(())
}

fn roots(config: &ProducerConfig) -> Result<RootCertStore, ConfigError> {
    let certs = configured_certs(config)?;
    let mut store = RootCertStore::empty();
    if certs.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(invalid(
                "ssl.truststore.location",
                "no truststore configured and no system CA certificates found",
            ));
        }
        return Ok(store);
    }
    add_configured(&mut store, certs)?;
    Ok(store)
}

/// The CA certificates `ssl.truststore.*` and `ssl.ca.location` name, with their keys.
fn configured_certs(
    config: &ProducerConfig,
) -> Result<Vec<(&'static str, CertificateDer<'static>)>, ConfigError> {
    let mut certs: Vec<(&str, CertificateDer<'static>)> = Vec::new();
    if let Some(pem) = &config.ssl_truststore_certificates {
        for c in pem_certs("ssl.truststore.certificates", pem.as_bytes())? {
            certs.push(("ssl.truststore.certificates", c));
        }
    }
    if let Some(path) = &config.ssl_truststore_location {
        let key = "ssl.truststore.location";
        let bytes = read(key, path)?;
        match store_type(config.ssl_truststore_type, &bytes) {
            StoreType::Pem => {
                for c in pem_certs(key, &bytes)? {
                    certs.push((key, c));
                }
            }
            StoreType::Jks => {
                let password = (
                    "ssl.truststore.password",
                    config.ssl_truststore_password.as_ref(),
                );
                let before = certs.len();
                for entry in jks_store(key, path, &bytes, password)?.entries {
                    match entry {
                        jks::Entry::Trusted(c) => certs.push((key, c)),
                        // As Java's trust managers read a key entry: its own certificate,
                        // not the CAs of its chain.
                        jks::Entry::Key { chain, .. } => {
                            certs.extend(chain.into_iter().take(1).map(|c| (key, c)))
                        }
                    }
                }
                if certs.len() == before {
                    return Err(invalid(key, "the JKS store holds no certificate"));
                }
            }
            StoreType::Pkcs12 => {
                let store = pkcs12(
                    key,
                    &bytes,
                    config.ssl_truststore_password.as_ref(),
                    "ssl.truststore.password",
                )?;
                let mut any = false;
                for (_, entry) in store.entries() {
                    match entry {
                        p12_keystore::KeyStoreEntry::Certificate(c) => {
                            certs.push((key, CertificateDer::from(c.as_der().to_vec())));
                            any = true;
                        }
                        // As Java's trust managers read a key entry: its own certificate,
                        // not the CAs of its chain.
                        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => {
                            if let Some(c) = chain.chain().first() {
                                certs.push((key, CertificateDer::from(c.as_der().to_vec())));
                                any = true;
                            }
                        }
                        _ => {}
                    }
                }
                if !any {
                    return Err(invalid(key, "the PKCS12 store holds no certificate"));
                }
            }
        }
    }
    if let Some(path) = &config.ssl_ca_location {
        let key = "ssl.ca.location";
        for c in pem_certs(key, &read(key, path)?)? {
            certs.push((key, c));
        }
    }
    Ok(certs)
}

fn pkcs12(
    key: &str,
    bytes: &[u8],
    password: Option<&Secret>,
    password_key: &str,
) -> Result<p12_keystore::KeyStore, ConfigError> {
    let password = password.map(Secret::expose).unwrap_or("");
    p12_keystore::KeyStore::from_pkcs12(bytes, password).map_err(|_| {
        invalid(
            key,
            format!("cannot open the PKCS12 store: not PKCS12, or {password_key} is wrong"),
        )
    })
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client's certificate chain and key, if any is configured.
fn identity(config: &ProducerConfig) -> Result<Option<Identity>, ConfigError> {
    if let Some(path) = &config.ssl_keystore_location {
        let key = "ssl.keystore.location";
        let bytes = read(key, path)?;
        return match store_type(config.ssl_keystore_type, &bytes) {
            StoreType::Pem => Ok(Some((
                pem_certs(key, &bytes)?,
                private_key(key, &bytes, ssl_key_password(config))?,
            ))),
            StoreType::Jks => jks_identity(config, path, &bytes).map(Some),
            StoreType::Pkcs12 => {
                let store = pkcs12(
                    key,
                    &bytes,
                    config.ssl_keystore_password.as_ref(),
                    "ssl.keystore.password",
                )?;
                let (_, chain) = store
                    .private_key_chain()
                    .ok_or_else(|| invalid(key, "the PKCS12 store holds no private key"))?;
                let certs = chain
                    .chain()
                    .iter()
                    .map(|c| CertificateDer::from(c.as_der().to_vec()))
                    .collect();
                let pkcs8 = PrivatePkcs8KeyDer::from(chain.key().to_vec());
                Ok(Some((certs, PrivateKeyDer::Pkcs8(pkcs8))))
            }
        };
    }
    if let Some(chain) = &config.ssl_keystore_certificate_chain {
        let key = required(config.ssl_keystore_key.as_ref(), "ssl.keystore.key")?;
        return Ok(Some((
            pem_certs("ssl.keystore.certificate.chain", chain.as_bytes())?,
            private_key(
                "ssl.keystore.key",
                key.expose().as_bytes(),
                ssl_key_password(config),
            )?,
        )));
    }
    if let Some(path) = &config.ssl_certificate_location {
        let key_path = required(config.ssl_key_location.as_ref(), "ssl.key.location")?;
        let certs = pem_certs(
            "ssl.certificate.location",
            &read("ssl.certificate.location", path)?,
        )?;
        let pem = read("ssl.key.location", key_path)?;
        return Ok(Some((
            certs,
            private_key("ssl.key.location", &pem, ssl_key_password(config))?,
        )));
    }
    Ok(None)
}

/// The first private key of a JKS keystore and its chain. As Kafka, the store needs
/// `ssl.keystore.password`, and the key is opened with `ssl.key.password`, or without it
/// with the store's password (keytool's default for the key's).
fn jks_identity(
    config: &ProducerConfig,
    path: &str,
    bytes: &[u8],
) -> Result<Identity, ConfigError> {
    let key = "ssl.keystore.location";
    let store_password = required(
        config.ssl_keystore_password.as_ref(),
        "ssl.keystore.password",
    )?;
    let store = jks_store(
        key,
        path,
        bytes,
        ("ssl.keystore.password", Some(store_password)),
    )?;
    let (protected, chain) = store
        .entries
        .into_iter()
        .find_map(|e| match e {
            jks::Entry::Key { protected, chain } => Some((protected, chain)),
            jks::Entry::Trusted(_) => None,
        })
        .ok_or_else(|| invalid(key, "the JKS store holds no private key"))?;
    let (password_key, password) = match &config.ssl_key_password {
        Some(p) => ("ssl.key.password", p),
        None => (
            "ssl.keystore.password (ssl.key.password unset)",
            store_password,
        ),
    };
    let pkcs8 = jks::recover_key(&protected, password.expose()).map_err(|e| match e {
        jks::JksError::KeyPassword => invalid(
            key,
            format!("cannot open the private key in {path}: {password_key} is wrong"),
        ),
        other => invalid(
            key,
            format!("cannot open the private key in {path}: {other}"),
        ),
    })?;
    if chain.is_empty() {
        return Err(invalid(
            key,
            "the JKS store's private key has no certificate",
        ));
    }
    Ok((chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8))))
}

/// ring reads an EC key only with its public key in the PKCS#8, and the JDK leaves it out
/// (keytool's EC keys, in PKCS12 and JKS stores alike): a P-256 or P-384 key without it is
/// re-encoded with the public key derived from it. Any other key is returned as it is, for
/// rustls to take or refuse.
fn with_ec_public_key(key: PrivateKeyDer<'static>) -> PrivateKeyDer<'static> {
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let PrivateKeyDer::Pkcs8(der) = &key else {
        return key;
    };
    if rustls::crypto::ring::sign::any_supported_type(&key).is_ok() {
        return key;
    }
    let bytes = der.secret_pkcs8_der();
    let whole = match p256::SecretKey::from_pkcs8_der(bytes) {
        Ok(k) => k.to_pkcs8_der().ok(),
        Err(_) => p384::SecretKey::from_pkcs8_der(bytes)
            .ok()
            .and_then(|k| k.to_pkcs8_der().ok()),
    };
    match whole {
        Some(doc) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec())),
        None => key,
    }
}

/// `ssl.key.password`, named with its key for [`private_key`]'s errors.
fn ssl_key_password(config: &ProducerConfig) -> (&'static str, Option<&Secret>) {
    ("ssl.key.password", config.ssl_key_password.as_ref())
}

/// A PEM private key: PKCS#8 (encrypted with the password, or plain), PKCS#1 or SEC1.
/// `password` is the password's config key and value, so that errors name the key the
/// caller's setting came from.
pub(crate) fn private_key(
    key: &str,
    pem: &[u8],
    password: (&str, Option<&Secret>),
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let (password_key, password) = password;
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let password = required(password, password_key)?;
        use pkcs8::der::Decode;
        let start = text
            .find("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            .unwrap_or_default();
        let end = text[start..]
            .find("-----END ENCRYPTED PRIVATE KEY-----")
            .map(|e| start + e + "-----END ENCRYPTED PRIVATE KEY-----".len())
            .ok_or_else(|| invalid(key, "unterminated encrypted private key"))?;
        let (_, der) = pkcs8::der::pem::decode_vec(text[start..end].as_bytes())
            .map_err(|_| invalid(key, "bad PEM encrypted private key"))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
            .map_err(|_| invalid(key, "bad encrypted private key"))?;
        let plain = info.decrypt(password.expose()).map_err(|_| {
            invalid(
                key,
                format!(
                    "cannot decrypt the private key: {password_key} is wrong or the cipher is \
                     unsupported (PBES2 with AES is)"
                ),
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| invalid(key, "no usable PEM private key found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ProducerConfig {
        let mut all = vec![("bootstrap.servers", "b:1"), ("security.protocol", "SSL")];
        all.extend_from_slice(pairs);
        ProducerConfig::from_pairs(all).unwrap()
    }

    fn error(pairs: &[(&str, &str)]) -> ConfigError {
        Tls::from_config(&config(pairs)).unwrap_err()
    }

    /// Java's IANA names pick rustls's suites; a name rustls lacks, or suites of a TLS
    /// version not enabled, fail `start` naming the key (and the supported names).
    #[test]
    fn cipher_suites_are_chosen_by_their_java_names() {
        assert!(Tls::from_config(&config(&[(
            "ssl.cipher.suites",
            "TLS_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        )]))
        .unwrap()
        .is_some());
        let e = error(&[("ssl.cipher.suites", "TLS_RSA_WITH_AES_128_CBC_SHA")]);
        assert_eq!(e.key(), Some("ssl.cipher.suites"));
        let text = e.to_string();
        assert!(
            text.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported")
                && text.contains("TLS_AES_128_GCM_SHA256")
                && text.contains("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
            "{text}"
        );
        let e = error(&[
            ("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256"),
            ("ssl.enabled.protocols", "TLSv1.2"),
        ]);
        assert!(
            e.to_string().contains("usable with ssl.enabled.protocols"),
            "{e}"
        );
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let tls12 = [&rustls::version::TLS12];
        let wanted = ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()];
        let chosen = cipher_suites(all, &wanted, &tls12).unwrap();
        assert_eq!(chosen.len(), 1);
        assert_eq!(iana_name(&chosen[0]), wanted[0]);
    }

    /// `ssl.protocol=TLSv1.2` offers no TLS 1.3, as Java's SSLContext of that protocol: a
    /// TLS 1.3 suite alone then leaves nothing to offer, where the default takes it.
    #[test]
    fn ssl_protocol_caps_the_versions_offered() {
        let tls13_suite = ("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256");
        assert!(Tls::from_config(&config(&[tls13_suite])).unwrap().is_some());
        let e = error(&[tls13_suite, ("ssl.protocol", "TLSv1.2")]);
        assert!(
            e.to_string().contains("usable with ssl.enabled.protocols"),
            "{e}"
        );
        let tls12_suite = ("ssl.cipher.suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert!(
            Tls::from_config(&config(&[tls12_suite, ("ssl.protocol", "TLSv1.2")]))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn plaintext_needs_none() {
        let c = ProducerConfig::from_pairs([("bootstrap.servers", "b:1")]).unwrap();
        assert!(Tls::from_config(&c).unwrap().is_none());
    }

    /// A JKS store made by keytool (see `jks`'s tests), written where a config can name it.
    fn keytool_jks() -> String {
        let dir = std::env::temp_dir().join(format!("herald-tls-jks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keytool.jks");
        std::fs::write(&path, include_bytes!("../testdata/keytool.jks")).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// Kafka's default store type: a JKS truststore with or without its password (unchecked
    /// then, as the JDK reads it), a JKS keystore whose key has a password of its own, or
    /// the store's when `ssl.key.password` is unset; a wrong password is named, not shown.
    #[test]
    fn jks_stores_are_read_and_their_passwords_named() {
        let jks = keytool_jks();
        let trust = [
            ("ssl.truststore.location", jks.as_str()),
            ("ssl.truststore.password", "store-pass"),
        ];
        assert!(Tls::from_config(&config(&trust)).is_ok());
        assert!(Tls::from_config(&config(&trust[..1])).is_ok());
        let e = error(&[trust[0], ("ssl.truststore.password", "not-the-pass")]);
        assert_eq!(e.key(), Some("ssl.truststore.location"));
        assert!(
            e.to_string().contains("ssl.truststore.password is wrong"),
            "{e}"
        );
        assert!(!e.to_string().contains("not-the-pass"), "{e}");

        let mut identity = trust.to_vec();
        identity.extend([
            ("ssl.keystore.location", jks.as_str()),
            ("ssl.keystore.password", "store-pass"),
            ("ssl.key.password", "key-pass"),
        ]);
        assert!(Tls::from_config(&config(&identity)).is_ok());
        // Configured as PKCS12, the file is still read as the JKS store it is.
        let mut typed = identity.clone();
        typed.push(("ssl.keystore.type", "PKCS12"));
        assert!(Tls::from_config(&config(&typed)).is_ok());
        // Without ssl.key.password the store's password is tried, and it is not the key's.
        let e = error(&identity[..4]);
        assert_eq!(e.key(), Some("ssl.keystore.location"));
        assert!(e.to_string().contains("ssl.key.password unset"), "{e}");
        let e = error(&[&identity[..3], &identity[4..]].concat());
        assert_eq!(e.key(), Some("ssl.keystore.password"));
        let mut wrong = identity.clone();
        wrong[4].1 = "not-the-key-pass";
        let e = error(&wrong);
        assert!(e.to_string().contains("ssl.key.password is wrong"), "{e}");
        assert!(!e.to_string().contains("not-the-key-pass"), "{e}");
    }

    /// keytool's EC keys (P-256 here), which the JDK encodes without their public key.
    #[test]
    fn a_jdk_made_ec_key_is_used() {
        let dir = std::env::temp_dir().join(format!("herald-tls-ec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keytool-ec.jks");
        std::fs::write(&path, include_bytes!("../testdata/keytool-ec.jks")).unwrap();
        let path = path.to_str().unwrap();
        let c = config(&[
            ("ssl.truststore.location", path),
            ("ssl.keystore.location", path),
            ("ssl.keystore.password", "store-pass"),
            ("ssl.key.password", "key-pass"),
        ]);
        if let Err(e) = Tls::from_config(&c) {
            panic!("{e}");
        }
    }

    #[test]
    fn jceks_is_refused_with_the_conversion_and_a_damaged_jks_named() {
        let dir = std::env::temp_dir().join(format!("herald-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jceks = dir.join("store.jceks");
        std::fs::write(&jceks, [0xCE, 0xCE, 0xCE, 0xCE, 0, 0, 0, 2]).unwrap();
        let e = error(&[("ssl.truststore.location", jceks.to_str().unwrap())]);
        assert_eq!(e.key(), Some("ssl.truststore.location"));
        assert!(e.to_string().contains("keytool -importkeystore"), "{e}");
        let short = dir.join("store.jks");
        std::fs::write(&short, [0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2]).unwrap();
        let e = error(&[
            ("ssl.keystore.location", short.to_str().unwrap()),
            ("ssl.keystore.password", "x"),
        ]);
        assert_eq!(e.key(), Some("ssl.keystore.location"));
    }

    #[test]
    fn missing_and_bad_files_name_their_key() {
        let e = error(&[("ssl.ca.location", "/nonexistent/ca.pem")]);
        assert_eq!(e.key(), Some("ssl.ca.location"));
        let e = error(&[("ssl.truststore.certificates", "not a certificate")]);
        assert_eq!(e.key(), Some("ssl.truststore.certificates"));
        let e = error(&[("ssl.keystore.certificate.chain", "x")]);
        assert_eq!(e.key(), Some("ssl.keystore.key"));
        // A file that opens but holds nothing usable: the error names the file too (the
        // key alone does not say which file a templated config pointed at).
        let dir = std::env::temp_dir().join(format!("herald-tls-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let empty = empty.to_str().unwrap();
        for key in ["ssl.truststore.location", "ssl.ca.location"] {
            let e = error(&[(key, empty)]);
            assert_eq!(e.key(), Some(key));
            assert!(e.to_string().contains(empty), "{e}");
        }
        let p12 = dir.join("not.p12");
        std::fs::write(&p12, b"\x30\x82\x01\x00 not really pkcs12").unwrap();
        let p12 = p12.to_str().unwrap();
        let e = error(&[
            ("ssl.keystore.location", p12),
            ("ssl.keystore.type", "PKCS12"),
        ]);
        assert!(e.to_string().contains(p12), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A private key whose line breaks were lost (all on one line, or spaces for newlines),
    /// in a file certificates are read from: the error names the key, and shows none of the
    /// key's base64, neither as text nor as the bytes the PEM parser's error lists.
    #[test]
    fn a_malformed_pem_key_is_named_not_quoted() {
        use pkcs8::der::pem::{encode_string, LineEnding};
        let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let pem = encode_string("PRIVATE KEY", LineEnding::LF, der.as_ref()).unwrap();
        let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let dir = std::env::temp_dir().join(format!("herald-tls-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trust = keytool_jks();
        for (name, text) in [
            ("one-line.pem", pem.replace('\n', "")),
            ("spaces.pem", pem.replace('\n', " ")),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let path = path.to_str().unwrap();
            for identity in [
                [
                    ("ssl.keystore.location", path),
                    ("ssl.keystore.type", "PEM"),
                ],
                [
                    ("ssl.certificate.location", path),
                    ("ssl.key.location", path),
                ],
            ] {
                let e = error(
                    &[
                        &[("ssl.truststore.location", trust.as_str())],
                        &identity[..],
                    ]
                    .concat(),
                );
                assert_eq!(e.key(), Some(identity[0].0), "{e}");
                assert!(e.to_string().contains("bad PEM"), "{e}");
                let shown = format!("{e} {e:?}");
                for run in base64.as_bytes().windows(20) {
                    let listed = format!("{run:?}");
                    let listed = &listed[1..listed.len() - 1];
                    assert!(
                        !shown.contains(std::str::from_utf8(run).unwrap())
                            && !shown.contains(listed),
                        "{name}: {shown}"
                    );
                }
            }
        }
    }

    /// A PKCS12 store made by the JDK's keytool (JDK 17: `-genkeypair -keyalg RSA
    /// -storetype PKCS12`, password `store-pass`, then `-importcert` of its own certificate
    /// as a trusted entry), the store type Java makes by default: it opens as truststore and
    /// keystore with its password, and a wrong password is named, not shown.
    #[test]
    fn a_wrong_store_password_is_named_but_not_shown() {
        let dir = std::env::temp_dir().join(format!("herald-tls-p12-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p12 = dir.join("keytool.p12");
        std::fs::write(&p12, include_bytes!("../testdata/keytool.p12")).unwrap();
        let p12 = p12.to_str().unwrap();
        let stores = [
            ("ssl.truststore.location", p12),
            ("ssl.truststore.password", "store-pass"),
            ("ssl.keystore.location", p12),
            ("ssl.keystore.password", "store-pass"),
        ];
        if let Err(e) = Tls::from_config(&config(&stores)) {
            panic!("{e}");
        }
        // Named JKS, as configs copied from before JDK 9 say: read as Java's keystore
        // compatibility mode reads it, PKCS12.
        let named_jks = [
            stores.as_slice(),
            &[("ssl.truststore.type", "JKS"), ("ssl.keystore.type", "JKS")],
        ]
        .concat();
        if let Err(e) = Tls::from_config(&config(&named_jks)) {
            panic!("a PKCS12 store configured as JKS: {e}");
        }
        for (at, password_key) in [(1, "ssl.truststore.password"), (3, "ssl.keystore.password")] {
            let mut wrong = stores.to_vec();
            wrong[at].1 = "sw0rdfish-secret";
            let e = error(&wrong);
            assert_eq!(e.key(), Some(stores[at - 1].0));
            assert!(
                e.to_string().contains(&format!("{password_key} is wrong")),
                "{e}"
            );
            assert!(!format!("{e} {e:?}").contains("sw0rdfish"), "{e}");
        }
        // Not PKCS12 at all: the same error, since a wrong password and a damaged store
        // cannot be told apart.
        let garbage = dir.join("store.p12");
        std::fs::write(&garbage, b"\x30\x82\x01\x00 not really pkcs12").unwrap();
        let e = error(&[
            ("ssl.truststore.location", garbage.to_str().unwrap()),
            ("ssl.truststore.type", "PKCS12"),
            ("ssl.truststore.password", "sw0rdfish-secret"),
        ]);
        assert_eq!(e.key(), Some("ssl.truststore.location"));
        assert!(e.to_string().contains("ssl.truststore.password"), "{e}");
        assert!(!format!("{e} {e:?}").contains("sw0rdfish"), "{e}");
    }
}
