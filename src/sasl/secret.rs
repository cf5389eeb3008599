//! Values that must never reach a log: passwords, tokens, and the bytes that carry them.

use std::fmt;

/// A password or a token. `Debug` and `Display` print `[hidden]`; the value is reached only
/// through [`Secret::expose`], so every place that reads it is easy to find.
///
/// It is not zeroed on drop: the core forbids `unsafe`, and the value has been copied through
/// configuration strings before it arrives here anyway.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself. Call it only where the value is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

/// The `auth_bytes` of one SaslAuthenticate request. They may carry a password (PLAIN) or a
/// token (OAUTHBEARER), so `Debug` prints only their length.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthBytes(Vec<u8>);

impl AuthBytes {
    /// Wraps the bytes of a message, for mechanisms written outside this module.
    pub fn new(bytes: Vec<u8>) -> AuthBytes {
        AuthBytes(bytes)
    }

    /// The bytes, to be put in the request.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, moved out.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// Their length.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AuthBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthBytes([{} bytes hidden])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_hidden_in_debug_and_display() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[hidden]");
        assert_eq!(format!("{secret}"), "[hidden]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn auth_bytes_debug_shows_only_the_length() {
        let bytes = AuthBytes::new(b"\0user\0hunter2".to_vec());
        let debug = format!("{bytes:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("13 bytes"), "{debug}");
    }
}
