//! OAUTHBEARER tokens from the application: the [`TokenProvider`] it implements, and
//! [`TokenSource`], which keeps the current token for every connection of a producer and asks
//! the provider for a new one when Java's refreshing login would ([`Refresh`]: by default
//! after 80-85% of the token's lifetime, `sasl.login.refresh.window.factor` and `.jitter`,
//! but not within a minute of obtaining it nor later than five minutes before it expires,
//! `sasl.login.refresh.min.period.seconds` and `.buffer.seconds`, unless its lifetime is
//! shorter than those two together).
//!
//! The provider is called from a future the connection spawns, never inside a handler: the
//! actors keep serving their mailboxes while a token is fetched. Connections need a token
//! only when they authenticate (a new connection, or a KIP-368 re-authentication, which the
//! broker schedules within the token's lifetime), so a token is refreshed when it is next
//! needed after 80% of its lifetime, never used after it expired.
//!
//! Nor is a token used to start a session when less than [`MIN_VALIDITY`] of it is left: a
//! broker ends an OAUTHBEARER session when its token expires, and refuses a re-authentication
//! that comes within one second of the previous one (ILLEGAL_SASL_STATE, Kafka's
//! `MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS`). A session granted on a token about to expire
//! would have to be re-authenticated inside that second. With a 4 s token and
//! `connections.max.reauth.ms=3000`, the re-authentication at 95% of 3 s took the old token
//! (age 2.85 s, under 80%), the broker granted 1.15 s, and the next one, at 85% of that,
//! came 0.98 s later and was refused.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald::sasl::Token;
use herald::ProducerConfig;

/// The error a [`TokenProvider`] reports (it becomes the records' authentication error, so
/// it must not quote a secret).
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// Supplies OAUTHBEARER tokens, e.g. from an identity provider's token endpoint. Set it with
/// [`ProducerBuilder::token_provider`](crate::ProducerBuilder::token_provider) together
/// with `sasl.mechanism=OAUTHBEARER` (then `sasl.jaas.config` is not needed).
pub trait TokenProvider: Send + Sync + 'static {
    /// A token valid now, with its expiry when known ([`Token::new`]). A token without an
    /// expiry is kept until a connection's authentication with it fails.
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>>;
}

/// A token is not used to start a session with less than this left: twice the second a
/// broker keeps between re-authentications of a connection.
pub(crate) const MIN_VALIDITY: Duration = Duration::from_secs(2);

/// A token and when to fetch the next one (`None`: when it is refused).
type Current = Option<(Token, Option<SystemTime>)>;

/// When a token is renewed: the `sasl.login.refresh.*` settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refresh {
    factor: f64,
    jitter: f64,
    min_period: Duration,
    buffer: Duration,
}

impl Refresh {
    pub(crate) fn from_config(config: &ProducerConfig) -> Refresh {
        Refresh {
            factor: config.sasl_login_refresh_window_factor,
            jitter: config.sasl_login_refresh_window_jitter,
            min_period: config.sasl_login_refresh_min_period,
            buffer: config.sasl_login_refresh_buffer,
        }
    }

    /// When to renew a token obtained at `now` that expires at `expires`, as Java's
    /// `ExpiringCredentialRefreshingLogin` computes it; `draw` is uniform in `0..1`. The
    /// share of the lifetime (factor plus a draw of the jitter) is kept out of the last
    /// `buffer` and the first `min_period`; a lifetime shorter than both together takes the
    /// share alone.
    fn at(&self, now: SystemTime, expires: SystemTime, draw: f64) -> SystemTime {
        let lifetime = expires.duration_since(now).unwrap_or_default();
        let proposed = now + lifetime.mul_f64(self.factor + self.jitter * draw);
        if lifetime < self.min_period + self.buffer {
            return proposed;
        }
        let buffer_begins = expires - self.buffer;
        let min_period_ends = now + self.min_period;
        if proposed > buffer_begins {
            buffer_begins
        } else if proposed < min_period_ends {
            min_period_ends
        } else {
            proposed
        }
    }
}

/// The current token of a producer and its provider.
#[derive(Clone)]
pub(crate) struct TokenSource {
    provider: Arc<dyn TokenProvider>,
    /// The token and when to fetch the next one. An async lock: connections that need a
    /// token while one is fetched wait for that fetch instead of starting their own.
    current: Arc<tokio::sync::Mutex<Current>>,
    /// [`MIN_VALIDITY`], shorter in unit tests.
    min_validity: Duration,
    refresh: Refresh,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource")
    }
}

impl TokenSource {
    pub(crate) fn new(provider: Arc<dyn TokenProvider>, refresh: Refresh) -> TokenSource {
        TokenSource {
            provider,
            current: Arc::default(),
            min_validity: MIN_VALIDITY,
            refresh,
        }
    }

    /// A token fresh enough to authenticate with now.
    pub(crate) async fn token(&self) -> Result<Token, TokenError> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some((token, refresh_at)) = current.as_ref() {
            if refresh_at.is_none_or(|at| now < at) {
                return Ok(token.clone());
            }
        }
        let token = self.provider.token().await?;
        // The earlier of Java's refresh time and `min_validity` before it expires.
        let refresh_at = token.expires_at().map(|expires| {
            let by_java = self.refresh.at(now, expires, fastrand::f64());
            let lifetime = expires.duration_since(now).unwrap_or_default();
            let by_validity = now + lifetime.saturating_sub(self.min_validity);
            by_java.min(by_validity)
        });
        *current = Some((token.clone(), refresh_at));
        Ok(token)
    }

    /// Forgets the current token (the broker refused it).
    pub(crate) async fn forget(&self) {
        *self.current.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use herald::sasl::Secret;

    use super::*;

    /// Hands out `token-1`, `token-2`, ... valid for `lifetime`.
    struct Counting {
        calls: AtomicU32,
        lifetime: Option<Duration>,
    }

    impl TokenProvider for Counting {
        fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let expires = self.lifetime.map(|l| SystemTime::now() + l);
            Box::pin(async move { Ok(Token::new(Secret::new(format!("token-{n}")), expires)?) })
        }
    }

    fn source(lifetime: Option<Duration>) -> (TokenSource, Arc<Counting>) {
        let provider = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime,
        });
        // Java's factor without jitter, and no buffers: 80% of the lifetime.
        let refresh = Refresh {
            factor: 0.8,
            jitter: 0.0,
            min_period: Duration::ZERO,
            buffer: Duration::ZERO,
        };
        let mut source = TokenSource::new(provider.clone(), refresh);
        source.min_validity = Duration::from_millis(50);
        (source, provider)
    }

    #[tokio::test]
    async fn a_token_is_reused_until_80_percent_of_its_lifetime() {
        let (source, provider) = source(Some(Duration::from_millis(500)));
        let first = source.token().await.unwrap();
        assert_eq!(first.value().expose(), "token-1");
        assert_eq!(source.token().await.unwrap(), first);
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        // Past 80% of 500 ms (and before it expired): a new one.
        tokio::time::sleep(Duration::from_millis(420)).await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-2");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_is_not_reused_with_less_than_min_validity_left() {
        // 80% of 200 ms is 160 ms, but by then less than 50 ms would be left.
        let (source, provider) = source(Some(Duration::from_millis(200)));
        source.token().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-1");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-2");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_without_expiry_is_kept_until_forgotten() {
        let (source, provider) = source(None);
        source.token().await.unwrap();
        source.token().await.unwrap();
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        source.forget().await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-2");
    }

    #[test]
    fn refresh_times_follow_javas_refreshing_login() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let secs = |n: u64| Duration::from_secs(n);
        let java = Refresh {
            factor: 0.8,
            jitter: 0.05,
            min_period: secs(60),
            buffer: secs(300),
        };
        // An hour: 80% to 85% of it.
        let hour = now + secs(3600);
        assert_eq!(java.at(now, hour, 0.0), now + secs(2880));
        assert_eq!(java.at(now, hour, 1.0), now + secs(3060));
        // Shorter than both buffers together (6 minutes): the share alone.
        let short = now + secs(100);
        assert_eq!(java.at(now, short, 0.0), now + secs(80));
        // A late factor is held out of the last five minutes.
        let late = Refresh {
            factor: 1.0,
            ..java
        };
        assert_eq!(late.at(now, hour, 0.5), hour - secs(300));
        // An early one waits out the minimum period.
        let early = Refresh {
            factor: 0.5,
            jitter: 0.0,
            min_period: secs(900),
            buffer: secs(300),
        };
        let twenty_minutes = now + secs(1200);
        assert_eq!(early.at(now, twenty_minutes, 0.0), now + secs(900));
    }
}
