//! OAUTHBEARER tokens from an OAuth 2.0 token endpoint (KIP-768), the client side of Java's
//! `OAuthBearerLoginCallbackHandler`: `sasl.oauthbearer.token.endpoint.url` names the
//! endpoint and `sasl.jaas.config` carries `clientId`, `clientSecret` and an optional `scope`.
//! A `file:` URL names a file holding the token instead (Java's file retriever), read again
//! at each refresh, for tokens an agent on the host keeps current.
//!
//! This module is the part without I/O: the request, reading the response, and checking the
//! token as Java's client-side validator does (a JWT with `exp` and the subject claim), so
//! that a token the broker would refuse fails here with a reason. The actors crate does the
//! HTTP exchange and the retries.
//!
//! The request holds the client secret, so it is an [`AuthBytes`]; errors quote the
//! endpoint's `error` and `error_description` only, with the credentials sent (secret,
//! `Authorization` header, assertion) struck out should an endpoint echo them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::{AuthBytes, Secret, Token};

/// Where tokens come from. `Debug` shows what `Display` does: no query.
#[derive(Clone, PartialEq, Eq)]
pub enum EndpointUrl {
    /// `http://` or `https://`: the client credentials grant.
    Http {
        /// `https`.
        tls: bool,
        /// Host name or IP address (an IPv6 address without its brackets).
        host: String,
        /// Port; 80 or 443 when the URL gives none.
        port: u16,
        /// Path and query, at least `/`.
        target: String,
    },
    /// `file:`: a file holding the token.
    File(PathBuf),
}

impl EndpointUrl {
    /// Parses `text`. A URL with user information (`user:password@`) is refused: it would
    /// put a credential where errors and logs quote the URL.
    pub fn parse(text: &str) -> Result<EndpointUrl, &'static str> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("file:") {
            let path = &text[text.len() - rest.len()..];
            // file:/p, file:///p and file://localhost/p all name /p.
            let path = path
                .strip_prefix("//localhost")
                .or_else(|| path.strip_prefix("//"))
                .unwrap_or(path);
            if path.is_empty() {
                return Err("a file: URL needs a path");
            }
            return Ok(EndpointUrl::File(PathBuf::from(path)));
        }
        let (tls, rest) = if lower.starts_with("https://") {
            (true, &text["https://".len()..])
        } else if lower.starts_with("http://") {
            (false, &text["http://".len()..])
        } else {
            return Err("expected an http://, https:// or file: URL");
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err("user information in the URL is not allowed; give clientId and clientSecret in sasl.jaas.config");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| "the port is not a number")?,
                None if after.is_empty() => default_port,
                None => return Err("unexpected text after the host"),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| "the port is not a number")?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host");
        }
        if target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err("the path holds spaces or control characters; percent-encode them");
        }
        Ok(EndpointUrl::Http {
            tls,
            host,
            port,
            target,
        })
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointUrl::Http {
                tls,
                host,
                port,
                target,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                // The query may carry anything the provider asked for; only the path is shown.
                let path = target.split('?').next().unwrap_or("/");
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}{path}")
                } else {
                    write!(f, "{scheme}://{host}:{port}{path}")
                }
            }
            EndpointUrl::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EndpointUrl")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// `clientId`, `clientSecret` and `scope` from `sasl.jaas.config`. (`Debug` shows the
/// secret as `Secret` shows it: hidden.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// `clientId`.
    pub client_id: String,
    /// `clientSecret`.
    pub client_secret: Secret,
    /// `scope`, if set.
    pub scope: Option<String>,
}

/// A token endpoint and how to ask it, from the producer's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEndpoint {
    /// `sasl.oauthbearer.token.endpoint.url`.
    pub url: EndpointUrl,
    /// The client's credentials (for the client credentials grant).
    pub credentials: Option<ClientCredentials>,
    /// The JWT bearer grant's assertion; when set, asked for instead of client credentials.
    pub assertion: Option<Assertion>,
    /// SASL extensions (`extension_<name>` options).
    pub extensions: BTreeMap<String, String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim a token must name its subject in.
    pub sub_claim: String,
    /// `sasl.oauthbearer.scope.claim.name`: the claim a token's scope is in, if any.
    pub scope_claim: String,
    /// `sasl.oauthbearer.header.urlencode`: URL-encode the id and secret in the
    /// `Authorization` header (RFC 6749 section 2.3.1); off by default, as in Java.
    pub header_urlencode: bool,
    /// `sasl.login.connect.timeout.ms`.
    pub connect_timeout: Duration,
    /// `sasl.login.read.timeout.ms`: the whole response must arrive within it.
    pub read_timeout: Duration,
    /// `sasl.login.retry.backoff.ms`: the wait before the first retry, doubled each time.
    pub retry_backoff: Duration,
    /// `sasl.login.retry.backoff.max.ms`: the longest wait, and the most waited in all.
    pub retry_backoff_max: Duration,
}

/// The grant type of RFC 7523's JWT bearer grant.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The JWT bearer grant (RFC 7523), as Kafka 4.1's `JwtBearerJwtRetriever` asks for a token:
/// the client presents an assertion, a JWT it signed (or one made elsewhere, from a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// Where the assertion comes from.
    pub source: AssertionSource,
    /// `sasl.oauthbearer.scope`.
    pub scope: Option<String>,
}

/// Where an assertion comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionSource {
    /// `sasl.oauthbearer.assertion.file`: made elsewhere, read again for every token.
    File(PathBuf),
    /// Signed here with `sasl.oauthbearer.assertion.private.key.file`.
    Signed(AssertionTemplate),
}

/// How an assertion is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl AssertionAlgorithm {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            AssertionAlgorithm::Rs256 => "RS256",
            AssertionAlgorithm::Es256 => "ES256",
        }
    }
}

/// The claims of a signed assertion, before the time-dependent ones. (Its claims are no
/// secret: the assertion carries them readable; the passphrase is a `Secret`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionTemplate {
    /// `sasl.oauthbearer.assertion.algorithm`.
    pub algorithm: AssertionAlgorithm,
    /// `sasl.oauthbearer.assertion.private.key.file`.
    pub private_key_file: PathBuf,
    /// `sasl.oauthbearer.assertion.private.key.passphrase`.
    pub passphrase: Option<Secret>,
    /// `sasl.oauthbearer.assertion.template.file`, merged in by
    /// [`with_template`](Self::with_template) when the producer starts.
    pub template_file: Option<PathBuf>,
    /// Header fields from the template file (`alg` and `typ` are set here).
    pub header: serde_json::Map<String, serde_json::Value>,
    /// Claims from the `claim.*` keys, then the template file's payload.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `sasl.oauthbearer.assertion.claim.exp.seconds`.
    pub exp: Duration,
    /// `sasl.oauthbearer.assertion.claim.nbf.seconds`.
    pub nbf: Duration,
    /// `sasl.oauthbearer.assertion.claim.jti.include`.
    pub jti: bool,
}

impl AssertionTemplate {
    /// Adds a template file's `header` and `payload` objects (its claims override the
    /// `claim.*` keys'; `iat`, `exp`, `nbf` and `jti` are still set per assertion).
    pub fn with_template(mut self, json: &[u8]) -> Result<AssertionTemplate, &'static str> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|_| "the template file is not JSON")?;
        let object = |name| match value.get(name) {
            None => Ok(serde_json::Map::new()),
            Some(serde_json::Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err("the template's header and payload must be JSON objects"),
        };
        self.header.extend(object("header")?);
        self.claims.extend(object("payload")?);
        Ok(self)
    }

    /// The compact JWS of `signing_input` and its signature.
    pub fn signed(signing_input: &str, signature: &[u8]) -> String {
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The JWS signing input (`header.payload`, base64url) of an assertion made at `now`:
    /// the template's claims, then `iat`, `exp`, `nbf` and, if asked for, `jti`.
    pub fn signing_input(&self, now: SystemTime, jti: Option<&str>) -> String {
        let mut header = self.header.clone();
        header.insert("alg".into(), self.algorithm.name().into());
        header.insert("typ".into(), "JWT".into());
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut claims = self.claims.clone();
        claims.insert("iat".into(), secs.into());
        claims.insert("exp".into(), (secs + self.exp.as_secs()).into());
        claims.insert("nbf".into(), secs.saturating_sub(self.nbf.as_secs()).into());
        if let (true, Some(jti)) = (self.jti, jti) {
            claims.insert("jti".into(), jti.into());
        }
        let part = |m: serde_json::Map<String, serde_json::Value>| {
            URL_SAFE_NO_PAD.encode(serde_json::Value::Object(m).to_string())
        };
        format!("{}.{}", part(header), part(claims))
    }
}

/// The largest response read from a token endpoint.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Why no token came from the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The endpoint answered with an error status.
    #[error("answered HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body's `error` and `error_description`, if it had them.
        detail: Option<String>,
    },
    /// The response, or the token in it, cannot be used.
    #[error("{0}")]
    Invalid(String),
}

impl EndpointError {
    /// Whether asking again may help: a server error or a timeout, not a refusal of the
    /// client (Java's retriever does not retry 4xx statuses, nor 501 and 505), nor a
    /// redirect (not followed: the URL should name the endpoint itself).
    pub fn retriable(&self) -> bool {
        match self {
            EndpointError::Status { status, .. } => match status {
                408 | 429 => true,
                300..=499 | 501 | 505 => false,
                _ => true,
            },
            EndpointError::Invalid(_) => false,
        }
    }
}

impl TokenEndpoint {
    /// The HTTP request for a token: POST with the client credentials grant, HTTP Basic
    /// authentication, and `Connection: close` so that the response ends with the stream.
    /// `None` for a `file:` URL or when there are no credentials.
    pub fn request(&self) -> Option<AuthBytes> {
        let c = self.credentials.as_ref()?;
        let basic = self.basic_credential(c);
        let mut body = String::from("grant_type=client_credentials");
        if let Some(scope) = &c.scope {
            body.push_str("&scope=");
            body.push_str(&form_encode(scope));
        }
        self.post(&body, Some(&basic))
    }

    /// The `Authorization: Basic` credential of the client credentials grant.
    fn basic_credential(&self, c: &ClientCredentials) -> String {
        let (id, secret) = if self.header_urlencode {
            (
                form_encode(&c.client_id),
                form_encode(c.client_secret.expose()),
            )
        } else {
            (c.client_id.clone(), c.client_secret.expose().to_string())
        };
        STANDARD.encode(format!("{id}:{secret}"))
    }

    /// The HTTP request of the JWT bearer grant (RFC 7523) presenting `assertion`, with the
    /// assertion's scope; no client authentication besides the assertion. `None` for a
    /// `file:` URL. Its response goes to
    /// [`token_from_assertion_response`](Self::token_from_assertion_response), so that an
    /// error echoing the assertion does not show it.
    pub fn assertion_request(&self, assertion: &str) -> Option<AuthBytes> {
        let mut body = format!(
            "grant_type={}&assertion={}",
            form_encode(JWT_BEARER_GRANT),
            form_encode(assertion)
        );
        if let Some(scope) = self.assertion.as_ref().and_then(|a| a.scope.as_ref()) {
            body.push_str("&scope=");
            body.push_str(&form_encode(scope));
        }
        self.post(&body, None)
    }

    /// A POST of the form `body`, with HTTP Basic authentication when given.
    fn post(&self, body: &str, basic: Option<&str>) -> Option<AuthBytes> {
        let EndpointUrl::Http {
            tls,
            host,
            port,
            target,
        } = &self.url
        else {
            return None;
        };
        let host_header = match (host.contains(':'), *port == if *tls { 443 } else { 80 }) {
            (true, true) => format!("[{host}]"),
            (true, false) => format!("[{host}]:{port}"),
            (false, true) => host.clone(),
            (false, false) => format!("{host}:{port}"),
        };
        let authorization = basic
            .map(|b| format!("Authorization: Basic {b}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: {host_header}\r\n{authorization}\
             Accept: application/json\r\nCache-Control: no-cache\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\nUser-Agent: herald\r\n\r\n{body}",
            body.len()
        );
        Some(AuthBytes::new(request.into_bytes()))
    }

    /// The token in a complete HTTP response (status line to the end of the stream).
    pub fn token_from_response(
        &self,
        response: &[u8],
        now: SystemTime,
    ) -> Result<Token, EndpointError> {
        self.token_from(response, None, now)
    }

    /// [`token_from_response`](Self::token_from_response) for the response to
    /// [`assertion_request`](Self::assertion_request) with `assertion`: a signed assertion
    /// is a credential until it expires.
    pub fn token_from_assertion_response(
        &self,
        response: &[u8],
        assertion: &str,
        now: SystemTime,
    ) -> Result<Token, EndpointError> {
        self.token_from(response, Some(assertion), now)
    }

    fn token_from(
        &self,
        response: &[u8],
        assertion: Option<&str>,
        now: SystemTime,
    ) -> Result<Token, EndpointError> {
        let (status, body) = parse_http(response).map_err(|e| {
            EndpointError::Invalid(format!("the response is not HTTP/1.x as expected: {e}"))
        })?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !(status == 200 || status == 201) {
            let detail = json.as_ref().and_then(|j| {
                let field = |name| j.get(name).and_then(|v| v.as_str()).map(str::to_string);
                match (field("error"), field("error_description")) {
                    (Some(e), Some(d)) => Some(format!("{e} ({d})")),
                    (Some(e), None) => Some(e),
                    (None, Some(d)) => Some(d),
                    (None, None) => None,
                }
            });
            return Err(EndpointError::Status {
                status,
                detail: detail.map(|d| self.scrub(&d, assertion)),
            });
        }
        let token = json
            .as_ref()
            .and_then(|j| j.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                EndpointError::Invalid("the response has no access_token string".to_string())
            })?;
        self.token_from_jwt(token.trim(), now)
    }

    /// Checks a token as Java's client-side validator does: a JWT whose payload has a
    /// numeric `exp` in the future and a non-empty subject claim, and whose scope claim, if
    /// present, is a string or a list of strings. Its expiry is `exp`.
    pub fn token_from_jwt(&self, jwt: &str, now: SystemTime) -> Result<Token, EndpointError> {
        let invalid = |why: &str| EndpointError::Invalid(format!("the token {why}"));
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err(invalid(
                "is not a JWT (expected header, payload and signature separated by dots)",
            ));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .map_err(|_| invalid("payload is not base64url"))?;
        let claims: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| invalid("payload is not JSON"))?;
        let claims = claims
            .as_object()
            .ok_or_else(|| invalid("payload is not a JSON object"))?;
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| invalid("has no numeric exp claim"))?;
        // Checked: the endpoint's number may be past what `SystemTime` holds, and the
        // unchecked conversions panic there (in the connection's token future).
        let expires_at = Duration::try_from_secs_f64(exp)
            .ok()
            .filter(|_| exp > 0.0)
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .ok_or_else(|| invalid("has an exp claim out of range"))?;
        if expires_at <= now {
            return Err(invalid("has already expired"));
        }
        match claims.get(&self.sub_claim) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return Err(EndpointError::Invalid(format!(
                "the token has no {} claim naming its subject (sasl.oauthbearer.sub.claim.name)",
                self.sub_claim
            )))
            }
        }
        match claims.get(&self.scope_claim) {
            None | Some(serde_json::Value::String(_)) => {}
            Some(serde_json::Value::Array(a)) if a.iter().all(|v| v.is_string()) => {}
            Some(_) => {
                return Err(EndpointError::Invalid(format!(
                    "the token's {} claim is neither a string nor a list of strings (sasl.oauthbearer.scope.claim.name)",
                    self.scope_claim
                )))
            }
        }
        Token::new(Secret::new(jwt), Some(expires_at))
            .map_err(|_| invalid("is not an RFC 6750 b64token"))
    }

    /// `text` with the credentials sent struck out, in each form they were sent in (an
    /// endpoint may echo the form field or the header it refused), then cut to 300
    /// characters: cut first, a secret across the cut would be left half there.
    fn scrub(&self, text: &str, assertion: Option<&str>) -> String {
        let mut sent: Vec<(String, &str)> = Vec::new();
        if let Some(c) = &self.credentials {
            let secret = c.client_secret.expose();
            sent.push((secret.to_string(), "(client secret)"));
            sent.push((form_encode(secret), "(client secret)"));
            sent.push((self.basic_credential(c), "(client credentials)"));
        }
        if let Some(assertion) = assertion {
            sent.push((assertion.to_string(), "(assertion)"));
            sent.push((form_encode(assertion), "(assertion)"));
        }
        // Longest first, so that a form holding a shorter one is struck out whole.
        sent.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let mut text = text.to_string();
        for (secret, label) in &sent {
            // An empty secret would put the label between every two characters.
            if !secret.is_empty() {
                text = text.replace(secret.as_str(), label);
            }
        }
        text.chars().take(300).collect()
    }
}

/// Whether `data` holds a whole response: its headers, and the body its `Content-Length`
/// or its chunks announce. A response with neither ends with the stream, so it is whole
/// only then (`false` here). Lets a client stop reading from a server that keeps the
/// connection open despite `Connection: close`.
pub fn response_complete(data: &[u8]) -> bool {
    match head(data) {
        Ok(h) => match h.framing {
            Framing::Chunked => dechunk(h.body).is_ok(),
            Framing::Length(n) => h.body.len() >= n,
            Framing::ToEnd => false,
        },
        Err(_) => false,
    }
}

/// How a response's body ends (RFC 9112 section 6.3: chunks before `Content-Length`).
enum Framing {
    Chunked,
    Length(usize),
    ToEnd,
}

/// A response's status line and framing, and what follows its headers.
struct Head<'a> {
    status_line: &'a str,
    framing: Framing,
    body: &'a [u8],
}

fn head(data: &[u8]) -> Result<Head<'_>, &'static str> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let text = std::str::from_utf8(&data[..end]).map_err(|_| "headers are not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut framing = Framing::ToEnd;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().contains("chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked)
        {
            framing = Framing::Length(value.parse().map_err(|_| "bad Content-Length")?);
        }
    }
    Ok(Head {
        status_line,
        framing,
        body: &data[end + 4..],
    })
}

/// `application/x-www-form-urlencoded`, as Java's `URLEncoder` writes it.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The status and body of a complete HTTP/1.x response: the body by `Content-Length`, by
/// chunks, or to the end.
fn parse_http(response: &[u8]) -> Result<(u16, Vec<u8>), &'static str> {
    let h = head(response)?;
    let mut words = h.status_line.split(' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err("no HTTP/1.x status line");
    }
    let status: u16 = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    let body = match h.framing {
        Framing::Chunked => dechunk(h.body)?,
        Framing::Length(n) => h
            .body
            .get(..n)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec(),
        Framing::ToEnd => h.body.to_vec(),
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut")?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("a chunk is cut")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("a chunk is cut")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> TokenEndpoint {
        TokenEndpoint {
            url: EndpointUrl::parse(url).unwrap(),
            credentials: Some(ClientCredentials {
                client_id: "app one".into(),
                client_secret: Secret::new("s3cr:t&"),
                scope: Some("kafka produce".into()),
            }),
            assertion: None,
            extensions: BTreeMap::new(),
            sub_claim: "sub".into(),
            scope_claim: "scope".into(),
            header_urlencode: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
        }
    }

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    #[test]
    fn urls_parse_with_their_defaults() {
        assert_eq!(
            EndpointUrl::parse("https://idp.example.com/oauth2/token?x=1").unwrap(),
            EndpointUrl::Http {
                tls: true,
                host: "idp.example.com".into(),
                port: 443,
                target: "/oauth2/token?x=1".into()
            }
        );
        assert_eq!(
            EndpointUrl::parse("http://[::1]:8080").unwrap(),
            EndpointUrl::Http {
                tls: false,
                host: "::1".into(),
                port: 8080,
                target: "/".into()
            }
        );
        for (url, path) in [
            ("file:/etc/token", "/etc/token"),
            ("file:///etc/token", "/etc/token"),
            ("FILE://localhost/etc/token", "/etc/token"),
        ] {
            assert_eq!(
                EndpointUrl::parse(url).unwrap(),
                EndpointUrl::File(path.into())
            );
        }
        for bad in [
            "ftp://x/y",
            "https://user:pw@idp/token",
            "http://:80/",
            "http://h:port/",
            "file:",
            "http://h/a b",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
        // The query is not shown.
        let shown = EndpointUrl::parse("https://idp:8443/token?audience=a")
            .unwrap()
            .to_string();
        assert_eq!(shown, "https://idp:8443/token");
        let debug = format!(
            "{:?}",
            EndpointUrl::parse("https://idp:8443/token?audience=a").unwrap()
        );
        assert_eq!(debug, "EndpointUrl(https://idp:8443/token)");
    }

    #[test]
    fn the_request_is_a_client_credentials_grant_with_basic_auth() {
        let e = endpoint("http://idp:8080/token");
        let request = String::from_utf8(e.request().unwrap().into_vec()).unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("POST /token HTTP/1.1\r\nHost: idp:8080\r\n"),
            "{head}"
        );
        let basic = STANDARD.encode("app one:s3cr:t&");
        assert!(head.contains(&format!("Authorization: Basic {basic}\r\n")));
        assert!(head.contains("Content-Type: application/x-www-form-urlencoded"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "grant_type=client_credentials&scope=kafka+produce");

        let mut e = e;
        e.header_urlencode = true;
        let request = String::from_utf8(e.request().unwrap().into_vec()).unwrap();
        let basic = STANDARD.encode("app+one:s3cr%3At%26");
        assert!(request.contains(&format!("Authorization: Basic {basic}\r\n")));

        assert!(endpoint("file:/t").request().is_none());
    }

    #[test]
    fn an_assertion_carries_the_template_and_the_times_and_goes_as_the_jwt_bearer_grant() {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "issuer".into());
        claims.insert("aud".into(), "https://idp/token".into());
        let mut header = serde_json::Map::new();
        header.insert("kid".into(), "key-1".into());
        let template = AssertionTemplate {
            algorithm: AssertionAlgorithm::Es256,
            private_key_file: "/k.pem".into(),
            passphrase: Some(Secret::new("pass-phrase")),
            template_file: None,
            header,
            claims,
            exp: Duration::from_secs(300),
            nbf: Duration::from_secs(60),
            jti: true,
        };
        let template = template
            .with_template(
                br#"{"header":{"x5t":"t"},"payload":{"iss":"from-template","tenant":"t1"}}"#,
            )
            .unwrap();
        let input = template.signing_input(now(), Some("id-1"));
        let (h, p) = input.split_once('.').unwrap();
        let json = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        assert_eq!(
            json(h),
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "key-1", "x5t": "t"})
        );
        assert_eq!(
            json(p),
            serde_json::json!({"iss": "from-template", "aud": "https://idp/token", "tenant": "t1",
                "iat": 1_000_000, "exp": 1_000_300, "nbf": 999_940, "jti": "id-1"})
        );
        assert!(!format!("{template:?}").contains("pass-phrase"));

        let mut e = endpoint("http://idp/token");
        e.assertion = Some(Assertion {
            source: AssertionSource::Signed(template),
            scope: Some("a b".into()),
        });
        let request = String::from_utf8(e.assertion_request("x.y.z").unwrap().into_vec()).unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("Authorization"), "{head}");
        assert_eq!(
            body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x.y.z&scope=a+b"
        );
    }

    #[test]
    fn a_token_comes_from_the_json_body_and_expires_at_its_exp() {
        let e = endpoint("http://idp/token");
        let token = jwt(r#"{"sub":"svc","exp":1000600,"scope":["a","b"]}"#);
        let body =
            format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":600}}"#);
        let plain = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t = e.token_from_response(plain.as_bytes(), now()).unwrap();
        assert_eq!(t.value().expose(), token);
        assert_eq!(
            t.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_000_600))
        );
        // Chunked, as many servers send it.
        let (a, b) = body.split_at(10);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};x=y\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        assert_eq!(e.token_from_response(chunked.as_bytes(), now()).unwrap(), t);
        // Neither: the body runs to the end of the stream.
        let bare = format!("HTTP/1.0 200 OK\r\n\r\n{body}");
        assert_eq!(e.token_from_response(bare.as_bytes(), now()).unwrap(), t);
        // Whole responses are told from cut ones, so a kept-open connection is not waited on.
        assert!(response_complete(plain.as_bytes()));
        assert!(!response_complete(&plain.as_bytes()[..plain.len() - 1]));
        assert!(response_complete(chunked.as_bytes()));
        assert!(!response_complete(&chunked.as_bytes()[..chunked.len() - 5]));
        assert!(!response_complete(bare.as_bytes()));
        // Both headers: the chunks frame the body, whichever header comes first (RFC 9112
        // 6.3), for the parser and for the reader alike.
        let both = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n{}",
            chunked.strip_prefix("HTTP/1.1 200 OK\r\n").unwrap()
        );
        let after = chunked.replacen("chunked\r\n", "chunked\r\nContent-Length: 3\r\n", 1);
        for both in [both, after] {
            assert_eq!(e.token_from_response(both.as_bytes(), now()).unwrap(), t);
            assert!(response_complete(both.as_bytes()));
            assert!(!response_complete(&both.as_bytes()[..both.len() - 5]));
        }
    }

    #[test]
    fn tokens_java_would_refuse_are_refused() {
        let e = endpoint("http://idp/token");
        for (token, why) in [
            ("opaque-token".to_string(), "not a JWT"),
            (jwt(r#"{"sub":"svc"}"#), "no numeric exp"),
            (jwt(r#"{"sub":"svc","exp":"soon"}"#), "no numeric exp"),
            (jwt(r#"{"sub":"svc","exp":999999}"#), "already expired"),
            (jwt(r#"{"exp":1000600}"#), "no sub claim"),
            (jwt(r#"{"sub":"","exp":1000600}"#), "no sub claim"),
            (
                jwt(r#"{"sub":"svc","exp":1000600,"scope":7}"#),
                "scope claim",
            ),
            ("a.%%%.c".to_string(), "not base64url"),
        ] {
            let e = e.token_from_jwt(&token, now()).unwrap_err();
            assert!(e.to_string().contains(why), "{e} should say {why}");
            assert!(!e.retriable());
        }
        // The claim names are configurable.
        let mut e = e;
        e.sub_claim = "client_id".into();
        let token = jwt(r#"{"client_id":"svc","exp":1000600}"#);
        assert!(e.token_from_jwt(&token, now()).is_ok());
    }

    /// An `exp` the system clock cannot hold (a buggy or hostile endpoint) is an error, not
    /// a panic inside the connection's token future.
    #[test]
    fn an_exp_beyond_the_clock_is_refused_without_a_panic() {
        let e = endpoint("http://idp/token");
        for exp in ["1e300", "1e19", "9.3e18"] {
            let token = jwt(&format!(r#"{{"sub":"svc","exp":{exp}}}"#));
            let got = std::panic::catch_unwind(|| e.token_from_jwt(&token, now()));
            let e = got
                .unwrap_or_else(|_| panic!("exp {exp} panicked"))
                .unwrap_err();
            assert!(
                e.to_string().contains("exp claim out of range"),
                "{exp}: {e}"
            );
            assert!(!e.retriable());
        }
    }

    #[test]
    fn an_error_status_names_the_cause_not_the_secret() {
        let e = endpoint("http://idp/token");
        let body =
            r#"{"error":"invalid_client","error_description":"bad secret s3cr:t& for app one"}"#;
        let response = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let err = e
            .token_from_response(response.as_bytes(), now())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("HTTP 401: invalid_client (bad secret"),
            "{text}"
        );
        assert!(!text.contains("s3cr:t&"), "{text}");
        assert!(!err.retriable());
        let unavailable = e
            .token_from_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", now())
            .unwrap_err();
        assert_eq!(unavailable.to_string(), "answered HTTP 503");
        assert!(unavailable.retriable());
        let moved = e
            .token_from_response(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", now())
            .unwrap_err();
        assert!(!moved.retriable());
        assert!(EndpointError::Status {
            status: 429,
            detail: None
        }
        .retriable());
        assert!(e
            .token_from_response(b"HTTP/1.1 200 OK\r\n\r\n{}", now())
            .unwrap_err()
            .to_string()
            .contains("no access_token"));
        assert!(e.token_from_response(b"garbage", now()).is_err());
        // Debug output does not show the secret either.
        assert!(!format!("{e:?}").contains("s3cr"));
    }

    /// The error text of a 400 whose `error_description` is `description`, for a request
    /// that presented `assertion` if given.
    fn refusal(e: &TokenEndpoint, description: &str, assertion: Option<&str>) -> String {
        let body = serde_json::json!({"error": "invalid_grant", "error_description": description})
            .to_string();
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let got = match assertion {
            Some(a) => e.token_from_assertion_response(response.as_bytes(), a, now()),
            None => e.token_from_response(response.as_bytes(), now()),
        };
        let err = got.unwrap_err();
        format!("{err} {err:?}")
    }

    /// An endpoint may echo a credential as it received it: the form field, the
    /// `Authorization` header, or the assertion, percent-encoded or not, and anywhere in a
    /// long description (the text is cut to 300 characters after the secret is struck out).
    #[test]
    fn an_echoed_credential_is_struck_out_in_every_form_sent() {
        let mut e = endpoint("http://idp/token");
        // "invalid_grant (" and 280 characters: the secret runs across character 300.
        let across = format!("{} s3cr:t&", "x".repeat(279));
        for (echoed, urlencode) in [
            (across.as_str(), false),
            ("client_secret=s3cr%3At%26", false),
            ("header Basic YXBwIG9uZTpzM2NyOnQm", false),
            ("header Basic YXBwK29uZTpzM2NyJTNBdCUyNg==", true),
        ] {
            e.header_urlencode = urlencode;
            let text = refusal(&e, echoed, None);
            for secret in ["s3cr", "YXBwIG9uZTpzM2NyOnQm", "YXBwK29uZTpzM2NyJTNBdCUyNg"] {
                assert!(!text.contains(secret), "{echoed}: {text}");
            }
            if echoed.len() < 100 {
                assert!(text.contains("(client"), "{echoed}: {text}");
            }
        }
        e.header_urlencode = false;

        let assertion = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhcHAifQ.c2ln+bmF0/dXJl=";
        for echoed in [
            format!("assertion {assertion} expired"),
            "assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhcHAifQ.c2ln%2BbmF0%2FdXJl%3D".to_string(),
        ] {
            let text = refusal(&e, &echoed, Some(assertion));
            assert!(!text.contains("eyJpc3MiOiJhcHAifQ"), "{text}");
            assert!(text.contains("(assertion)"), "{text}");
        }

        // An empty secret strikes out nothing (rather than everything between characters).
        e.credentials.as_mut().unwrap().client_secret = Secret::new("");
        let text = refusal(&e, "no secret given", None);
        assert!(text.contains("invalid_grant (no secret given)"), "{text}");
    }
}
