//! When and how long to wait before trying a registry request again.
//!
//! One policy for every request: transient failures (5xx, 408, 429, connection resets,
//! timeouts, truncated bodies) are retried with exponential backoff and full jitter, so a
//! fleet of builders that failed together does not retry together; other 4xx answers are the
//! caller's fault and are never retried. A registry's `Retry-After` (seconds or HTTP-date)
//! replaces the computed delay, capped so a hostile value cannot park a build.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::client::{Access, Client};
use crate::error::Error;

/// How often and how patiently to retry one direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Kaniko's `--push-retry` / `--image-download-retry`).
    pub retries: u32,
    /// The first backoff; each later one doubles, up to `max_delay`.
    pub initial_delay: Duration,
    /// Upper bound of one wait, including a registry's `Retry-After`.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Kaniko's own starting delay (go-containerregistry backs off from 1 s).
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
    /// A minute: long enough for a registry restart, short enough for CI.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

    /// `retries` retries with the default delays.
    pub fn with_retries(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }

    /// No retries at all.
    pub fn none() -> RetryPolicy {
        Self::with_retries(0)
    }

    /// The wait before retry number `retry` (1-based): a random point in
    /// `[0, initial * 2^(retry-1)]` ("full jitter"), or the registry's `Retry-After`.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_delay);
        }
        let ceiling = self
            .initial_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Half fixed, half random: never hammer immediately, still spread retries out.
        Duration::from_nanos(nanos / 2 + random() % (nanos / 2 + 1))
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::none()
    }
}

impl Client {
    /// Runs `attempt` until it succeeds, fails for good, or the policy for `access` is spent.
    /// An attempt is a whole operation (request, body, verification), so a body cut short or
    /// damaged in flight is retried like a 503.
    pub(crate) async fn with_retries<T, F, Fut>(
        &self,
        access: Access,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let policy = self.retry_policy(access);
        let mut retry = 0;
        loop {
            match attempt().await {
                Err(error) if error.is_transient() && retry < policy.retries => {
                    retry += 1;
                    let delay = policy.delay(retry, error.retry_after());
                    tracing::warn!(
                        "{error}; retrying in {:.1} s ({retry}/{})",
                        delay.as_secs_f64(),
                        policy.retries
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(error) if error.is_transient() && policy.retries > 0 => {
                    tracing::warn!("giving up after {} attempts", policy.retries + 1);
                    return Err(error);
                }
                outcome => return outcome,
            }
        }
    }
}

/// A random number without a dependency: std seeds every `RandomState` from the OS.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// Whether an answer with `status` is worth sending again.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Whether a failure below HTTP (no answer, or a broken one) is worth trying again. Only
/// certificate and URL errors are permanent; everything else is the network's fault.
pub(crate) fn retryable_transport(error: &reqwest::Error) -> bool {
    !crate::error::is_certificate_error(error) && !error.is_builder() && !error.is_redirect()
}

/// The registry's `Retry-After`: delta seconds, or an HTTP-date relative to now.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// RFC 9110's preferred date format (IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`, the
/// only one a sender may generate.
fn parse_http_date(text: &str) -> Option<SystemTime> {
    let (_, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(60);
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::try_from(month).unwrap_or(1);
    let day = i64::try_from(day).unwrap_or(1);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn server_errors_timeouts_and_throttling_are_retried_other_client_errors_are_not() {
        for code in [500, 502, 503, 504, 408, 429] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 201, 400, 401, 403, 404, 409, 413, 416] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let policy = RetryPolicy {
            retries: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.delay(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(3, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.delay(30, None) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let policy = RetryPolicy::with_retries(3);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(86_400))),
            RetryPolicy::DEFAULT_MAX_DELAY
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_http_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    fn http_error(status: u16) -> Error {
        Error::Http {
            operation: crate::error::Operation::PushManifest,
            target: "r/a:1".to_owned(),
            status: StatusCode::from_u16(status).unwrap(),
            body: crate::error::ErrorBody::default(),
            hint: crate::error::AuthHint::default(),
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn with_retries_repeats_transient_failures_within_the_budget_only() {
        let options = crate::ClientOptions {
            push_retry: RetryPolicy {
                retries: 2,
                initial_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
            },
            ..crate::ClientOptions::default()
        };
        let client = Client::new(options).unwrap();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let count = || attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;

        let outcome: Result<(), Error> = client
            .with_retries(Access::Push, || async { Err(http_error(503)) })
            .await;
        assert_eq!(outcome.unwrap_err().status(), Some(503));

        let outcome = client
            .with_retries(Access::Push, || async {
                match count() {
                    1 | 2 => Err(http_error(502)),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(outcome.unwrap(), 3);

        attempts.store(0, std::sync::atomic::Ordering::SeqCst);
        let outcome: Result<(), Error> = client
            .with_retries(Access::Push, || async {
                count();
                Err(http_error(404))
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);

        attempts.store(0, std::sync::atomic::Ordering::SeqCst);
        let outcome: Result<(), Error> = client
            .with_retries(Access::Pull, || async {
                count();
                Err(http_error(503))
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(
            attempts.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "pulls have their own budget, 0 here"
        );
    }

    #[test]
    fn http_dates_parse_to_the_right_instant() {
        let at = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(784_111_777)
        );
        let leap = parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT").unwrap();
        assert_eq!(
            leap.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_709_164_800)
        );
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST").is_none());
        assert!(parse_http_date("1994-11-06").is_none());
    }
}
