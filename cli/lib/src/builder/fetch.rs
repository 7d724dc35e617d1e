//! `ADD http://…`: a plain HTTP/1.1 GET (redirects followed, chunked or sized bodies) into a
//! file. HTTPS needs TLS, which rimg does not link; such a source fails with an error that
//! says so.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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

/// Downloads `url` into `out`; returns the byte count.
pub fn fetch(url: &str, out: &mut impl Write) -> Result<u64, String> {
    let mut url = url.to_string();
    for _ in 0..5 {
        if url.starts_with("https://") {
            return Err(format!(
                "cannot fetch {url}: HTTPS is not supported by rimg build (no TLS); download the file into the context and COPY it"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("cannot fetch {url}: not an http:// URL"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let err = |e: io::Error| format!("cannot fetch {url}: {e}");
        let sock = addr
            .to_socket_addrs()
            .map_err(err)?
            .next()
            .ok_or_else(|| format!("cannot fetch {url}: {hostport} has no address"))?;
        let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(30)).map_err(err)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(err)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: rimg-build\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        .map_err(err)?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).map_err(err)?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("cannot fetch {url}: bad HTTP response {:?}", status.trim()))?;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut location = None;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(err)? == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.parse().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "location" => location = Some(v.to_string()),
                    _ => {}
                }
            }
        }
        if (300..400).contains(&code) {
            let loc =
                location.ok_or_else(|| format!("cannot fetch {url}: {code} without Location"))?;
            url = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else {
                format!("http://{hostport}{loc}")
            };
            continue;
        }
        if code != 200 {
            return Err(format!("cannot fetch {url}: HTTP status {code}"));
        }
        return if chunked {
            copy_chunked(&mut r, out).map_err(err)
        } else if let Some(n) = length {
            let got = io::copy(&mut r.by_ref().take(n), out).map_err(err)?;
            if got != n {
                return Err(format!(
                    "cannot fetch {url}: body ended after {got} of {n} bytes"
                ));
            }
            Ok(got)
        } else {
            io::copy(&mut r, out).map_err(err)
        };
    }
    Err(format!("cannot fetch {url}: too many redirects"))
}

fn copy_chunked(r: &mut impl BufRead, out: &mut impl Write) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            return Ok(total);
        }
        let got = io::copy(&mut r.by_ref().take(size), out)?;
        if got != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated chunk",
            ));
        }
        total += got;
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_refusals() {
        assert!(is_url("http://x/a"));
        assert_eq!(
            file_name("http://h:1/d/app.tar.gz?x=1").as_deref(),
            Some("app.tar.gz")
        );
        assert_eq!(file_name("http://h/"), None);
        let mut v = Vec::new();
        assert!(fetch("https://example.com/x", &mut v)
            .unwrap_err()
            .contains("HTTPS"));
        assert!(fetch("http://127.0.0.1:1/x", &mut v)
            .unwrap_err()
            .contains("cannot fetch"));
    }
}
