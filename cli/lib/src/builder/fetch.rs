//! `ADD http://…` and `ADD https://…`: a GET through `ureq`, the HTTP client the registry
//! code uses: HTTPS with verified certificates (rustls, the webpki roots), the proxies of
//! `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`, redirects (relative ones too) followed, response
//! headers bounded, timeouts on connect and on each read. The `Last-Modified` date becomes
//! the file's mtime, as Docker does.

use std::io::{self, Write};
use std::time::Duration;

use ureq::Agent;

/// Whether a COPY/ADD source is a URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The file name a URL's path ends with (`app.tar.gz`), for a destination directory.
pub fn file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    let name = after_host.rsplit('/').next().unwrap_or("");
    (!name.is_empty()).then(|| name.to_string())
}

/// What a download gave besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The body's length.
    pub size: u64,
    /// `Last-Modified`, in seconds since the epoch.
    pub modified: Option<i64>,
}

/// How large the response headers may be: a hostile server's endless status line costs at
/// most this much memory.
const MAX_HEADERS: usize = 64 * 1024;

fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .max_redirects(10)
        .max_response_header_size(MAX_HEADERS)
        .user_agent(concat!("rimg/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Downloads `url` into `out`.
pub fn fetch(url: &str, out: &mut impl Write) -> Result<Fetched, String> {
    if !is_url(url) {
        return Err(format!(
            "cannot fetch {url}: not an http:// or https:// URL"
        ));
    }
    let err = |e: &dyn std::fmt::Display| format!("cannot fetch {url}: {e}");
    let resp = agent().get(url).call().map_err(|e| err(&e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!("cannot fetch {url}: HTTP status {status}"));
    }
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut body = resp.into_body().into_reader();
    let size = io::copy(&mut body, out).map_err(|e| err(&e))?;
    Ok(Fetched { size, modified })
}

/// Parses an HTTP date, IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as servers send it.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.trim().split_once(", ")?.1;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == month)? as i64 + 1;
    let d: i64 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, sec] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_dates_and_refusals() {
        assert!(is_url("http://x/a"));
        assert!(is_url("https://x/a"));
        assert_eq!(
            file_name("http://h:1/d/app.tar.gz?x=1").as_deref(),
            Some("app.tar.gz")
        );
        assert_eq!(file_name("http://h/"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
        let mut v = Vec::new();
        assert!(fetch("http://127.0.0.1:1/x", &mut v)
            .unwrap_err()
            .contains("cannot fetch"));
        assert!(fetch("ftp://x/y", &mut v).is_err());
    }
}
