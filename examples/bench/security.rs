//! `--security`: which listener of the Apache Kafka node every client connects to, and that
//! listener's settings in each client's dialect. The orchestrator picks the listener and hands
//! each worker the protocol (`--security`, passed through) and the CA file of the harness's
//! test certificates (`--worker-ca`); the clients build their settings from those two.
//!
//! | setting        | Herald and java (Java keys)               | librdkafka        |
//! |----------------|-------------------------------------------|-------------------|
//! | protocol       | `security.protocol`                       | `security.protocol` |
//! | trusted CA     | `ssl.truststore.type=PEM`, `ssl.truststore.location` | `ssl.ca.location` |
//! | SASL mechanism | `sasl.mechanism`                          | `sasl.mechanisms` |
//! | credentials    | `sasl.jaas.config` (`ScramLoginModule`)   | `sasl.username`, `sasl.password` |

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::kafka::{Listener, PASSWORD, USER};
use crate::{Args, BrokerKind, Result};

/// The security protocol of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Security {
    Plaintext,
    /// TLS, the broker's certificate checked against the test CA; no client certificate.
    Ssl,
    /// SASL (SCRAM-SHA-512, the harness's user) over TLS.
    SaslSsl,
}

/// The SASL mechanism of `SASL_SSL` runs.
const MECHANISM: &str = "SCRAM-SHA-512";

impl Security {
    /// The listener of the harness's node that speaks this protocol.
    pub(crate) fn listener(self) -> Listener {
        match self {
            Security::Plaintext => Listener::Plaintext,
            Security::Ssl => Listener::Ssl,
            Security::SaslSsl => Listener::SaslSsl,
        }
    }

    /// The `security.protocol` value (the same in every client).
    pub(crate) fn protocol(self) -> &'static str {
        self.listener().security_protocol()
    }

    fn tls(self) -> bool {
        self != Security::Plaintext
    }

    fn sasl(self) -> bool {
        self == Security::SaslSsl
    }
}

/// `--security` other than PLAINTEXT needs the Apache Kafka node the benchmark starts: only
/// there does it know the listeners and the CA.
pub(crate) fn validate(args: &Args) -> Result<()> {
    if args.security != Security::Plaintext
        && (args.broker != BrokerKind::Kafka || args.bootstrap_servers.is_some())
    {
        return Err(format!(
            "--security {}: only with --broker kafka and without --bootstrap-servers (the \
             benchmark's own Apache Kafka node has the SSL and SASL_SSL listeners and the test \
             CA; the mock cluster speaks PLAINTEXT only)",
            args.security.protocol()
        )
        .into());
    }
    Ok(())
}

/// A worker's security settings: the protocol and, for TLS, the CA file.
#[derive(Debug, Clone)]
pub(crate) struct ClientSecurity {
    security: Security,
    ca: Option<PathBuf>,
}

impl ClientSecurity {
    /// From a worker's command line (`--security`, `--worker-ca`).
    pub(crate) fn of(args: &Args) -> Result<ClientSecurity> {
        let ca = args.worker_ca.clone();
        if args.security.tls() && ca.is_none() {
            return Err(format!(
                "--security {} needs the CA file (--worker-ca)",
                args.security.protocol()
            )
            .into());
        }
        Ok(ClientSecurity {
            security: args.security,
            ca,
        })
    }

    fn ca(&self) -> &Path {
        self.ca.as_deref().unwrap_or(Path::new(""))
    }

    /// Herald's and the Java producer's settings (Java keys); empty for PLAINTEXT, so those
    /// runs get exactly the settings they had before `--security` existed.
    pub(crate) fn java_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.security.tls() {
            return out;
        }
        out.push(("security.protocol", self.security.protocol().to_string()));
        out.push(("ssl.truststore.type", "PEM".to_string()));
        out.push(("ssl.truststore.location", self.ca().display().to_string()));
        if self.security.sasl() {
            out.push(("sasl.mechanism", MECHANISM.to_string()));
            out.push((
                "sasl.jaas.config",
                format!(
                    "org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"{USER}\" password=\"{PASSWORD}\";"
                ),
            ));
        }
        out
    }

    /// librdkafka's settings, added to `c`; none for PLAINTEXT.
    pub(crate) fn apply_rdkafka(&self, c: &mut ClientConfig) {
        if !self.security.tls() {
            return;
        }
        c.set("security.protocol", self.security.protocol())
            .set("ssl.ca.location", self.ca().display().to_string());
        if self.security.sasl() {
            c.set("sasl.mechanisms", MECHANISM)
                .set("sasl.username", USER)
                .set("sasl.password", PASSWORD);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(security: Security) -> ClientSecurity {
        ClientSecurity {
            security,
            ca: Some(PathBuf::from("/certs/ca.pem")),
        }
    }

    #[test]
    fn plaintext_adds_nothing() {
        assert!(client(Security::Plaintext).java_pairs().is_empty());
        let mut c = ClientConfig::new();
        client(Security::Plaintext).apply_rdkafka(&mut c);
        assert_eq!(c.get("security.protocol"), None);
    }

    #[test]
    fn sasl_ssl_in_both_dialects() {
        let pairs = client(Security::SaslSsl).java_pairs();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(get("ssl.truststore.type"), Some("PEM"));
        assert_eq!(get("ssl.truststore.location"), Some("/certs/ca.pem"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(
            get("sasl.jaas.config"),
            Some(
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"alice\" password=\"alice-secret\";"
            )
        );
        let mut c = ClientConfig::new();
        client(Security::SaslSsl).apply_rdkafka(&mut c);
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("ssl.ca.location"), Some("/certs/ca.pem"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some(USER));
    }

    #[test]
    fn ssl_has_no_sasl() {
        let pairs = client(Security::Ssl).java_pairs();
        assert!(pairs.iter().all(|(k, _)| !k.starts_with("sasl.")));
        assert!(pairs.contains(&("security.protocol", "SSL".to_string())));
    }
}
