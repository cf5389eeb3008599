//! `sasl.jaas.config`, read as the Java client reads it (KIP-85): one JAAS login module
//! entry, `<loginModuleClass> <controlFlag> (<option>=<value>)*;`.
//!
//! The lexer follows the `StreamTokenizer` set-up of Kafka's `JaasConfig`:
//! - bytes 0 to 32 are white space; `;` and `=` are tokens of their own;
//! - `/` starts a comment: `/* ... */`, `// ...` and a lone `/ ...` (to the end of the line);
//! - `"` and `'` quote a value; inside quotes `\` escapes the next character, with `\n`,
//!   `\t`, `\r`, `\b`, `\f`, `\a`, `\v` and octal `\0`..`\377` as in Java;
//! - any other run of characters is a word, so values without spaces need no quotes.
//!
//! The control flag (`required`, `requisite`, `sufficient`, `optional`) is matched without
//! regard to case. As in Kafka's `JaasContext`, the client accepts exactly one entry; a
//! repeated option keeps its last value.
//!
//! One deliberate difference: a quoted value that reaches the end of a line or of the text
//! without its closing quote is refused, where Java's tokenizer silently ends it there.
//!
//! Errors name `sasl.jaas.config` and a character offset, never a value: a value may be a
//! password, and so may a stray word where an option name was expected.
//!
//! Options read for each login module (by [`JaasConfig::login`]):
//! - `PlainLoginModule`, `ScramLoginModule`: `username`, `password`.
//! - `OAuthBearerLoginModule`, first match wins:
//!   - `token`: a bearer token used as is (Herald's own option, for tokens obtained
//!     elsewhere; its expiry is not known, so it is never refreshed). Extensions from
//!     `extension_<name>` options.
//!   - `clientId`, `clientSecret`, optional `scope`: OAuth client credentials (KIP-768); the
//!     token endpoint is called by the actors crate. Extensions from `extension_<name>`.
//!   - otherwise an unsecured JWS as Kafka's `OAuthBearerUnsecuredLoginCallbackHandler`
//!     makes it: `unsecuredLoginStringClaim_<name>` (at least the principal claim),
//!     `unsecuredLoginNumberClaim_<name>`, `unsecuredLoginListClaim_<name>` (the first
//!     character is the delimiter, e.g. `",kafka,produce"`),
//!     `unsecuredLoginPrincipalClaimName` (default `sub`), `unsecuredLoginLifetimeSeconds`
//!     (default 3600), extensions from `unsecuredLoginExtension_<name>`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::oauthbearer::{Token, UnsecuredJws};
use super::token_endpoint::ClientCredentials;
use super::Secret;

/// The configuration key, named in every error.
const KEY: &str = "sasl.jaas.config";

/// Why `sasl.jaas.config` was refused. No variant holds an option's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JaasError {
    /// The text does not follow the grammar.
    #[error("{KEY}: {reason} (at character {offset})")]
    Syntax {
        /// What was expected or found.
        reason: &'static str,
        /// Character offset in the value where it went wrong.
        offset: usize,
    },
    /// `key=` with nothing usable after it.
    #[error("{KEY}: value not specified for {} (at character {offset})", named_option(.key))]
    MissingValue {
        /// The option's name, or empty when it is not one the login module reads: then it
        /// may be the second word of an unquoted value (`password=abc def=;`).
        key: String,
        /// Character offset just after the `=`.
        offset: usize,
    },
    /// The value holds no entry, or several.
    #[error("{KEY}: holds {count} login modules, should be 1")]
    ModuleCount {
        /// How many entries it holds.
        count: usize,
    },
    /// A login module Herald does not implement, such as Kerberos's.
    #[error("{KEY}: unsupported login module {module} (supported: PlainLoginModule, ScramLoginModule, OAuthBearerLoginModule)")]
    UnsupportedModule {
        /// The class's simple name when it looks like one, otherwise a placeholder.
        module: String,
    },
    /// The word after the module is not a control flag.
    #[error("{KEY}: invalid login module control flag at character {offset} (expected required, requisite, sufficient or optional)")]
    InvalidFlag {
        /// Character offset of the word.
        offset: usize,
    },
    /// An option the login module needs is absent.
    #[error("{KEY}: {module} requires option '{option}'")]
    MissingOption {
        /// The login module.
        module: LoginModule,
        /// The option it needs.
        option: String,
    },
    /// An option's value cannot be used.
    #[error("{KEY}: invalid value for option '{option}': {reason}")]
    InvalidOption {
        /// The option's name.
        option: String,
        /// What is wrong, without the value.
        reason: &'static str,
    },
}

/// A login module class Herald knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginModule {
    /// `org.apache.kafka.common.security.plain.PlainLoginModule`.
    Plain,
    /// `org.apache.kafka.common.security.scram.ScramLoginModule`.
    Scram,
    /// `org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule`.
    OAuthBearer,
}

impl LoginModule {
    /// The Java class name.
    pub fn class_name(self) -> &'static str {
        match self {
            LoginModule::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
            LoginModule::Scram => "org.apache.kafka.common.security.scram.ScramLoginModule",
            LoginModule::OAuthBearer => {
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
            }
        }
    }

    /// The module of a class name. A prefix before `org.apache.kafka.` is allowed, for the
    /// shaded copies some distributions ship.
    fn from_class_name(name: &str) -> Option<LoginModule> {
        [
            LoginModule::Plain,
            LoginModule::Scram,
            LoginModule::OAuthBearer,
        ]
        .into_iter()
        .find(|m| {
            name.strip_suffix(m.class_name())
                .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.'))
        })
    }
}

impl fmt::Display for LoginModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class_name();
        f.write_str(class.rsplit('.').next().unwrap_or(class))
    }
}

/// The JAAS control flag. Kafka's client reads it but does not act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlFlag {
    /// `required`.
    Required,
    /// `requisite`.
    Requisite,
    /// `sufficient`.
    Sufficient,
    /// `optional`.
    Optional,
}

impl ControlFlag {
    fn parse(word: &str) -> Option<ControlFlag> {
        [
            ("required", ControlFlag::Required),
            ("requisite", ControlFlag::Requisite),
            ("sufficient", ControlFlag::Sufficient),
            ("optional", ControlFlag::Optional),
        ]
        .into_iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|(_, flag)| flag)
    }
}

/// A parsed `sasl.jaas.config`: the login module, its flag and its options. Every option
/// value is held as a [`Secret`], since the parser cannot know which ones are.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasConfig {
    module: LoginModule,
    flag: ControlFlag,
    options: BTreeMap<String, Secret>,
}

impl JaasConfig {
    /// Parses the value of `sasl.jaas.config`.
    pub fn parse(text: &str) -> Result<JaasConfig, JaasError> {
        let mut entries = Vec::new();
        let mut lexer = Lexer::new(text);
        loop {
            let token = lexer.next_token()?;
            if token.kind == Kind::Eof {
                break;
            }
            entries.push(parse_entry(&mut lexer, token)?);
        }
        if entries.len() != 1 {
            return Err(JaasError::ModuleCount {
                count: entries.len(),
            });
        }
        let Entry {
            class,
            flag,
            options,
        } = entries.pop().expect("one entry");
        let module = LoginModule::from_class_name(&class).ok_or_else(|| unsupported(&class))?;
        Ok(JaasConfig {
            module,
            flag,
            options,
        })
    }

    /// The login module.
    pub fn module(&self) -> LoginModule {
        self.module
    }

    /// The control flag.
    pub fn flag(&self) -> ControlFlag {
        self.flag
    }

    /// One option's value.
    pub fn option(&self, key: &str) -> Option<&Secret> {
        self.options.get(key)
    }

    /// All options, sorted by name.
    pub fn options(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.options.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The credentials the options describe, as listed in the [module docs](self).
    pub fn login(&self) -> Result<Login, JaasError> {
        match self.module {
            LoginModule::Plain | LoginModule::Scram => {
                if self
                    .option("tokenauth")
                    .is_some_and(|v| v.expose().eq_ignore_ascii_case("true"))
                {
                    return Err(JaasError::InvalidOption {
                        option: "tokenauth".into(),
                        reason: "delegation tokens are not supported",
                    });
                }
                Ok(Login::Password {
                    username: self.required("username")?.expose().to_owned(),
                    password: self.required("password")?.clone(),
                })
            }
            LoginModule::OAuthBearer => self.oauthbearer_login(),
        }
    }

    /// For a token endpoint (`sasl.oauthbearer.token.endpoint.url`): `clientId`,
    /// `clientSecret` and `scope` (`None` without `clientId`), and the `extension_<name>`
    /// options.
    pub fn client_credentials(
        &self,
    ) -> Result<(Option<ClientCredentials>, BTreeMap<String, String>), JaasError> {
        if self.module != LoginModule::OAuthBearer {
            return Err(JaasError::InvalidOption {
                option: "(login module)".into(),
                reason: "sasl.oauthbearer.token.endpoint.url needs OAuthBearerLoginModule",
            });
        }
        Ok((self.credentials()?, self.prefixed("extension_")))
    }

    /// `clientId`, `clientSecret` (required with it) and `scope`; `None` without `clientId`.
    fn credentials(&self) -> Result<Option<ClientCredentials>, JaasError> {
        let Some(id) = self.option("clientId") else {
            return Ok(None);
        };
        Ok(Some(ClientCredentials {
            client_id: id.expose().to_owned(),
            client_secret: self.required("clientSecret")?.clone(),
            scope: self.option("scope").map(|s| s.expose().to_owned()),
        }))
    }

    fn required(&self, option: &str) -> Result<&Secret, JaasError> {
        self.option(option).ok_or_else(|| JaasError::MissingOption {
            module: self.module,
            option: option.to_owned(),
        })
    }

    /// Options `<prefix><name>`, as `name -> value`.
    fn prefixed(&self, prefix: &str) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.expose().to_owned())))
            .filter(|(name, _)| !name.is_empty())
            .collect()
    }

    fn oauthbearer_login(&self) -> Result<Login, JaasError> {
        if let Some(token) = self.option("token") {
            let token = Token::new(token.clone(), None).map_err(|_| JaasError::InvalidOption {
                option: "token".into(),
                reason: "not an RFC 6750 b64token",
            })?;
            return Ok(Login::StaticToken {
                token,
                extensions: self.prefixed("extension_"),
            });
        }
        if let Some(c) = self.credentials()? {
            return Ok(Login::ClientCredentials {
                client_id: c.client_id,
                client_secret: c.client_secret,
                scope: c.scope,
                extensions: self.prefixed("extension_"),
            });
        }

        let principal = self
            .option("unsecuredLoginPrincipalClaimName")
            .map_or("sub", |s| s.expose());
        let claims = self.prefixed(STRING_CLAIM);
        if !claims.contains_key(principal) {
            return Err(JaasError::MissingOption {
                module: self.module,
                option: format!("unsecuredLoginStringClaim_{principal}"),
            });
        }
        let numbers = self.prefixed(NUMBER_CLAIM);
        let lists = self.prefixed(LIST_CLAIM);
        for (prefix, names) in [
            (STRING_CLAIM, claims.keys()),
            (NUMBER_CLAIM, numbers.keys()),
            (LIST_CLAIM, lists.keys()),
        ] {
            if let Some(reserved) = names
                .into_iter()
                .find(|c| ["iat", "exp"].contains(&c.as_str()))
            {
                return Err(JaasError::InvalidOption {
                    option: format!("{prefix}{reserved}"),
                    reason: "iat and exp are set from unsecuredLoginLifetimeSeconds",
                });
            }
        }
        let mut jws = UnsecuredJws::with_principal_claim(principal);
        if let Some(seconds) = self.option("unsecuredLoginLifetimeSeconds") {
            let seconds =
                seconds
                    .expose()
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| JaasError::InvalidOption {
                        option: "unsecuredLoginLifetimeSeconds".into(),
                        reason: "not a whole number of seconds",
                    })?;
            jws = jws.lifetime(Duration::from_secs(seconds));
        }
        for (name, value) in claims {
            jws = jws.string_claim(name, value);
        }
        for (name, value) in numbers {
            // Java's `Double.valueOf`, which ignores surrounding white space.
            let number = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| JaasError::InvalidOption {
                    option: format!("{NUMBER_CLAIM}{name}"),
                    reason: "not a finite number",
                })?;
            jws = jws.number_claim(name, number);
        }
        for (name, value) in lists {
            let items = java_list(&value).ok_or_else(|| JaasError::InvalidOption {
                option: format!("{LIST_CLAIM}{name}"),
                reason: "a list whose first character is its delimiter, with at least one item",
            })?;
            jws = jws.list_claim(name, items);
        }
        Ok(Login::UnsecuredJws {
            jws,
            extensions: self.prefixed("unsecuredLoginExtension_"),
        })
    }
}

/// The option prefixes of the unsecured JWS's claims, as Kafka's
/// `OAuthBearerUnsecuredLoginCallbackHandler` names them.
const STRING_CLAIM: &str = "unsecuredLoginStringClaim_";
const NUMBER_CLAIM: &str = "unsecuredLoginNumberClaim_";
const LIST_CLAIM: &str = "unsecuredLoginListClaim_";

/// The items of an `unsecuredLoginListClaim_` value as Kafka's handler reads it: the first
/// character is the delimiter, the rest is split on it (Java's `String.split`, which drops
/// trailing empty items), and one empty item more is added when the rest starts or ends
/// with the delimiter or holds it twice in a row. A value of one character or none is the
/// empty list; `None` when nothing but delimiters follows (Java fails on it too).
fn java_list(value: &str) -> Option<Vec<String>> {
    let mut chars = value.chars();
    let Some(delimiter) = chars.next() else {
        return Some(Vec::new());
    };
    let rest = chars.as_str();
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let mut items: Vec<String> = rest.split(delimiter).map(str::to_owned).collect();
    while items.last().is_some_and(String::is_empty) {
        items.pop();
    }
    if items.is_empty() {
        return None;
    }
    let twice: String = [delimiter, delimiter].iter().collect();
    if rest.starts_with(delimiter) || rest.ends_with(delimiter) || rest.contains(&twice) {
        items.push(String::new());
    }
    Some(items)
}

impl fmt::Debug for JaasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JaasConfig")
            .field("module", &self.module)
            .field("flag", &self.flag)
            .field("options", &self.options)
            .finish()
    }
}

/// The credentials a `sasl.jaas.config` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Login {
    /// Username and password, for PLAIN and SCRAM.
    Password {
        /// The username.
        username: String,
        /// The password.
        password: Secret,
    },
    /// A fixed token (Herald's `token` option).
    StaticToken {
        /// The token; its expiry is unknown.
        token: Token,
        /// SASL extensions.
        extensions: BTreeMap<String, String>,
    },
    /// OAuth client credentials, exchanged for a token at the token endpoint by the actors
    /// crate.
    ClientCredentials {
        /// `clientId`.
        client_id: String,
        /// `clientSecret`.
        client_secret: Secret,
        /// `scope`, if set.
        scope: Option<String>,
        /// SASL extensions.
        extensions: BTreeMap<String, String>,
    },
    /// An unsecured JWS, built afresh at each login (it carries `iat` and `exp`).
    UnsecuredJws {
        /// The builder.
        jws: UnsecuredJws,
        /// SASL extensions.
        extensions: BTreeMap<String, String>,
    },
}

/// The error for an unknown class; its name is quoted only when it looks like a class name,
/// since a mangled value could put a secret in its place.
fn unsupported(class: &str) -> JaasError {
    let simple = class.rsplit('.').next().unwrap_or(class);
    let looks_like_class = simple.ends_with("LoginModule")
        && class.contains('.')
        && class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '$');
    JaasError::UnsupportedModule {
        module: if looks_like_class {
            simple.to_owned()
        } else {
            "(not a login module class name)".to_owned()
        },
    }
}

fn named_option(key: &str) -> String {
    if key.is_empty() {
        "an option".to_owned()
    } else {
        format!("key '{key}'")
    }
}

/// Whether `module` reads an option `name` (see the [module docs](self)): only such a name
/// is quoted, since any other word where a name should be may be part of a value.
fn is_option_name(module: Option<LoginModule>, name: &str) -> bool {
    let (names, prefixes): (&[&str], &[&str]) = match module {
        None => return false,
        Some(LoginModule::Plain | LoginModule::Scram) => {
            (&["username", "password", "tokenauth"], &[])
        }
        Some(LoginModule::OAuthBearer) => (
            &[
                "token",
                "clientId",
                "clientSecret",
                "scope",
                "unsecuredLoginPrincipalClaimName",
                "unsecuredLoginLifetimeSeconds",
            ],
            &[
                "extension_",
                STRING_CLAIM,
                NUMBER_CLAIM,
                LIST_CLAIM,
                "unsecuredLoginExtension_",
            ],
        ),
    };
    names.contains(&name)
        || prefixes.iter().any(|p| {
            name.strip_prefix(p).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            })
        })
}

/// One login module entry as written, before its class is looked up.
struct Entry {
    class: String,
    flag: ControlFlag,
    options: BTreeMap<String, Secret>,
}

/// One entry, from its first token to its `;`.
fn parse_entry(lexer: &mut Lexer<'_>, first: Lexed) -> Result<Entry, JaasError> {
    let class = first.text.ok_or(JaasError::Syntax {
        reason: "expected a login module class name",
        offset: first.offset,
    })?;
    let flag = lexer.next_token()?;
    let flag = match (flag.kind, flag.text) {
        (Kind::Eof, _) => {
            return Err(JaasError::Syntax {
                reason: "login module control flag not specified",
                offset: flag.offset,
            })
        }
        (_, Some(word)) => ControlFlag::parse(&word).ok_or(JaasError::InvalidFlag {
            offset: flag.offset,
        })?,
        (_, None) => {
            return Err(JaasError::InvalidFlag {
                offset: flag.offset,
            })
        }
    };

    let mut options = BTreeMap::new();
    loop {
        let key = lexer.next_token()?;
        match key.kind {
            Kind::Semicolon => {
                return Ok(Entry {
                    class,
                    flag,
                    options,
                })
            }
            Kind::Eof => {
                return Err(JaasError::Syntax {
                    reason: "entry not terminated by ';'",
                    offset: key.offset,
                })
            }
            _ => {}
        }
        let Some(name) = key.text else {
            return Err(JaasError::Syntax {
                reason: "expected an option name",
                offset: key.offset,
            });
        };
        let equals = lexer.next_token()?;
        if equals.kind != Kind::Equals {
            // `name` may be a misplaced value: do not quote it.
            return Err(JaasError::Syntax {
                reason: "expected '=' after an option name",
                offset: equals.offset,
            });
        }
        let value = lexer.next_token()?;
        let Some(value) = value.text else {
            let module = LoginModule::from_class_name(&class);
            return Err(JaasError::MissingValue {
                key: if is_option_name(module, &name) {
                    name
                } else {
                    String::new()
                },
                offset: value.offset,
            });
        };
        options.insert(name, Secret::new(value));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Quoted,
    Semicolon,
    Equals,
    /// A character that is none of the above (U+0081..=U+009F, as Java's tokenizer has it).
    Other,
    Eof,
}

/// One token; `text` is set for words and quoted strings (Java's `sval`).
#[derive(Debug)]
struct Lexed {
    kind: Kind,
    text: Option<String>,
    offset: usize,
}

/// Java's `StreamTokenizer` as `JaasConfig` configures it, over characters.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::iter::Enumerate<std::str::Chars<'a>>>,
    len: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            chars: text.chars().enumerate().peekable(),
            len: text.chars().count(),
        }
    }

    fn is_whitespace(c: char) -> bool {
        u32::from(c) <= 32
    }

    fn is_word(c: char) -> bool {
        match u32::from(c) {
            0..=32 | 0x81..=0x9f => false,
            _ => !matches!(c, '/' | '"' | '\'' | ';' | '='),
        }
    }

    fn skip_line(&mut self) {
        while self
            .chars
            .next_if(|&(_, c)| c != '\n' && c != '\r')
            .is_some()
        {}
    }

    fn next_token(&mut self) -> Result<Lexed, JaasError> {
        loop {
            let Some((offset, c)) = self.chars.next() else {
                return Ok(Lexed {
                    kind: Kind::Eof,
                    text: None,
                    offset: self.len,
                });
            };
            let token = |kind, text| Ok(Lexed { kind, text, offset });
            match c {
                c if Lexer::is_whitespace(c) => continue,
                '/' => match self.chars.peek().map(|&(_, c)| c) {
                    Some('*') => {
                        self.chars.next();
                        let mut star = false;
                        loop {
                            match self.chars.next() {
                                // Java ends the input at an unterminated block comment.
                                None => break,
                                Some((_, '/')) if star => break,
                                Some((_, c)) => star = c == '*',
                            }
                        }
                    }
                    // `//`, and a lone `/`, which is Java's comment character.
                    _ => self.skip_line(),
                },
                ';' => return token(Kind::Semicolon, None),
                '=' => return token(Kind::Equals, None),
                '"' | '\'' => return token(Kind::Quoted, Some(self.quoted(c, offset)?)),
                c if Lexer::is_word(c) => {
                    let mut word = String::from(c);
                    while let Some((_, c)) = self.chars.next_if(|&(_, c)| Lexer::is_word(c)) {
                        word.push(c);
                    }
                    return token(Kind::Word, Some(word));
                }
                _ => return token(Kind::Other, None),
            }
        }
    }

    /// The rest of a quoted string opened by `quote` at `offset`.
    fn quoted(&mut self, quote: char, offset: usize) -> Result<String, JaasError> {
        let unterminated = JaasError::Syntax {
            reason: "quoted value not closed on its line",
            offset,
        };
        let mut value = String::new();
        loop {
            let (_, c) = self.chars.next().ok_or(unterminated.clone())?;
            match c {
                c if c == quote => return Ok(value),
                '\n' | '\r' => return Err(unterminated),
                '\\' => {
                    let (_, e) = self.chars.next().ok_or(unterminated.clone())?;
                    value.push(match e {
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'v' => '\u{b}',
                        '0'..='7' => self.octal(e),
                        e => e,
                    });
                }
                c => value.push(c),
            }
        }
    }

    /// `\` followed by octal digits: up to three, and three only when the first is 0..=3, so
    /// the value stays within `\377`.
    fn octal(&mut self, first: char) -> char {
        let digit = |c: char| c.to_digit(8);
        let mut value = digit(first).unwrap_or(0);
        let max_digits = if first <= '3' { 3 } else { 2 };
        for _ in 1..max_digits {
            match self.chars.next_if(|&(_, c)| digit(c).is_some()) {
                Some((_, c)) => value = value * 8 + digit(c).unwrap_or(0),
                None => break,
            }
        }
        char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PLAIN: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
    const SCRAM: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";
    const OAUTH: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

    fn opt(config: &JaasConfig, key: &str) -> Option<String> {
        config.option(key).map(|s| s.expose().to_owned())
    }

    #[test]
    fn plain_with_quoted_values() {
        let c = JaasConfig::parse(&format!(
            r#"{PLAIN} required username="alice" password="al ice-secret";"#
        ))
        .unwrap();
        assert_eq!(c.module(), LoginModule::Plain);
        assert_eq!(c.flag(), ControlFlag::Required);
        assert_eq!(
            c.login().unwrap(),
            Login::Password {
                username: "alice".into(),
                password: Secret::new("al ice-secret")
            }
        );
    }

    #[test]
    fn scram_with_unquoted_values_flags_and_whitespace() {
        let c = JaasConfig::parse(&format!(
            "\n  {SCRAM}\tREQUISITE\n username=bob\r\n password=p@ss:word! ; \n"
        ))
        .unwrap();
        assert_eq!(c.module(), LoginModule::Scram);
        assert_eq!(c.flag(), ControlFlag::Requisite);
        assert_eq!(opt(&c, "password").as_deref(), Some("p@ss:word!"));
        for (flag, expected) in [
            ("sufficient", ControlFlag::Sufficient),
            ("Optional", ControlFlag::Optional),
            ("required", ControlFlag::Required),
        ] {
            let c = JaasConfig::parse(&format!("{SCRAM} {flag};")).unwrap();
            assert_eq!(c.flag(), expected);
        }
    }

    #[test]
    fn escapes_and_single_quotes() {
        let c = JaasConfig::parse(&format!(
            r#"{PLAIN} required username='o"brien' password="a\"b\\c\nd\te\101\0x" k='it\'s';"#
        ))
        .unwrap();
        assert_eq!(opt(&c, "username").as_deref(), Some("o\"brien"));
        assert_eq!(opt(&c, "password").as_deref(), Some("a\"b\\c\nd\teA\0x"));
        assert_eq!(opt(&c, "k").as_deref(), Some("it's"));
    }

    #[test]
    fn octal_escapes_follow_java() {
        let value = |escaped: &str| {
            let c = JaasConfig::parse(&format!("{PLAIN} required v=\"{escaped}\";")).unwrap();
            opt(&c, "v").unwrap()
        };
        assert_eq!(value(r"\377"), "\u{ff}");
        assert_eq!(value(r"\477"), "\u{27}7");
        assert_eq!(value(r"\08"), "\08");
    }

    #[test]
    fn comments_are_skipped() {
        let c = JaasConfig::parse(&format!(
            "/* a comment */ {PLAIN} // line comment\n required /* x */ username=u password=p; // end"
        ))
        .unwrap();
        assert_eq!(opt(&c, "username").as_deref(), Some("u"));
    }

    #[test]
    fn quoted_keys_empty_values_and_last_value_wins() {
        let c = JaasConfig::parse(&format!(
            r#"{PLAIN} required "username"=u password="" password=q;"#
        ))
        .unwrap();
        assert_eq!(opt(&c, "username").as_deref(), Some("u"));
        assert_eq!(opt(&c, "password").as_deref(), Some("q"));
    }

    #[test]
    fn shaded_class_names_are_recognised() {
        let c = JaasConfig::parse(&format!(
            "kafkashaded.{PLAIN} required username=u password=p;"
        ))
        .unwrap();
        assert_eq!(c.module(), LoginModule::Plain);
        assert!(JaasConfig::parse(&format!("x{PLAIN} required;")).is_err());
    }

    #[test]
    fn syntax_errors_name_the_key() {
        let cases = [
            (String::new(), "holds 0 login modules"),
            ("   // nothing\n".to_owned(), "holds 0 login modules"),
            (PLAIN.to_owned(), "control flag not specified"),
            (
                format!("{PLAIN} mandatory username=u;"),
                "invalid login module control flag",
            ),
            (
                format!("{PLAIN} required username=u"),
                "not terminated by ';'",
            ),
            (format!("{PLAIN} required username;"), "expected '='"),
            (
                format!("{PLAIN} required username=;"),
                "value not specified for key 'username'",
            ),
            (
                format!("{OAUTH} required extension_traceId=;"),
                "value not specified for key 'extension_traceId'",
            ),
            (
                format!("{PLAIN} required password=abc def==;"),
                "value not specified for an option (at character",
            ),
            (
                format!("{PLAIN} required username=u; {SCRAM} required;"),
                "holds 2 login modules",
            ),
            (format!("{PLAIN} required =u;"), "expected an option name"),
            (
                format!("; {PLAIN} required;"),
                "expected a login module class name",
            ),
            (
                format!("{PLAIN} required password=\"abc"),
                "quoted value not closed",
            ),
            (
                format!("{PLAIN} required password=\"abc\n\";"),
                "quoted value not closed",
            ),
            (
                "com.sun.security.auth.module.Krb5LoginModule required;".to_owned(),
                "unsupported login module Krb5LoginModule",
            ),
        ];
        for (text, expected) in cases {
            let e = JaasConfig::parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("sasl.jaas.config: "), "{e}");
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn errors_never_echo_values() {
        let secret = "Sup3rS3cret";
        let cases = [
            format!("{PLAIN} required username=u {secret};"),
            format!("{PLAIN} required username=u password=\"{secret}"),
            format!("{PLAIN} {secret} username=u;"),
            format!("{secret} required;"),
            format!("{secret}LoginModule required;"),
            format!("{PLAIN} required username=u password={secret}"),
            format!("{OAUTH} required token=\"{secret} x\";"),
            format!("{OAUTH} required unsecuredLoginStringClaim_sub=a unsecuredLoginLifetimeSeconds={secret};"),
            // An unquoted value with a space: its second word reads as an option name.
            format!("{PLAIN} required username=u password=abc {secret}==;"),
            format!("{OAUTH} required clientId=app clientSecret=abc {secret}=;"),
            format!("{OAUTH} required clientSecret=abc extension_{secret}+x=;"),
        ];
        for text in cases {
            let e = JaasConfig::parse(&text).and_then(|c| c.login().map(|_| ()));
            let e = e.unwrap_err();
            for shown in [format!("{e:?}"), e.to_string()] {
                assert!(!shown.contains(secret), "{text:?}: {shown}");
            }
        }
    }

    /// The claims of an unsecured JWS, decoded from the token `config` makes.
    fn unsecured_claims(config: &str) -> serde_json::Value {
        let login = JaasConfig::parse(config).unwrap().login().unwrap();
        let Login::UnsecuredJws { jws, .. } = login else {
            panic!("expected an unsecured JWS");
        };
        let token = jws.build(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let payload = token.value().expose().split('.').nth(1).unwrap().to_owned();
        use base64::Engine;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    /// Kafka's handler also makes number and list claims (a broker's
    /// `unsecuredValidatorRequiredScope` checks a list `scope`); dropping them silently
    /// made a token the broker refuses where Java's is accepted.
    #[test]
    fn unsecured_jws_number_and_list_claims_as_kafka_makes_them() {
        let claims = unsecured_claims(&format!(
            r#"{OAUTH} required unsecuredLoginStringClaim_sub="admin"
               unsecuredLoginListClaim_scope=",kafka,produce" unsecuredLoginNumberClaim_n=" 42.5"
               unsecuredLoginListClaim_odd="|a||b|" unsecuredLoginListClaim_none="x";"#
        ));
        assert_eq!(claims["sub"], "admin");
        assert_eq!(claims["scope"], serde_json::json!(["kafka", "produce"]));
        assert_eq!(claims["n"], serde_json::json!(42.5));
        // Java's String.split, then one empty item for the doubled delimiter.
        assert_eq!(claims["odd"], serde_json::json!(["a", "", "b", ""]));
        assert_eq!(claims["none"], serde_json::json!([]));

        for (option, value) in [
            ("unsecuredLoginNumberClaim_n", "many"),
            ("unsecuredLoginNumberClaim_n", "NaN"),
            ("unsecuredLoginListClaim_l", ",,,"),
            ("unsecuredLoginNumberClaim_exp", "1"),
            ("unsecuredLoginListClaim_iat", ",1"),
        ] {
            let config =
                format!(r#"{OAUTH} required unsecuredLoginStringClaim_sub=a {option}="{value}";"#);
            let e = JaasConfig::parse(&config).unwrap().login().unwrap_err();
            assert!(
                matches!(&e, JaasError::InvalidOption { option: o, .. } if o == option),
                "{option}={value}: {e}"
            );
        }
    }

    #[test]
    fn missing_credentials() {
        let c = JaasConfig::parse(&format!("{SCRAM} required username=u;")).unwrap();
        assert_eq!(
            c.login().unwrap_err().to_string(),
            "sasl.jaas.config: ScramLoginModule requires option 'password'"
        );
        let c = JaasConfig::parse(&format!(
            "{SCRAM} required username=u password=p tokenauth=true;"
        ))
        .unwrap();
        assert!(matches!(c.login(), Err(JaasError::InvalidOption { .. })));
    }

    #[test]
    fn oauthbearer_unsecured() {
        let c = JaasConfig::parse(&format!(
            r#"{OAUTH} required unsecuredLoginStringClaim_sub="admin" unsecuredLoginLifetimeSeconds=60
               unsecuredLoginExtension_logicalCluster=lkc-1;"#
        ))
        .unwrap();
        let Login::UnsecuredJws { jws, extensions } = c.login().unwrap() else {
            panic!("expected an unsecured JWS");
        };
        assert_eq!(
            jws,
            UnsecuredJws::new("admin").lifetime(Duration::from_secs(60))
        );
        assert_eq!(
            extensions,
            BTreeMap::from([("logicalCluster".to_owned(), "lkc-1".to_owned())])
        );

        let c = JaasConfig::parse(&format!(
            "{OAUTH} required unsecuredLoginPrincipalClaimName=principal unsecuredLoginStringClaim_principal=bob;"
        ))
        .unwrap();
        assert!(matches!(c.login(), Ok(Login::UnsecuredJws { .. })));

        let c = JaasConfig::parse(&format!("{OAUTH} required;")).unwrap();
        assert_eq!(
            c.login().unwrap_err().to_string(),
            "sasl.jaas.config: OAuthBearerLoginModule requires option 'unsecuredLoginStringClaim_sub'"
        );
        let c = JaasConfig::parse(&format!(
            "{OAUTH} required unsecuredLoginStringClaim_sub=a unsecuredLoginStringClaim_exp=1;"
        ))
        .unwrap();
        assert!(matches!(c.login(), Err(JaasError::InvalidOption { .. })));
    }

    #[test]
    fn oauthbearer_static_token_and_client_credentials() {
        let c = JaasConfig::parse(&format!(
            r#"{OAUTH} required token="abc.def." extension_traceId=t1;"#
        ))
        .unwrap();
        let Login::StaticToken { token, extensions } = c.login().unwrap() else {
            panic!("expected a static token");
        };
        assert_eq!(token.value().expose(), "abc.def.");
        assert_eq!(token.expires_at(), None);
        assert_eq!(extensions.get("traceId").map(String::as_str), Some("t1"));

        let c = JaasConfig::parse(&format!(
            r#"{OAUTH} required clientId=app clientSecret="s" scope=kafka;"#
        ))
        .unwrap();
        assert_eq!(
            c.login().unwrap(),
            Login::ClientCredentials {
                client_id: "app".into(),
                client_secret: Secret::new("s"),
                scope: Some("kafka".into()),
                extensions: BTreeMap::new(),
            }
        );
        let c = JaasConfig::parse(&format!("{OAUTH} required clientId=app;")).unwrap();
        assert!(matches!(c.login(), Err(JaasError::MissingOption { .. })));
    }

    #[test]
    fn debug_hides_option_values_and_credentials() {
        let c = JaasConfig::parse(&format!(
            r#"{PLAIN} required username=alice password="hunter2";"#
        ))
        .unwrap();
        let login = c.login().unwrap();
        let oauth = JaasConfig::parse(&format!(
            r#"{OAUTH} required clientId=app clientSecret="hunter2";"#
        ))
        .unwrap();
        let token = JaasConfig::parse(&format!(r#"{OAUTH} required token="hunter2";"#)).unwrap();
        for text in [
            format!("{c:?}"),
            format!("{login:?}"),
            format!("{oauth:?}"),
            format!("{:?}", oauth.login().unwrap()),
            format!("{:?}", token.login().unwrap()),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(format!("{c:?}").contains("password"));
    }

    /// Quotes `value` as a Java JAAS file would need it.
    fn quote(value: &str) -> String {
        let mut out = String::from('"');
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest! {
        #[test]
        fn quoted_values_round_trip(value in "\\PC*") {
            let c = JaasConfig::parse(&format!("{PLAIN} required username=u password={};", quote(&value))).unwrap();
            prop_assert_eq!(opt(&c, "password"), Some(value));
        }

        #[test]
        fn any_text_parses_or_fails_cleanly(text in "\\PC{0,80}") {
            let _ = JaasConfig::parse(&text).map(|c| c.login());
        }
    }
}
