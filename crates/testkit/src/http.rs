//! Small blocking HTTP helpers for management APIs.
//!
//! `reqwest::blocking` owns a Tokio runtime and panics if created or dropped inside another
//! runtime, so every request runs on its own short-lived thread: callers may be `#[tokio::test]`s.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `url`, trusting only `ca_bundle` for HTTPS.
pub(crate) fn get(url: &str, ca_bundle: Option<&Path>) -> Result<Response> {
    request(url, ca_bundle, None)
}

/// POST a JSON body to `url`.
pub(crate) fn post_json(url: &str, body: &serde_json::Value) -> Result<Response> {
    request(url, None, Some(body))
}

fn request(url: &str, ca_bundle: Option<&Path>, body: Option<&serde_json::Value>) -> Result<Response> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut builder =
                reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(30));
            if let Some(path) = ca_bundle {
                let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .with_context(|| format!("parsing {}", path.display()))?;
                builder = builder.tls_certs_only(certs);
            }
            let client = builder.build()?;
            let req = match body {
                Some(b) => client.post(url).body(b.to_string()),
                None => client.get(url),
            };
            let resp = req.send().with_context(|| format!("requesting {url}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .with_context(|| format!("reading body of {url}"))?
                .to_vec();
            Ok(Response { status, body })
        })
        .join()
        .map_err(|_| anyhow!("HTTP request thread for {url} panicked"))?
    })
}
