//! Cloudflare API v4, configured like certbot's dns-cloudflare plugin:
//!
//! ```ini
//! # a scoped API token (Zone:DNS:Edit) ...
//! dns_cloudflare_api_token = 0123456789abcdef0123456789abcdef01234567
//! # ... or the legacy global API key with the account email
//! dns_cloudflare_email = cloudflare@example.com
//! dns_cloudflare_api_key = 0123456789abcdef0123456789abcdef01234
//! ```
//!
//! Calls: `GET /zones?name=<zone>` (walking up from the record name until a zone matches),
//! `POST /zones/<id>/dns_records`, `GET /zones/<id>/dns_records?type=TXT&name=..&content=..`,
//! `DELETE /zones/<id>/dns_records/<record id>`. The base URL is configurable so the request
//! building and response parsing are tested against a local server.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::json;

use super::credentials::CredentialsFile;
use super::{DnsError, DnsProvider, Secret, TxtRecord};

const NAME: &str = "cloudflare";
pub const DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";
/// Cloudflare's minimum TTL (certbot uses it too).
const TTL: u32 = 120;

#[derive(Debug, Clone)]
pub enum CloudflareAuth {
    /// Scoped API token, sent as `Authorization: Bearer`.
    Token(Secret),
    /// Legacy global API key, sent as `X-Auth-Email` + `X-Auth-Key`.
    GlobalKey { email: String, key: Secret },
}

#[derive(Debug, Clone)]
pub struct CloudflareConfig {
    pub auth: CloudflareAuth,
    /// Without trailing slash; [`DEFAULT_API_BASE`] unless testing.
    pub api_base: String,
}

impl CloudflareConfig {
    /// Read a certbot dns-cloudflare credentials ini (must be mode 0600/0400).
    pub fn from_certbot_ini(path: &Path) -> Result<Self, DnsError> {
        let f = CredentialsFile::load(path)?;
        let token = f.get("dns_cloudflare_api_token");
        let email = f.get("dns_cloudflare_email");
        let key = f.get("dns_cloudflare_api_key");
        let auth = match (token, email, key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(f.error(
                    "set either dns_cloudflare_api_token, or dns_cloudflare_email and dns_cloudflare_api_key, not both",
                ));
            }
            (Some(t), None, None) => CloudflareAuth::Token(t.clone()),
            (None, Some(e), Some(k)) => CloudflareAuth::GlobalKey {
                email: e.expose().to_string(),
                key: k.clone(),
            },
            (None, Some(_), None) => {
                return Err(f.error("dns_cloudflare_email is set but dns_cloudflare_api_key is missing"));
            }
            (None, None, Some(_)) => {
                return Err(f.error("dns_cloudflare_api_key is set but dns_cloudflare_email is missing"));
            }
            (None, None, None) => {
                return Err(f.error(
                    "missing dns_cloudflare_api_token (or dns_cloudflare_email + dns_cloudflare_api_key)",
                ));
            }
        };
        Ok(CloudflareConfig {
            auth,
            api_base: DEFAULT_API_BASE.into(),
        })
    }
}

/// The [`super::registry`] entry's constructor: certbot's credentials ini to a provider.
pub fn build(credentials: &Path) -> Result<std::sync::Arc<dyn DnsProvider>, DnsError> {
    Ok(std::sync::Arc::new(Cloudflare::new(
        CloudflareConfig::from_certbot_ini(credentials)?,
    )?))
}

/// The common envelope of every API answer.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    code: i64,
    message: String,
}

#[derive(Debug, Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct DnsRecord {
    id: String,
    #[serde(default)]
    content: String,
}

/// Record already exists (81057: same name and type; 81058: identical record).
const ALREADY_EXISTS: [i64; 2] = [81057, 81058];

pub struct Cloudflare {
    cfg: CloudflareConfig,
    http: reqwest::Client,
    /// zone name -> zone id
    zones: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("api_base", &self.cfg.api_base)
            .finish_non_exhaustive()
    }
}

impl Cloudflare {
    pub fn new(cfg: CloudflareConfig) -> Result<Self, DnsError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("certfleet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DnsError::provider(NAME, format!("HTTP client: {e}")))?;
        let mut cfg = cfg;
        cfg.api_base = cfg.api_base.trim_end_matches('/').to_string();
        Ok(Cloudflare {
            cfg,
            http,
            zones: Mutex::new(HashMap::new()),
        })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.auth {
            CloudflareAuth::Token(t) => req.bearer_auth(t.expose()),
            CloudflareAuth::GlobalKey { email, key } => req
                .header("X-Auth-Email", email)
                .header("X-Auth-Key", key.expose()),
        }
    }

    /// Send, parse the envelope; API errors become messages with Cloudflare's codes.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Envelope<T>, DnsError> {
        let resp = self
            .auth(req)
            .send()
            .await
            // reqwest errors carry the URL, never headers: no secret leaks here.
            .map_err(|e| DnsError::provider(NAME, format!("{what}: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| DnsError::provider(NAME, format!("{what}: {e}")))?;
        let env: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
            DnsError::provider(NAME, format!("{what}: HTTP {status}, unexpected answer ({e})"))
        })?;
        Ok(env)
    }

    fn api_error(what: &str, errors: &[ApiMessage]) -> DnsError {
        let list: Vec<String> = errors
            .iter()
            .map(|e| format!("{} (code {})", e.message, e.code))
            .collect();
        let hint = if errors
            .iter()
            .any(|e| matches!(e.code, 6003 | 6103 | 9103 | 9109 | 10000))
        {
            "; check the credentials file (token needs Zone:DNS:Edit permission)"
        } else {
            ""
        };
        DnsError::provider(NAME, format!("{what}: {}{hint}", list.join(", ")))
    }

    /// The zone id for `record`: the SOA-found zone first, then each parent of the name.
    async fn zone_id(&self, record: &TxtRecord) -> Result<String, DnsError> {
        let mut candidates: Vec<String> = Vec::new();
        if let Some(z) = &record.zone {
            candidates.push(z.clone());
        }
        let labels: Vec<&str> = record.fqdn.split('.').collect();
        for i in 0..labels.len().saturating_sub(1) {
            let c = labels[i..].join(".");
            if !candidates.contains(&c) {
                candidates.push(c);
            }
        }
        for c in &candidates {
            if let Some(id) = self.zones.lock().unwrap_or_else(|e| e.into_inner()).get(c) {
                return Ok(id.clone());
            }
        }
        for c in &candidates {
            let url = format!("{}/zones", self.cfg.api_base);
            let req = self
                .http
                .get(url)
                .query(&[("name", c.as_str()), ("per_page", "1")]);
            let env: Envelope<Vec<Zone>> = self.call(req, &format!("looking up zone {c}")).await?;
            if !env.success {
                return Err(Self::api_error(&format!("looking up zone {c}"), &env.errors));
            }
            if let Some(z) = env
                .result
                .unwrap_or_default()
                .into_iter()
                .find(|z| z.name.eq_ignore_ascii_case(c))
            {
                self.zones
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(c.clone(), z.id.clone());
                return Ok(z.id);
            }
        }
        Err(DnsError::provider(
            NAME,
            format!(
                "no Cloudflare zone for {} (tried {}); is the domain in this account and may the token see it?",
                record.fqdn,
                candidates.join(", ")
            ),
        ))
    }

    async fn find_records(&self, zone_id: &str, record: &TxtRecord) -> Result<Vec<DnsRecord>, DnsError> {
        let url = format!("{}/zones/{zone_id}/dns_records", self.cfg.api_base);
        let req = self.http.get(url).query(&[
            ("type", "TXT"),
            ("name", record.fqdn.as_str()),
            ("content", record.value.as_str()),
            ("per_page", "100"),
        ]);
        let what = format!("listing TXT records at {}", record.fqdn);
        let env: Envelope<Vec<DnsRecord>> = self.call(req, &what).await?;
        if !env.success {
            return Err(Self::api_error(&what, &env.errors));
        }
        // Only ours: the content filter is applied server-side, checked again here.
        Ok(env
            .result
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.content.trim_matches('"') == record.value)
            .collect())
    }
}

#[async_trait::async_trait]
impl DnsProvider for Cloudflare {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn set_txt(&self, record: &TxtRecord) -> Result<Option<String>, DnsError> {
        let zone_id = self.zone_id(record).await?;
        let url = format!("{}/zones/{zone_id}/dns_records", self.cfg.api_base);
        let body = json!({"type": "TXT", "name": record.fqdn, "content": record.value, "ttl": TTL});
        let what = format!("adding TXT {}", record.fqdn);
        let env: Envelope<serde_json::Value> = self.call(self.http.post(url).json(&body), &what).await?;
        if !env.success && !env.errors.iter().all(|e| ALREADY_EXISTS.contains(&e.code)) {
            return Err(Self::api_error(&what, &env.errors));
        }
        let zone = self
            .zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, id)| **id == zone_id)
            .map(|(n, _)| n.clone());
        Ok(zone)
    }

    async fn remove_txt(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(record).await?;
        for r in self.find_records(&zone_id, record).await? {
            let url = format!("{}/zones/{zone_id}/dns_records/{}", self.cfg.api_base, r.id);
            let what = format!("deleting TXT {}", record.fqdn);
            let env: Envelope<serde_json::Value> = self.call(self.http.delete(url), &what).await?;
            // 81044: record already gone.
            if !env.success && !env.errors.iter().all(|e| e.code == 81044) {
                return Err(Self::api_error(&what, &env.errors));
            }
        }
        Ok(())
    }
}
