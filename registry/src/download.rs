//! Plain HTTP(S) downloads for `ADD <url>`, through the registry client's HTTP stack: the same
//! proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` from the environment), the same trust
//! (`--registry-certificate` material for that host, `--skip-tls-verify-pull`) and the same
//! redirect handling. The body is streamed into the caller's sink while it is hashed: nothing is
//! held in memory.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, Url, header};
use sha2::{Digest, Sha256};

use crate::client::{Access, Call, Client};
use crate::error::{AuthHint, Error, Operation};
use crate::response::status_error;
use crate::transport::{RequestSpec, Target};

/// What a download delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written to the sink.
    pub size: u64,
    /// sha256 of those bytes, lower-case hex.
    pub sha256: String,
    /// The server's `Last-Modified`, when it sent a valid one.
    pub last_modified: Option<SystemTime>,
}

impl Client {
    /// GETs `url` (http or https) and streams the body into `sink`. A status other than 2xx is
    /// an error naming the URL and the status; so is a body shorter than its `Content-Length`.
    pub async fn download(&self, url: &str, sink: &mut impl Write) -> Result<Downloaded, Error> {
        let operation = Operation::Download;
        let parsed = Url::parse(url)
            .map_err(|err| Error::protocol(operation, url, format!("invalid URL: {err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::protocol(
                operation,
                url,
                "only http and https URLs can be downloaded",
            ));
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(Error::protocol(operation, url, "the URL has no host")),
        };
        let call = Call {
            operation,
            target: url,
            registry: &host,
            origin: &host,
            repository: "",
            access: Access::Pull,
        };
        let spec = RequestSpec::new(Method::GET, Target::Absolute(parsed));
        let mut response = self.send(&call, &spec, None).await?;
        if !response.status().is_success() {
            return Err(status_error(response, operation, url, AuthHint::default()).await);
        }
        let last_modified = response
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_http_date);
        let expected = response.content_length();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let chunk = response.chunk().await.map_err(|source| Error::Transport {
                operation,
                target: url.to_owned(),
                detail: source.to_string(),
                source,
            })?;
            let Some(chunk) = chunk else { break };
            hasher.update(&chunk);
            size += chunk.len() as u64;
            sink.write_all(&chunk).map_err(|source| Error::Sink {
                operation,
                target: url.to_owned(),
                source,
            })?;
        }
        if let Some(expected) = expected
            && expected != size
        {
            return Err(Error::Incomplete {
                operation,
                target: url.to_owned(),
                expected,
                received: size,
            });
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Downloaded {
            size,
            sha256,
            last_modified,
        })
    }
}

/// Parses an HTTP date in its preferred form (RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37
/// GMT`), the one servers send; other forms are ignored (the file then gets no server time).
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let (_, rest) = text.trim().split_once(", ")?;
    let mut words = rest.split(' ');
    let day: u64 = words.next()?.parse().ok()?;
    let month = words.next()?;
    let year: i64 = words.next()?.parse().ok()?;
    let time = words.next()?;
    if words.next()? != "GMT" || words.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imf_fixdates_parse_to_their_instant() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("Sun, 06 Nox 1994 08:49:37 GMT"), None);
    }
}
