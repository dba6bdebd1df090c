//! The HTTP side of ACME: one connection pool for the whole run, the nonce, signed POSTs
//! with badNonce retry, and problem documents turned into errors.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::directory::Directory;
use crate::error::{AcmeError, Problem, ProblemKind};
use crate::jws::AccountKey;
use crate::poll::parse_retry_after;

const USER_AGENT: &str = concat!("certfleet/", env!("CARGO_PKG_VERSION"));
/// RFC 8555 says clients should retry badNonce; a CA (or Pebble's NONCEREJECT) may reject
/// many in a row, each retry is cheap, and the error carries a fresh nonce.
const BAD_NONCE_RETRIES: usize = 20;

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM bundle of trust roots for the ACME server's HTTPS (private or test CAs). When set,
    /// only these roots are trusted, like certbot's REQUESTS_CA_BUNDLE.
    pub ca_bundle: Option<PathBuf>,
    pub timeout: Option<Duration>,
}

/// How a request is signed: by account URL (`kid`) or with the key itself (`jwk`).
#[derive(Clone, Copy)]
pub(crate) enum KeyId<'a> {
    Kid(&'a str),
    Jwk,
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.body).map_err(|e| AcmeError::Protocol {
            url: url.to_string(),
            what: format!("bad JSON: {e}"),
        })
    }

    pub fn location(&self) -> Option<String> {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
    }

    /// `Link: <url>;rel="alternate"` targets (RFC 8555 section 7.4.2), and others by rel.
    pub fn links(&self, rel: &str) -> Vec<String> {
        parse_links(
            self.headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok()),
            rel,
        )
    }
}

/// The targets of the `Link` header values whose `rel` is `rel`, in order.
#[doc(hidden)]
pub fn parse_links<'a>(values: impl IntoIterator<Item = &'a str>, rel: &str) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let matches = params.split(';').any(|p| {
                let p = p.trim();
                p == format!("rel=\"{rel}\"") || p == format!("rel={rel}")
            });
            matches.then(|| target.to_string())
        })
        .collect()
}

struct Inner {
    http: reqwest::Client,
    directory_url: String,
    directory: Directory,
    nonce: Mutex<Option<String>>,
}

/// A connection to one ACME server. Cheap to clone; clones share the connection and nonce.
#[derive(Clone)]
pub struct AcmeClient {
    inner: Arc<Inner>,
}

impl AcmeClient {
    /// Connect and read the directory.
    pub async fn connect(directory_url: &str, opts: &ClientOptions) -> Result<Self, AcmeError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Each ACME step waits on the previous reply; Nagle + delayed ACK would add ~40 ms
            // to every request (measured), so make sure TCP_NODELAY is on.
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(opts.timeout.unwrap_or(Duration::from_secs(60)))
            .pool_max_idle_per_host(4);
        if let Some(path) = &opts.ca_bundle {
            builder = builder.tls_backend_preconfigured(bundle_tls_config(directory_url, path)?);
        }
        let http = builder.build().map_err(|e| AcmeError::Http {
            url: directory_url.to_string(),
            source: e,
        })?;
        let resp = http
            .get(directory_url)
            .send()
            .await
            .map_err(|e| AcmeError::Http {
                url: directory_url.to_string(),
                source: e,
            })?;
        let reply = read_reply(directory_url, resp).await?;
        if !reply.status.is_success() {
            return Err(problem_from(directory_url, &reply));
        }
        let directory: Directory = reply.json(directory_url)?;
        let nonce = reply
            .headers
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                directory_url: directory_url.to_string(),
                directory,
                nonce: Mutex::new(nonce),
            }),
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    pub fn directory_url(&self) -> &str {
        &self.inner.directory_url
    }

    async fn fresh_nonce(&self) -> Result<String, AcmeError> {
        if let Some(n) = self.inner.nonce.lock().unwrap().take() {
            return Ok(n);
        }
        let url = &self.inner.directory.new_nonce;
        let resp = self
            .inner
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| AcmeError::Http {
                url: url.clone(),
                source: e,
            })?;
        resp.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| AcmeError::Protocol {
                url: url.clone(),
                what: "no Replay-Nonce header".into(),
            })
    }

    fn keep_nonce(&self, headers: &HeaderMap) {
        if let Some(n) = headers.get("replay-nonce").and_then(|v| v.to_str().ok()) {
            *self.inner.nonce.lock().unwrap() = Some(n.to_string());
        }
    }

    /// A signed POST (payload `None` = POST-as-GET). Retries badNonce; returns the reply on
    /// 2xx, the problem document as an error otherwise.
    pub(crate) async fn post(
        &self,
        url: &str,
        key: &AccountKey,
        key_id: KeyId<'_>,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Result<Reply, AcmeError> {
        let mut attempt = 0;
        loop {
            let nonce = self.fresh_nonce().await?;
            let mut protected = json!({"alg": key.alg(), "nonce": nonce, "url": url});
            match key_id {
                KeyId::Kid(kid) => protected["kid"] = json!(kid),
                KeyId::Jwk => protected["jwk"] = key.jwk(),
            }
            let body = key.jws(protected, payload)?;
            let mut req = self
                .inner
                .http
                .post(url)
                .header("content-type", "application/jose+json")
                .body(serde_json::to_vec(&body).expect("JWS serializes"));
            if let Some(accept) = accept {
                req = req.header("accept", accept);
            }
            let resp = req.send().await.map_err(|e| AcmeError::Http {
                url: url.to_string(),
                source: e,
            })?;
            let reply = read_reply(url, resp).await?;
            self.keep_nonce(&reply.headers);
            if reply.status.is_success() {
                return Ok(reply);
            }
            let err = problem_from(url, &reply);
            let bad_nonce = err.problem().is_some_and(|p| p.kind() == ProblemKind::BadNonce);
            if bad_nonce && attempt < BAD_NONCE_RETRIES {
                attempt += 1;
                tracing::debug!(url, attempt, "badNonce, retrying with the nonce from the error");
                continue;
            }
            return Err(err);
        }
    }

    /// Plain unauthenticated GET (ARI renewal info).
    pub(crate) async fn get(&self, url: &str) -> Result<Reply, AcmeError> {
        let resp = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| AcmeError::Http {
                url: url.to_string(),
                source: e,
            })?;
        let reply = read_reply(url, resp).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(problem_from(url, &reply))
        }
    }
}

/// A rustls config trusting only the PEM roots in `path`. Built here rather than through
/// reqwest's root options because those still initialise the platform verifier and load the
/// system store, for roots we were told not to use.
fn bundle_tls_config(directory_url: &str, path: &std::path::Path) -> Result<rustls::ClientConfig, AcmeError> {
    let bad = |what: String| AcmeError::Protocol {
        url: directory_url.to_string(),
        what,
    };
    let pem =
        std::fs::read(path).map_err(|e| bad(format!("cannot read CA bundle {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let blocks =
        pem::parse_many(&pem).map_err(|e| bad(format!("CA bundle {} is not PEM: {e}", path.display())))?;
    for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
        roots
            .add(rustls::pki_types::CertificateDer::from(block.into_contents()))
            .map_err(|e| bad(format!("CA bundle {}: unusable certificate: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("CA bundle {} holds no certificates", path.display())));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn read_reply(url: &str, resp: Response) -> Result<Reply, AcmeError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| AcmeError::Http {
            url: url.to_string(),
            source: e,
        })?
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn problem_from(url: &str, reply: &Reply) -> AcmeError {
    match serde_json::from_slice::<Problem>(&reply.body) {
        Ok(mut problem) if !problem.kind.is_empty() => {
            problem.status.get_or_insert(reply.status.as_u16());
            AcmeError::Problem {
                problem: Box::new(problem),
                retry_after: reply.retry_after(),
            }
        }
        _ => AcmeError::Protocol {
            url: url.to_string(),
            what: format!(
                "HTTP {} with body {:?}",
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, v.parse().unwrap());
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    /// RFC 8555 section 6.7.1, verbatim: a problem with subproblems per identifier.
    #[test]
    fn rfc8555_subproblems_example() {
        let body = r#"{
            "type": "urn:ietf:params:acme:error:malformed",
            "detail": "Some of the identifiers requested were rejected",
            "subproblems": [
                {
                    "type": "urn:ietf:params:acme:error:malformed",
                    "detail": "Invalid underscore in DNS name \"_example.org\"",
                    "identifier": {
                        "type": "dns",
                        "value": "_example.org"
                    }
                },
                {
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": "This CA will not issue for \"example.net\"",
                    "identifier": {
                        "type": "dns",
                        "value": "example.net"
                    }
                }
            ]
        }"#;
        let r = reply(
            403,
            &[
                ("content-type", "application/problem+json"),
                ("link", r#"<https://example.com/acme/directory>;rel="index""#),
            ],
            body,
        );
        let err = problem_from("https://example.com/acme/new-order", &r);
        let p = err.problem().expect("a problem");
        assert_eq!(p.kind(), ProblemKind::Malformed);
        assert_eq!(p.status, Some(403), "status filled in from the response");
        assert_eq!(p.subproblems.len(), 2);
        let sub = &p.subproblems[1];
        assert_eq!(sub.kind, "urn:ietf:params:acme:error:rejectedIdentifier");
        assert_eq!(sub.identifier.as_ref().unwrap().value, "example.net");
        assert_eq!(err.retry_after(), None);
        assert!(!err.is_rate_limited());
        let text = err.to_string();
        assert!(
            text.contains("malformed: Some of the identifiers requested were rejected"),
            "{text}"
        );
        assert!(
            text.contains("_example.org: Invalid underscore in DNS name \"_example.org\" (malformed)"),
            "{text}"
        );
        assert!(
            text.contains("example.net: This CA will not issue for \"example.net\" (rejectedIdentifier)"),
            "{text}"
        );
        assert_eq!(r.links("index"), ["https://example.com/acme/directory"]);
    }

    /// Let's Encrypt's rateLimited answer: 429, the problem, and Retry-After (seconds or date).
    #[test]
    fn rate_limited_with_retry_after() {
        let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-11-24 08:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-hostnames","status":429}"#;
        let err = problem_from(
            "https://acme-v02.api.letsencrypt.org/acme/new-order",
            &reply(429, &[("retry-after", "3600")], body),
        );
        assert!(err.is_rate_limited());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
        assert_eq!(err.problem().unwrap().status, Some(429));

        let future = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
        let date = future
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap()
            .replace("+0000", "GMT");
        let err = problem_from("u", &reply(429, &[("retry-after", &date)], body));
        let ra = err.retry_after().expect("HTTP-date Retry-After");
        assert!(
            ra > Duration::from_secs(29 * 60) && ra <= Duration::from_secs(30 * 60),
            "{ra:?}"
        );
    }

    /// Not a problem document (a proxy's HTML error page): a protocol error naming the URL.
    #[test]
    fn non_problem_body_is_a_protocol_error() {
        let err = problem_from("https://ca/x", &reply(502, &[], "<html>Bad Gateway</html>"));
        assert!(err.problem().is_none());
        let text = err.to_string();
        assert!(text.contains("https://ca/x") && text.contains("502"), "{text}");
    }
}
