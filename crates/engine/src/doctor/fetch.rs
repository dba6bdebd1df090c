//! GET a challenge URL the way an ACME CA's validation server does (Let's Encrypt's Boulder):
//! port 80 of one address of the name, the name as Host, redirects followed (at most 10,
//! only to http on port 80 or https on port 443, only to host names, certificate not
//! checked), every hop remembered so a failure can say where it happened.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::Ctx;

/// Boulder's limit.
const MAX_REDIRECTS: usize = 10;
/// More than a key authorization ever is; a page is cut here.
const MAX_BODY: usize = 64 * 1024;
const USER_AGENT: &str = "Mozilla/5.0 (compatible; certfleet doctor; like Let's Encrypt validation server)";

/// Why one request got no HTTP answer.
#[derive(Debug, Clone)]
pub(super) enum Unreachable {
    Refused,
    TimedOut,
    Other(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Refused => f.write_str("connection refused (nothing listens there)"),
            Unreachable::TimedOut => f.write_str("no answer (timed out: a firewall dropping packets?)"),
            Unreachable::Other(e) => f.write_str(e),
        }
    }
}

/// Where a chain of requests ended.
#[derive(Debug, Clone)]
pub(super) enum End {
    /// A final (non-redirect) answer.
    Answered {
        status: u16,
        body: String,
    },
    /// `url` at `addr` gave no HTTP answer.
    Unreachable {
        url: String,
        addr: SocketAddr,
        why: Unreachable,
    },
    /// A redirect the CA refuses to follow (bad scheme, port, IP host, unresolvable host).
    BadRedirect {
        to: String,
        why: String,
    },
    /// The same URL twice.
    Loop,
    TooManyRedirects,
}

/// The URLs asked, in order (the first is the challenge URL), and how it ended.
#[derive(Debug, Clone)]
pub(super) struct Trail {
    pub urls: Vec<String>,
    pub end: End,
}

impl Trail {
    /// `A -> B -> C`, for messages.
    pub fn path(&self) -> String {
        self.urls.join(" -> ")
    }

    pub fn redirected(&self) -> bool {
        self.urls.len() > 1
    }
}

/// Follow `url` from `first` (one of the name's addresses), as the CA would.
pub(super) async fn follow(ctx: &Ctx, url: Url, first: IpAddr) -> Trail {
    let mut urls = vec![url.to_string()];
    let mut current = url;
    let mut ip = first;
    loop {
        let port = match current.scheme() {
            "https" => ctx.opts.tls_port,
            _ => ctx.opts.http_port,
        };
        let addr = SocketAddr::new(ip, port);
        let answer = match get(ctx, &current, addr).await {
            Ok(a) => a,
            Err(why) => {
                return Trail {
                    end: End::Unreachable {
                        url: current.to_string(),
                        addr,
                        why,
                    },
                    urls,
                };
            }
        };
        let Some(location) = answer.location.filter(|_| is_redirect(answer.status)) else {
            return Trail {
                urls,
                end: End::Answered {
                    status: answer.status,
                    body: answer.body,
                },
            };
        };
        let next = match current.join(&location) {
            Ok(u) => u,
            Err(e) => {
                return Trail {
                    urls,
                    end: End::BadRedirect {
                        to: location,
                        why: format!("not a valid URL ({e})"),
                    },
                };
            }
        };
        let to = next.to_string();
        if urls.contains(&to) {
            urls.push(to);
            return Trail { urls, end: End::Loop };
        }
        urls.push(to.clone());
        if urls.len() > MAX_REDIRECTS + 1 {
            return Trail {
                urls,
                end: End::TooManyRedirects,
            };
        }
        match redirect_target(ctx, &next).await {
            Ok(i) => ip = i,
            Err(why) => {
                return Trail {
                    urls,
                    end: End::BadRedirect { to, why },
                };
            }
        }
        current = next;
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Where the CA would connect for a redirect to `u`, or why it would not follow it.
async fn redirect_target(ctx: &Ctx, u: &Url) -> Result<IpAddr, String> {
    let default = match u.scheme() {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(format!(
                "the CA follows only http and https redirects, not {other}"
            ));
        }
    };
    if let Some(p) = u.port().filter(|p| *p != default) {
        return Err(format!(
            "the CA follows redirects only to port 80 (http) and 443 (https), not {p}"
        ));
    }
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err("the CA does not follow redirects to an IP address, only to host names".into());
        }
        None => return Err("the redirect has no host".into()),
    };
    let r = ctx.resolver().map_err(|(d, _)| d)?;
    let ips = r.ips(&host).await.map_err(|e| e.to_string())?;
    // IPv4 first: an address that works is what this hop needs; the first hop already tried
    // every address of the name itself.
    ips.iter()
        .find(|i| i.is_ipv4())
        .or(ips.first())
        .copied()
        .ok_or_else(|| format!("{host} has no A or AAAA record"))
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

async fn get(ctx: &Ctx, url: &Url, addr: SocketAddr) -> Result<Answer, Unreachable> {
    let host = url.host_str().unwrap_or_default().to_string();
    let stream = match tokio::time::timeout(ctx.opts.timeout, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => return Err(Unreachable::TimedOut),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(Unreachable::Refused),
        Ok(Err(e)) => return Err(Unreachable::Other(format!("connecting to {addr}: {e}"))),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    if url.scheme() == "https" {
        // The CA does not check the certificate of a redirect target.
        let (tls, _) = super::tls::handshake(stream, &host, ctx.opts.timeout)
            .await
            .map_err(Unreachable::Other)?;
        exchange(tls, url, &host, ctx.opts.timeout).await
    } else {
        exchange(stream, url, &host, ctx.opts.timeout).await
    }
}

async fn exchange<S>(stream: S, url: &Url, host: &str, timeout: Duration) -> Result<Answer, Unreachable>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let once = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Unreachable::Other(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header(hyper::header::ACCEPT, "*/*")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Unreachable::Other(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Unreachable::Other(format!("HTTP: {e}")))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        driver.abort();
        Ok(Answer {
            status,
            location,
            body,
        })
    };
    tokio::time::timeout(timeout, once)
        .await
        .unwrap_or(Err(Unreachable::TimedOut))
}
