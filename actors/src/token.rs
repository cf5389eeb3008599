//! OAUTHBEARER tokens from the application: the [`TokenProvider`] it implements, and
//! [`TokenSource`], which keeps the current token for every connection of a producer and asks
//! the provider for a new one once 80% of the current one's lifetime has passed (as Java's
//! refreshing login does by default, `sasl.login.refresh.window.factor` 0.8).
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

/// The current token of a producer and its provider.
#[derive(Clone)]
pub(crate) struct TokenSource {
    provider: Arc<dyn TokenProvider>,
    /// The token and when to fetch the next one. An async lock: connections that need a
    /// token while one is fetched wait for that fetch instead of starting their own.
    current: Arc<tokio::sync::Mutex<Current>>,
    /// [`MIN_VALIDITY`], shorter in unit tests.
    min_validity: Duration,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource")
    }
}

impl TokenSource {
    pub(crate) fn new(provider: Arc<dyn TokenProvider>) -> TokenSource {
        TokenSource {
            provider,
            current: Arc::default(),
            min_validity: MIN_VALIDITY,
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
        // The earlier of 80% of its lifetime and `min_validity` before it expires.
        let refresh_at = token.lifetime_from(now).map(|lifetime| {
            let by_factor = now + lifetime.mul_f64(0.8);
            let by_validity = now + lifetime.saturating_sub(self.min_validity);
            by_factor.min(by_validity)
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
        let mut source = TokenSource::new(provider.clone());
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
}
