//! `PLAIN` (RFC 4616): one message, `authzid NUL username NUL password`, with the authzid
//! left empty as the Java client leaves it.

use std::fmt;

use super::{AuthBytes, Mechanism, SaslClient, SaslError, Secret, Step};

/// The PLAIN client: one request, then done.
pub struct PlainClient {
    username: String,
    password: Secret,
    sent: bool,
}

impl PlainClient {
    /// A client for `username` and `password`. Neither may contain a NUL byte, which is the
    /// message's separator; the username may not be empty.
    pub fn new(username: impl Into<String>, password: Secret) -> Result<PlainClient, SaslError> {
        let username = username.into();
        let invalid = |reason| SaslError::InvalidCredentials {
            mechanism: Mechanism::Plain,
            reason,
        };
        if username.is_empty() {
            return Err(invalid("empty username"));
        }
        if username.contains('\0') {
            return Err(invalid("NUL byte in the username"));
        }
        if password.expose().contains('\0') {
            return Err(invalid("NUL byte in the password"));
        }
        Ok(PlainClient {
            username,
            password,
            sent: false,
        })
    }
}

impl fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainClient")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sent", &self.sent)
            .finish()
    }
}

impl SaslClient for PlainClient {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Plain
    }

    fn initial_response(&mut self) -> Result<AuthBytes, SaslError> {
        if self.sent {
            return Err(SaslError::OutOfOrder {
                mechanism: Mechanism::Plain,
                reason: "initial response asked twice",
            });
        }
        self.sent = true;
        let password = self.password.expose();
        let mut message = Vec::with_capacity(2 + self.username.len() + password.len());
        message.push(0);
        message.extend_from_slice(self.username.as_bytes());
        message.push(0);
        message.extend_from_slice(password.as_bytes());
        Ok(AuthBytes::new(message))
    }

    /// The broker's answer to PLAIN carries nothing: a response without an error code means
    /// success. Any bytes it holds are ignored, as the Java client ignores them.
    fn step(&mut self, _auth_bytes: &[u8]) -> Result<Step, SaslError> {
        if !self.sent {
            return Err(SaslError::OutOfOrder {
                mechanism: Mechanism::Plain,
                reason: "broker response before the initial response",
            });
        }
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_nul_user_nul_password() {
        let mut client = PlainClient::new("alice", Secret::new("s3cret")).unwrap();
        let bytes = client.initial_response().unwrap();
        assert_eq!(bytes.as_bytes(), b"\0alice\0s3cret");
        assert_eq!(client.step(b""), Ok(Step::Done));
    }

    #[test]
    fn rejects_nul_and_empty_username_without_echoing() {
        let e = PlainClient::new("a\0b", Secret::new("s3cret")).unwrap_err();
        assert!(matches!(e, SaslError::InvalidCredentials { .. }));
        let e = PlainClient::new("alice", Secret::new("s3\0cret")).unwrap_err();
        assert!(!format!("{e:?} {e}").contains("s3"), "{e:?}");
        assert!(PlainClient::new("", Secret::new("x")).is_err());
    }

    #[test]
    fn out_of_order_calls_fail() {
        let mut client = PlainClient::new("alice", Secret::new("s3cret")).unwrap();
        assert!(matches!(
            client.step(b""),
            Err(SaslError::OutOfOrder { .. })
        ));
        let _ = client.initial_response().unwrap();
        assert!(client.initial_response().is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let mut client = PlainClient::new("alice", Secret::new("s3cret")).unwrap();
        let first = client.initial_response().unwrap();
        for debug in [
            format!("{client:?}"),
            format!("{first:?}"),
            format!("{:?}", Step::Send(first.clone())),
        ] {
            assert!(!debug.contains("s3cret"), "{debug}");
        }
    }
}
