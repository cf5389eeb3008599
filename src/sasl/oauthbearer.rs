//! `OAUTHBEARER` (RFC 7628, brought to Kafka by KIP-255): the client sends a bearer token in
//! one message; the broker either accepts it (empty answer) or answers with a JSON error, to
//! which the client must reply `0x01` before the broker fails the request.
//!
//! ```text
//!   client  n,,\x01auth=Bearer TOKEN\x01key=value\x01...\x01
//!   broker  (empty)                      -> done
//!         | {"status":"invalid_token"}   -> client sends \x01, broker fails the request
//! ```
//!
//! Tokens come from outside this crate (a token provider in the actors crate refreshes them
//! before [`Token::expires_at`]); [`UnsecuredJws`] makes the unsigned tokens Kafka's default
//! broker validator accepts, for tests and development.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{AuthBytes, Mechanism, SaslClient, SaslError, Secret, Step};

/// RFC 7628's separator, `kvsep`.
const SEPARATOR: u8 = 0x01;

/// The most characters of a broker's error text kept in an error.
const MAX_STATUS_CHARS: usize = 256;

/// A bearer token and when it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: Secret,
    expires_at: Option<SystemTime>,
}

impl Token {
    /// A token; `expires_at` is `None` when the expiry is not known (a static token), in which
    /// case nothing refreshes it. The value must be an RFC 6750 `b64token` (letters, digits,
    /// `-._~+/`, then optional `=` padding), which every JWS is.
    pub fn new(value: Secret, expires_at: Option<SystemTime>) -> Result<Token, SaslError> {
        if !is_b64token(value.expose()) {
            return Err(SaslError::InvalidCredentials {
                mechanism: Mechanism::OAuthBearer,
                reason: "token is empty or not an RFC 6750 b64token",
            });
        }
        Ok(Token { value, expires_at })
    }

    /// The token itself.
    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// When the token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// How long the token stays valid after `now`: `Some(ZERO)` once expired, `None` when the
    /// expiry is unknown.
    pub fn lifetime_from(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &self.value)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// RFC 6750: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(value: &str) -> bool {
    let body = value.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Where the exchange stands.
#[derive(Debug)]
enum State {
    Start,
    InitialSent,
    /// The broker refused the token with this status; the client has answered `0x01` and
    /// waits for the broker's failure.
    ErrorReceived {
        status: String,
    },
    Done,
    Failed,
}

/// The OAUTHBEARER client state machine.
pub struct OAuthBearerClient {
    token: Token,
    extensions: BTreeMap<String, String>,
    state: State,
}

impl OAuthBearerClient {
    /// A client that presents `token` with no SASL extensions.
    pub fn new(token: Token) -> OAuthBearerClient {
        OAuthBearerClient {
            token,
            extensions: BTreeMap::new(),
            state: State::Start,
        }
    }

    /// A client that presents `token` with SASL extensions (KIP-342), e.g. the
    /// `logicalCluster` some hosted brokers want. Keys are letters only and not `auth`; values
    /// are printable ASCII, space, tab, CR or LF (RFC 7628 section 3.1).
    pub fn with_extensions<K, V>(
        token: Token,
        extensions: impl IntoIterator<Item = (K, V)>,
    ) -> Result<OAuthBearerClient, SaslError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let invalid = |reason| SaslError::InvalidCredentials {
            mechanism: Mechanism::OAuthBearer,
            reason,
        };
        let mut map = BTreeMap::new();
        for (key, value) in extensions {
            let (key, value) = (key.into(), value.into());
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid("SASL extension name is not letters only"));
            }
            if key == "auth" {
                return Err(invalid("SASL extension name `auth` is reserved"));
            }
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| matches!(b, 0x21..=0x7e | b' ' | b'\t' | b'\r' | b'\n'))
            {
                return Err(invalid(
                    "SASL extension value is empty or not printable ASCII",
                ));
            }
            map.insert(key, value);
        }
        Ok(OAuthBearerClient {
            token,
            extensions: map,
            state: State::Start,
        })
    }

    fn out_of_order(reason: &'static str) -> SaslError {
        SaslError::OutOfOrder {
            mechanism: Mechanism::OAuthBearer,
            reason,
        }
    }
}

impl fmt::Debug for OAuthBearerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerClient")
            .field("token", &self.token)
            .field("extensions", &self.extensions.keys().collect::<Vec<_>>())
            .field("state", &self.state)
            .finish()
    }
}

impl SaslClient for OAuthBearerClient {
    fn mechanism(&self) -> Mechanism {
        Mechanism::OAuthBearer
    }

    fn initial_response(&mut self) -> Result<AuthBytes, SaslError> {
        if !matches!(self.state, State::Start) {
            return Err(Self::out_of_order("initial response asked twice"));
        }
        self.state = State::InitialSent;
        let mut message = b"n,,\x01auth=Bearer ".to_vec();
        message.extend_from_slice(self.token.value.expose().as_bytes());
        message.push(SEPARATOR);
        for (key, value) in &self.extensions {
            message.extend_from_slice(key.as_bytes());
            message.push(b'=');
            message.extend_from_slice(value.as_bytes());
            message.push(SEPARATOR);
        }
        message.push(SEPARATOR);
        Ok(AuthBytes::new(message))
    }

    fn step(&mut self, auth_bytes: &[u8]) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::InitialSent if auth_bytes.is_empty() => {
                self.state = State::Done;
                Ok(Step::Done)
            }
            State::InitialSent => {
                // RFC 7628 section 3.2.3: answer the error with a lone kvsep; the broker then
                // fails the request and `rejected` reports the status kept here.
                self.state = State::ErrorReceived {
                    status: error_status(auth_bytes),
                };
                Ok(Step::Send(AuthBytes::new(vec![SEPARATOR])))
            }
            State::ErrorReceived { status } => Err(SaslError::TokenRejected {
                status,
                message: None,
            }),
            State::Start => {
                self.state = State::Start;
                Err(Self::out_of_order(
                    "broker response before the initial response",
                ))
            }
            State::Done => {
                self.state = State::Done;
                Err(Self::out_of_order(
                    "broker response after the exchange ended",
                ))
            }
            State::Failed => Err(Self::out_of_order(
                "broker response after the exchange failed",
            )),
        }
    }

    fn rejected(&mut self, error_code: i16, error_message: Option<&str>) -> SaslError {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::ErrorReceived { status } => SaslError::TokenRejected {
                status,
                message: error_message.map(str::to_owned),
            },
            _ => SaslError::rejected(Mechanism::OAuthBearer, error_code, error_message),
        }
    }
}

/// The `status` of the broker's JSON error (`{"status":"invalid_token", ...}`), or the whole
/// text, cut short, when it has none. Kafka writes this JSON by string formatting, so a small
/// scanner reads it; nothing here needs a JSON parser.
fn error_status(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let status = json_string_field(&text, "status").unwrap_or_else(|| text.trim().to_owned());
    status.chars().take(MAX_STATUS_CHARS).collect()
}

/// The string value of `"name"` in a flat JSON object, with `\"` and `\\` unescaped.
fn json_string_field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\"");
    let rest = &json[json.find(&key)? + key.len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
}

/// An unsecured JWS (`{"alg":"none"}`, empty signature), as Kafka's
/// `OAuthBearerUnsecuredLoginCallbackHandler` makes them and its default broker validator
/// accepts them. For tests and development only: anyone can forge one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsecuredJws {
    principal_claim_name: String,
    claims: BTreeMap<String, Claim>,
    lifetime: Duration,
}

/// The value of one claim of an [`UnsecuredJws`]: Kafka's handler makes strings, numbers and
/// lists of strings (`unsecuredLogin{String,Number,List}Claim_<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    String(String),
    /// The bits of an `f64`, so that the claims stay `Eq`.
    Number(u64),
    List(Vec<String>),
}

impl UnsecuredJws {
    /// Kafka's default lifetime (`unsecuredLoginLifetimeSeconds`): one hour.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

    /// A token whose principal, `sub`, is `subject`.
    pub fn new(subject: impl Into<String>) -> UnsecuredJws {
        UnsecuredJws {
            principal_claim_name: "sub".to_owned(),
            claims: BTreeMap::from([("sub".to_owned(), Claim::String(subject.into()))]),
            lifetime: UnsecuredJws::DEFAULT_LIFETIME,
        }
    }

    /// A token with no claims yet, whose principal is in claim `principal_claim_name`
    /// (`unsecuredLoginPrincipalClaimName`); set that claim with [`string_claim`](Self::string_claim).
    pub fn with_principal_claim(principal_claim_name: impl Into<String>) -> UnsecuredJws {
        UnsecuredJws {
            principal_claim_name: principal_claim_name.into(),
            claims: BTreeMap::new(),
            lifetime: UnsecuredJws::DEFAULT_LIFETIME,
        }
    }

    /// Adds or replaces a string claim (`unsecuredLoginStringClaim_<name>`).
    pub fn string_claim(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> UnsecuredJws {
        self.claims.insert(name.into(), Claim::String(value.into()));
        self
    }

    /// Adds or replaces a number claim (`unsecuredLoginNumberClaim_<name>`); it must be
    /// finite for [`build`](Self::build) to succeed.
    pub fn number_claim(mut self, name: impl Into<String>, value: f64) -> UnsecuredJws {
        self.claims
            .insert(name.into(), Claim::Number(value.to_bits()));
        self
    }

    /// Adds or replaces a claim holding a list of strings (`unsecuredLoginListClaim_<name>`,
    /// e.g. the `scope` a broker's `unsecuredValidatorRequiredScope` asks for).
    pub fn list_claim<S: Into<String>>(
        mut self,
        name: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> UnsecuredJws {
        let values = values.into_iter().map(Into::into).collect();
        self.claims.insert(name.into(), Claim::List(values));
        self
    }

    /// Sets the lifetime (`unsecuredLoginLifetimeSeconds`).
    pub fn lifetime(mut self, lifetime: Duration) -> UnsecuredJws {
        self.lifetime = lifetime;
        self
    }

    /// The token, issued at `now` (whole seconds) and expiring `lifetime` later. Fails when
    /// the principal claim is missing or empty, or a string claim is named `iat` or `exp`,
    /// which the builder sets (Kafka refuses the same).
    pub fn build(&self, now: SystemTime) -> Result<Token, SaslError> {
        let invalid = |reason| SaslError::InvalidCredentials {
            mechanism: Mechanism::OAuthBearer,
            reason,
        };
        match self.claims.get(&self.principal_claim_name) {
            Some(Claim::String(principal)) if !principal.trim().is_empty() => {}
            _ => return Err(invalid("unsecured JWS without its principal claim")),
        }
        if self.claims.contains_key("iat") || self.claims.contains_key("exp") {
            return Err(invalid("unsecured JWS claims may not be named iat or exp"));
        }
        let not_finite =
            |c: &Claim| matches!(c, Claim::Number(b) if !f64::from_bits(*b).is_finite());
        if self.claims.values().any(not_finite) {
            return Err(invalid("unsecured JWS number claim is not a finite number"));
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let exp = iat.saturating_add(self.lifetime.as_secs());
        // Checked: `UNIX_EPOCH + exp` panics past what `SystemTime` holds.
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or(invalid(
                "unsecured JWS lifetime (unsecuredLoginLifetimeSeconds) too long",
            ))?;

        let mut payload = format!("{{\"iat\":{iat},\"exp\":{exp}");
        for (name, value) in &self.claims {
            payload.push(',');
            push_json_string(&mut payload, name);
            payload.push(':');
            match value {
                Claim::String(s) => push_json_string(&mut payload, s),
                Claim::Number(bits) => payload.push_str(&f64::from_bits(*bits).to_string()),
                Claim::List(items) => {
                    payload.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            payload.push(',');
                        }
                        push_json_string(&mut payload, item);
                    }
                    payload.push(']');
                }
            }
        }
        payload.push('}');
        let value = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        );
        Token::new(Secret::new(value), Some(expires_at))
    }
}

/// Appends `value` as a JSON string literal.
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";

    fn token() -> Token {
        Token::new(Secret::new(TOKEN), None).unwrap()
    }

    #[test]
    fn initial_response_without_extensions() {
        let mut c = OAuthBearerClient::new(token());
        let bytes = c.initial_response().unwrap();
        assert_eq!(
            bytes.as_bytes(),
            format!("n,,\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()
        );
        assert_eq!(c.step(b""), Ok(Step::Done));
    }

    #[test]
    fn initial_response_with_extensions() {
        let mut c = OAuthBearerClient::with_extensions(
            token(),
            [("logicalCluster", "lkc-1"), ("a", "b c")],
        )
        .unwrap();
        let bytes = c.initial_response().unwrap();
        assert_eq!(
            bytes.as_bytes(),
            format!("n,,\x01auth=Bearer {TOKEN}\x01a=b c\x01logicalCluster=lkc-1\x01\x01")
                .as_bytes()
        );
    }

    #[test]
    fn invalid_extensions_are_refused() {
        for (k, v) in [
            ("auth", "x"),
            ("no_underscore", "x"),
            ("", "x"),
            ("k", ""),
            ("k", "\x01"),
        ] {
            assert!(
                OAuthBearerClient::with_extensions(token(), [(k, v)]).is_err(),
                "{k:?}={v:?}"
            );
        }
    }

    #[test]
    fn broker_error_is_answered_with_kvsep_then_reported() {
        let mut c = OAuthBearerClient::new(token());
        let _ = c.initial_response().unwrap();
        let answer = c
            .step(br#"{"status":"invalid_token", "scope":"x"}"#)
            .unwrap();
        assert_eq!(answer, Step::Send(AuthBytes::new(vec![0x01])));
        let e = c.rejected(58, Some("{\"status\":\"invalid_token\"}"));
        assert_eq!(
            e,
            SaslError::TokenRejected {
                status: "invalid_token".into(),
                message: Some("{\"status\":\"invalid_token\"}".into()),
            }
        );
        assert!(e.to_string().contains("status invalid_token"), "{e}");
    }

    #[test]
    fn broker_error_without_json_keeps_the_text() {
        let mut c = OAuthBearerClient::new(token());
        let _ = c.initial_response().unwrap();
        let _ = c.step(b"  something odd ").unwrap();
        // A broker that accepts the lone kvsep still ends the exchange in failure.
        assert_eq!(
            c.step(b""),
            Err(SaslError::TokenRejected {
                status: "something odd".into(),
                message: None
            })
        );
    }

    #[test]
    fn rejection_without_error_exchange_is_plain() {
        let mut c = OAuthBearerClient::new(token());
        let _ = c.initial_response().unwrap();
        assert!(matches!(
            c.rejected(58, None),
            SaslError::Rejected {
                mechanism: Mechanism::OAuthBearer,
                ..
            }
        ));
    }

    #[test]
    fn json_status_scanner() {
        assert_eq!(
            json_string_field(r#"{"status" : "a\"b"}"#, "status").as_deref(),
            Some("a\"b")
        );
        assert_eq!(json_string_field(r#"{"status":1}"#, "status"), None);
        assert_eq!(
            json_string_field(r#"{"status":"unterminated"#, "status"),
            None
        );
        assert_eq!(error_status(&[b'x'; 1000]).len(), MAX_STATUS_CHARS);
    }

    #[test]
    fn token_values_are_checked() {
        assert!(Token::new(Secret::new("abc.def-_~+/=="), None).is_ok());
        for bad in ["", "a b", "a\x01b", "==", "tok=en"] {
            let e = Token::new(Secret::new(bad), None).unwrap_err();
            if !bad.is_empty() {
                assert!(!format!("{e:?}{e}").contains(bad), "{e:?}");
            }
        }
    }

    #[test]
    fn token_lifetime() {
        let at = UNIX_EPOCH + Duration::from_secs(1000);
        let t = Token::new(Secret::new("x"), Some(at)).unwrap();
        assert_eq!(
            t.lifetime_from(UNIX_EPOCH + Duration::from_secs(400)),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            t.lifetime_from(UNIX_EPOCH + Duration::from_secs(2000)),
            Some(Duration::ZERO)
        );
        assert_eq!(token().lifetime_from(at), None);
    }

    #[test]
    fn unsecured_jws_has_kafkas_shape() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = UnsecuredJws::new("admin")
            .string_claim("name", "A \"quoted\" one")
            .lifetime(Duration::from_secs(600))
            .build(now)
            .unwrap();
        assert_eq!(
            token.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_600))
        );
        let value = token.value().expose();
        let parts: Vec<&str> = value.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "empty signature");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            br#"{"alg":"none"}"#
        );
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            payload,
            r#"{"iat":1700000000,"exp":1700000600,"name":"A \"quoted\" one","sub":"admin"}"#
        );
        // Kafka's broker accepts only [-_.a-zA-Z0-9] in the token.
        assert!(value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }

    #[test]
    fn unsecured_jws_needs_its_principal_and_no_reserved_claims() {
        let now = SystemTime::UNIX_EPOCH;
        assert!(UnsecuredJws::with_principal_claim("principal")
            .build(now)
            .is_err());
        assert!(UnsecuredJws::with_principal_claim("principal")
            .string_claim("principal", "bob")
            .build(now)
            .is_ok());
        assert!(UnsecuredJws::new("").build(now).is_err());
        assert!(UnsecuredJws::new("a")
            .string_claim("exp", "1")
            .build(now)
            .is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let mut c =
            OAuthBearerClient::with_extensions(token(), [("logicalCluster", "lkc-1")]).unwrap();
        let first = c.initial_response().unwrap();
        let _ = c.step(br#"{"status":"invalid_token"}"#).unwrap();
        let e = c.rejected(58, Some("failed"));
        for text in [
            format!("{c:?}"),
            format!("{first:?}"),
            format!("{:?}", token()),
            format!("{e:?}"),
            e.to_string(),
        ] {
            assert!(!text.contains("eyJ"), "{text}");
        }
    }
}
