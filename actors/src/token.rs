//! OAUTHBEARER tokens from the application: the [`TokenProvider`] it implements, and
//! [`TokenSource`], which keeps the current token for every connection of a producer and asks
//! the provider for a new one when Java's refreshing login would ([`Refresh`]: by default
//! after 80-85% of the token's lifetime, `sasl.login.refresh.window.factor` and `.jitter`,
//! but not within a minute of obtaining it nor later than five minutes before it expires,
//! `sasl.login.refresh.min.period.seconds` and `.buffer.seconds`, unless its lifetime is
//! shorter than those two together).
//!
//! A token due for renewal keeps serving while it has [`MIN_VALIDITY`] left, and the renewal
//! runs in the background meanwhile (again [`RENEW_RETRY`] later if it fails), so neither a
//! slow nor a failing provider holds up or fails a connection while the current token is
//! good; without a usable token, the connection waits for the provider.
//!
//! The provider is called from a future the connection spawns, never inside a handler: the
//! actors keep serving their mailboxes while a token is fetched. The renewal starts at its
//! time on a timer, as Java's refreshing login thread renews, so a connection that
//! authenticates later (a new one, or a KIP-368 re-authentication) finds the new token
//! ready; a connection that needs a token past the renewal time before the timer ran starts
//! the renewal itself. No token is used after it expired. The timer holds the source weakly:
//! a closed producer's timer renews nothing.
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// After a failed background renewal, the next one is tried this much later (Java's
/// refreshing login waits 10 s too), as long as the current token stays usable.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// The current token, and whether it is being renewed.
#[derive(Default)]
struct State {
    /// The token and when to fetch the next one (`None`: when it is refused).
    current: Option<(Token, Option<SystemTime>)>,
    /// A renewal runs in the background while the current token still serves.
    renewing: bool,
}

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
        // A share past 1 of a far expiry can pass what `SystemTime` holds, where `+`
        // panics; it is past `expires` then anyway, and is held out of the buffer below.
        let share = self.factor + self.jitter * draw;
        let proposed = Duration::try_from_secs_f64(lifetime.as_secs_f64() * share)
            .ok()
            .and_then(|d| now.checked_add(d))
            .unwrap_or(expires);
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
    /// An async lock: connections that need a token while one is fetched wait for that
    /// fetch instead of starting their own.
    state: Arc<tokio::sync::Mutex<State>>,
    /// [`MIN_VALIDITY`], shorter in unit tests.
    min_validity: Duration,
    /// [`RENEW_RETRY`], shorter in unit tests.
    renew_retry: Duration,
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
            state: Arc::default(),
            min_validity: MIN_VALIDITY,
            renew_retry: RENEW_RETRY,
            refresh,
        }
    }

    /// A token fresh enough to authenticate with now. A token due for renewal still serves
    /// while it has `min_validity` left, and the renewal runs in the background, as Java's
    /// refreshing login renews beside the connections: a connection does not wait for the
    /// provider then, and a provider that fails (an identity provider down for a while) does
    /// not fail records while the current token is good. Without a usable token, the
    /// connection waits for the fetch.
    pub(crate) async fn token(&self) -> Result<Token, TokenError> {
        let mut state = self.state.lock().await;
        let now = SystemTime::now();
        if let Some((token, refresh_at)) = state.current.as_ref() {
            if refresh_at.is_none_or(|at| now < at) {
                return Ok(token.clone());
            }
        }
        if let Some(token) = self.renew_if_due(&mut state, now) {
            return Ok(token);
        }
        let token = self.provider.token().await?;
        let refresh_at = self.refresh_at(&token, now);
        state.current = Some((token.clone(), refresh_at));
        self.renew_at(refresh_at);
        Ok(token)
    }

    /// Starts the renewal at `at` if the token then current is still due and still serves
    /// (a later token has a timer of its own; a connection may have started it already).
    fn renew_at(&self, at: Option<SystemTime>) {
        let Some(at) = at else {
            return;
        };
        let delay = at.duration_since(SystemTime::now()).unwrap_or_default();
        let weak = Arc::downgrade(&self.state);
        let (provider, min_validity, renew_retry, refresh) = (
            self.provider.clone(),
            self.min_validity,
            self.renew_retry,
            self.refresh,
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            let source = TokenSource {
                provider,
                state,
                min_validity,
                renew_retry,
                refresh,
            };
            let mut state = source.state.lock().await;
            source.renew_if_due(&mut state, SystemTime::now());
        });
    }

    /// If the current token is past its renewal time and may still start a session, starts
    /// its renewal in the background (unless one runs) and returns it to serve meanwhile.
    fn renew_if_due(&self, state: &mut State, now: SystemTime) -> Option<Token> {
        let (token, refresh_at) = state.current.as_ref()?;
        let due = refresh_at.is_some_and(|at| at <= now);
        let serves = self.last_use(token).is_some_and(|last| now <= last);
        if !(due && serves) {
            return None;
        }
        let token = token.clone();
        if !state.renewing {
            state.renewing = true;
            self.renew_in_background();
        }
        Some(token)
    }

    /// The last moment `token` may start a session: `min_validity` before it expires.
    /// `None` without an expiry.
    fn last_use(&self, token: &Token) -> Option<SystemTime> {
        let expires = token.expires_at()?;
        Some(expires.checked_sub(self.min_validity).unwrap_or(UNIX_EPOCH))
    }

    /// The earlier of Java's refresh time and the token's [`last_use`](Self::last_use).
    fn refresh_at(&self, token: &Token, now: SystemTime) -> Option<SystemTime> {
        let expires = token.expires_at()?;
        let by_java = self.refresh.at(now, expires, fastrand::f64());
        self.last_use(token).map(|last| by_java.min(last))
    }

    fn renew_in_background(&self) {
        let source = self.clone();
        tokio::spawn(async move {
            let renewed = source.provider.token().await;
            let mut state = source.state.lock().await;
            state.renewing = false;
            let now = SystemTime::now();
            match renewed {
                Ok(token) => {
                    let refresh_at = source.refresh_at(&token, now);
                    state.current = Some((token, refresh_at));
                    source.renew_at(refresh_at);
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = source.renew_retry.as_millis() as u64,
                        "OAUTHBEARER token renewal failed; the current token serves until it nears expiry"
                    );
                    // Again after the retry wait, or sooner, once the token nears expiry
                    // (a connection then waits for the provider rather than take it).
                    if let Some((token, refresh_at)) = state.current.as_mut() {
                        let retry = now + source.renew_retry;
                        let at = source.last_use(token).map_or(retry, |l| l.min(retry));
                        *refresh_at = Some(at);
                        source.renew_at(Some(at));
                    }
                }
            }
        });
    }

    /// Forgets the current token (the broker refused it).
    pub(crate) async fn forget(&self) {
        self.state.lock().await.current = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use herald::sasl::Secret;

    use super::*;

    /// Waits `delay`, then hands out `token-1`, `token-2`, ... valid for `lifetime`.
    struct Counting {
        calls: AtomicU32,
        lifetime: Option<Duration>,
        delay: Duration,
    }

    impl TokenProvider for Counting {
        fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let (lifetime, delay) = (self.lifetime, self.delay);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let expires = lifetime.map(|l| SystemTime::now() + l);
                Ok(Token::new(Secret::new(format!("token-{n}")), expires)?)
            })
        }
    }

    /// A source over `provider` that renews at `factor` of a lifetime (no jitter, no
    /// buffers), with `min_validity`, and a minute between failed renewals.
    fn source_over(
        provider: Arc<dyn TokenProvider>,
        factor: f64,
        min_validity: Duration,
    ) -> TokenSource {
        let refresh = Refresh {
            factor,
            jitter: 0.0,
            min_period: Duration::ZERO,
            buffer: Duration::ZERO,
        };
        let mut source = TokenSource::new(provider, refresh);
        source.min_validity = min_validity;
        source.renew_retry = Duration::from_secs(60);
        source
    }

    fn source(lifetime: Option<Duration>) -> (TokenSource, Arc<Counting>) {
        let provider = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime,
            delay: Duration::ZERO,
        });
        // Java's factor without jitter, and no buffers: 80% of the lifetime.
        let source = source_over(provider.clone(), 0.8, Duration::from_millis(50));
        (source, provider)
    }

    #[tokio::test]
    async fn a_token_is_reused_until_80_percent_of_its_lifetime_then_renewed_on_time() {
        let (source, provider) = source(Some(Duration::from_millis(2000)));
        let first = source.token().await.unwrap();
        assert_eq!(first.value().expose(), "token-1");
        assert_eq!(source.token().await.unwrap(), first);
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        // At 80% of 2 s the timer renews it, with no connection asking meanwhile.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
        assert_eq!(source.token().await.unwrap().value().expose(), "token-2");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_dropped_source_renews_nothing() {
        let (source, provider) = source(Some(Duration::from_millis(300)));
        source.token().await.unwrap();
        drop(source);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_due_token_serves_while_its_renewal_runs() {
        let provider = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime: Some(Duration::from_millis(2000)),
            delay: Duration::from_millis(400),
        });
        let source = source_over(provider.clone(), 0.8, Duration::from_millis(50));
        source.token().await.unwrap();
        // Renewal starts at 1.6 s and takes 0.4 s: meanwhile the current token serves at
        // once, and the new one from then on.
        tokio::time::sleep(Duration::from_millis(1750)).await;
        let asked = tokio::time::Instant::now();
        assert_eq!(source.token().await.unwrap().value().expose(), "token-1");
        assert!(
            asked.elapsed() < Duration::from_millis(100),
            "waited for the provider"
        );
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-2");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    }

    /// Hands out one token valid for `lifetime`, then fails.
    struct Once {
        calls: AtomicU32,
        lifetime: Duration,
    }

    impl TokenProvider for Once {
        fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let expires = SystemTime::now() + self.lifetime;
            Box::pin(async move {
                if n > 1 {
                    return Err("identity provider unreachable".into());
                }
                Ok(Token::new(Secret::new("token-1"), Some(expires))?)
            })
        }
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_the_current_token_until_it_nears_expiry() {
        let provider = Arc::new(Once {
            calls: AtomicU32::new(0),
            lifetime: Duration::from_millis(2000),
        });
        let source = source_over(provider.clone(), 0.5, Duration::from_millis(500));
        source.token().await.unwrap();
        // Due at 1 s (half of 2 s): the token still serves, and the renewal fails beside.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-1");
        // It keeps serving, without another renewal, while 500 ms of it are left.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(source.token().await.unwrap().value().expose(), "token-1");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
        // With less than 500 ms left it no longer serves: the connection waits for the
        // provider, and its failure is the connection's.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(source.token().await.is_err());
        assert_eq!(provider.calls.load(Ordering::SeqCst), 3);
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

    /// A share of the lifetime past 1 (factor 1.0 plus jitter) of a token that expires near
    /// the end of what `SystemTime` holds (a provider's or an endpoint's far `exp`) lands
    /// in the buffer before expiry, not in a panic inside the connection's token future.
    #[test]
    fn a_far_expiry_with_a_late_share_is_held_in_the_buffer() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 10 * 9);
        let late = Refresh {
            factor: 1.0,
            jitter: 0.25,
            min_period: Duration::from_secs(60),
            buffer: Duration::from_secs(300),
        };
        let at = std::panic::catch_unwind(|| late.at(now, far, 1.0)).expect("no panic");
        assert_eq!(at, far - Duration::from_secs(300));
    }
}
