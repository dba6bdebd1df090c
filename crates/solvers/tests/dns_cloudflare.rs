//! Cloudflare provider contract: requests are checked and answered by a tiny HTTP server on
//! loopback that returns the JSON bodies documented for API v4 (zones list, DNS record
//! create/list/delete). The real API is not reachable from the test machines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use certfleet_solvers::dns::cloudflare::{Cloudflare, CloudflareAuth, CloudflareConfig};
use certfleet_solvers::dns::{DnsProvider, Secret, TxtRecord};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};

const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    auth: String,
    body: Value,
}

#[derive(Default)]
struct Api {
    seen: Vec<Seen>,
    records: BTreeMap<String, Value>, // id -> record
    next_id: u32,
}

fn envelope(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn error(code: i64, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

/// The documented zone object (trimmed of fields the client ignores is NOT done on purpose).
fn zone_json() -> Value {
    json!({
        "id": ZONE_ID,
        "account": {"id": "01a7362d577a6c3019a474fd6f485823", "name": "Example Account Name"},
        "activated_on": "2014-01-02T00:01:00.12345Z",
        "created_on": "2014-01-01T05:20:00.12345Z",
        "development_mode": 7200,
        "meta": {"cdn_only": true, "custom_certificate_quota": 1, "dns_only": true, "foundation_dns": true,
                 "page_rule_quota": 100, "phishing_detected": false, "step": 2},
        "modified_on": "2014-01-01T05:20:00.12345Z",
        "name": "example.com",
        "name_servers": ["bob.ns.cloudflare.com", "lola.ns.cloudflare.com"],
        "original_dnshost": "NameCheap",
        "original_name_servers": ["ns1.originaldnshost.com", "ns2.originaldnshost.com"],
        "original_registrar": "GoDaddy",
        "owner": {"id": "023e105f4ecef8ad9ca31a8372d0c353", "name": "Example Org", "type": "organization"},
        "paused": false,
        "permissions": ["#worker:read"],
        "status": "active",
        "type": "full",
        "vanity_name_servers": ["ns1.example.com", "ns2.example.com"]
    })
}

fn query(uri: &str) -> BTreeMap<String, String> {
    let url = url_like(uri);
    url.1
}

/// (path, query params) without pulling in a URL crate.
fn url_like(uri: &str) -> (String, BTreeMap<String, String>) {
    let (path, q) = uri.split_once('?').unwrap_or((uri, ""));
    let params = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2A", "*").replace("%2E", "."))
        })
        .collect();
    (path.to_string(), params)
}

fn handle(api: &mut Api, method: &str, uri: &str, auth: &str, body: Value) -> (u16, Value) {
    api.seen.push(Seen {
        method: method.into(),
        uri: uri.into(),
        auth: auth.into(),
        body: body.clone(),
    });
    if auth != "Bearer good-token" && auth != "key:user@example.com:good-key" {
        return (403, error(10000, "Authentication error"));
    }
    let (path, q) = url_like(uri);
    let records_path = format!("/client/v4/zones/{ZONE_ID}/dns_records");
    match (method, path.as_str()) {
        ("GET", "/client/v4/zones") => {
            let result = if q.get("name").map(String::as_str) == Some("example.com") {
                json!([zone_json()])
            } else {
                json!([])
            };
            let mut e = envelope(result);
            e["result_info"] = json!({"count": 1, "page": 1, "per_page": 20, "total_count": 1});
            (200, e)
        }
        ("POST", p) if p == records_path => {
            let dup = api
                .records
                .values()
                .any(|r| r["name"] == body["name"] && r["content"] == body["content"]);
            if dup {
                return (400, error(81058, "An identical record already exists."));
            }
            api.next_id += 1;
            let id = format!("372e67954025e0ba6aaa6d586b9e0b{:02}", api.next_id);
            let rec = json!({
                "id": id, "zone_id": ZONE_ID, "zone_name": "example.com",
                "name": body["name"], "type": body["type"], "content": body["content"],
                "proxiable": false, "proxied": false, "ttl": body["ttl"], "settings": {}, "meta": {},
                "comment": null, "tags": [],
                "created_on": "2014-01-01T05:20:00.12345Z", "modified_on": "2014-01-01T05:20:00.12345Z"
            });
            api.records.insert(id, rec.clone());
            (200, envelope(rec))
        }
        ("GET", p) if p == records_path => {
            let list: Vec<Value> = api
                .records
                .values()
                .filter(|r| {
                    q.get("type").is_none_or(|t| r["type"] == t.as_str())
                        && q.get("name").is_none_or(|n| r["name"] == n.as_str())
                        && q.get("content").is_none_or(|c| r["content"] == c.as_str())
                })
                .cloned()
                .collect();
            (200, envelope(Value::Array(list)))
        }
        ("DELETE", p) if p.starts_with(&format!("{records_path}/")) => {
            let id = p.rsplit('/').next().unwrap().to_string();
            match api.records.remove(&id) {
                Some(_) => (200, envelope(json!({"id": id}))),
                None => (404, error(81044, "Record does not exist.")),
            }
        }
        _ => (404, error(7003, "Could not route to the requested path")),
    }
}

struct Server {
    addr: SocketAddr,
    api: Arc<Mutex<Api>>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Arc::new(Mutex::new(Api::default()));
        let shared = api.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let api = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let api = api.clone();
                        async move {
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let h = req.headers();
                            let auth = match h.get("authorization") {
                                Some(v) => v.to_str().unwrap().to_string(),
                                None => format!(
                                    "key:{}:{}",
                                    h.get("x-auth-email").map(|v| v.to_str().unwrap()).unwrap_or(""),
                                    h.get("x-auth-key").map(|v| v.to_str().unwrap()).unwrap_or("")
                                ),
                            };
                            let ct = h.get("content-type").map(|v| v.to_str().unwrap().to_string());
                            let raw = req.into_body().collect().await.unwrap().to_bytes();
                            let body = if raw.is_empty() {
                                Value::Null
                            } else {
                                assert_eq!(ct.as_deref(), Some("application/json"));
                                serde_json::from_slice(&raw).unwrap()
                            };
                            let (status, out) = handle(&mut api.lock().unwrap(), &method, &uri, &auth, body);
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(out.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server { addr, api }
    }

    fn base(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.api.lock().unwrap().seen.clone()
    }

    fn contents(&self) -> Vec<String> {
        let api = self.api.lock().unwrap();
        api.records
            .values()
            .map(|r| r["content"].as_str().unwrap().to_string())
            .collect()
    }
}

fn rec(fqdn: &str, value: &str) -> TxtRecord {
    TxtRecord {
        domain: fqdn.trim_start_matches("_acme-challenge.").into(),
        fqdn: fqdn.into(),
        zone: None,
        value: value.into(),
    }
}

fn provider(server: &Server, auth: CloudflareAuth) -> Cloudflare {
    Cloudflare::new(CloudflareConfig {
        auth,
        api_base: server.base(),
    })
    .unwrap()
}

#[tokio::test]
async fn token_zone_walk_create_and_delete_only_ours() {
    let server = Server::start().await;
    let cf = provider(&server, CloudflareAuth::Token(Secret::new("good-token")));
    let apex = rec("_acme-challenge.www.example.com", "value-apex");
    let wild = rec("_acme-challenge.www.example.com", "value-wild");

    assert_eq!(cf.set_txt(&apex).await.unwrap(), Some("example.com".into()));
    assert_eq!(cf.set_txt(&wild).await.unwrap(), Some("example.com".into()));
    // Setting the same value again (a retry) is not an error.
    cf.set_txt(&wild).await.unwrap();

    let seen = server.seen();
    let zone_lookups: Vec<String> = seen
        .iter()
        .filter(|s| s.uri.starts_with("/client/v4/zones?"))
        .map(|s| query(&s.uri)["name"].clone())
        .collect();
    // Walks up from the record name; the zone id is then cached.
    assert_eq!(
        zone_lookups,
        [
            "_acme-challenge.www.example.com",
            "www.example.com",
            "example.com"
        ]
    );
    assert!(seen.iter().all(|s| s.auth == "Bearer good-token"));
    let post = seen.iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(post.uri, format!("/client/v4/zones/{ZONE_ID}/dns_records"));
    assert_eq!(
        post.body,
        json!({"type": "TXT", "name": "_acme-challenge.www.example.com", "content": "value-apex", "ttl": 120})
    );

    cf.remove_txt(&apex).await.unwrap();
    assert_eq!(server.contents(), ["value-wild"]);
    let list = server
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.method == "GET" && s.uri.contains("dns_records"))
        .unwrap();
    let q = query(&list.uri);
    assert_eq!(q["type"], "TXT");
    assert_eq!(q["name"], "_acme-challenge.www.example.com");
    assert_eq!(q["content"], "value-apex");
    // Removing again finds nothing and is fine.
    cf.remove_txt(&apex).await.unwrap();
    cf.remove_txt(&wild).await.unwrap();
    assert!(server.contents().is_empty());
}

#[tokio::test]
async fn known_zone_is_asked_first() {
    let server = Server::start().await;
    let cf = provider(&server, CloudflareAuth::Token(Secret::new("good-token")));
    let mut r = rec("_acme-challenge.example.com", "v");
    r.zone = Some("example.com".into());
    cf.set_txt(&r).await.unwrap();
    let lookups: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.uri.starts_with("/client/v4/zones?"))
        .collect();
    assert_eq!(lookups.len(), 1);
    assert_eq!(query(&lookups[0].uri)["name"], "example.com");
}

#[tokio::test]
async fn global_key_and_email_headers() {
    let server = Server::start().await;
    let cf = provider(
        &server,
        CloudflareAuth::GlobalKey {
            email: "user@example.com".into(),
            key: Secret::new("good-key"),
        },
    );
    cf.set_txt(&rec("_acme-challenge.example.com", "v"))
        .await
        .unwrap();
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.auth == "key:user@example.com:good-key")
    );
}

#[tokio::test]
async fn bad_token_error_names_the_problem_not_the_token() {
    let server = Server::start().await;
    let cf = provider(&server, CloudflareAuth::Token(Secret::new("bad-token-123")));
    let err = cf
        .set_txt(&rec("_acme-challenge.example.com", "v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Authentication error (code 10000)"), "{err}");
    assert!(err.contains("check the credentials file"), "{err}");
    assert!(!err.contains("bad-token-123"), "{err}");
    assert!(!format!("{cf:?}").contains("bad-token-123"));
}

#[tokio::test]
async fn unknown_zone_is_a_clear_error() {
    let server = Server::start().await;
    let cf = provider(&server, CloudflareAuth::Token(Secret::new("good-token")));
    let err = cf
        .set_txt(&rec("_acme-challenge.other.org", "v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "no Cloudflare zone for _acme-challenge.other.org (tried _acme-challenge.other.org, other.org)"
        ),
        "{err}"
    );
}

#[test]
fn certbot_credentials_ini() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cloudflare.ini");
    let write = |body: &str| {
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write("dns_cloudflare_api_token = 0123456789abcdef\n");
    let c = CloudflareConfig::from_certbot_ini(&p).unwrap();
    assert!(matches!(c.auth, CloudflareAuth::Token(ref t) if t.expose() == "0123456789abcdef"));
    assert_eq!(c.api_base, "https://api.cloudflare.com/client/v4");
    assert!(!format!("{c:?}").contains("0123456789abcdef"));

    write("dns_cloudflare_email = a@example.com\ndns_cloudflare_api_key = k\n");
    let c = CloudflareConfig::from_certbot_ini(&p).unwrap();
    assert!(matches!(c.auth, CloudflareAuth::GlobalKey { ref email, .. } if email == "a@example.com"));

    write("dns_cloudflare_api_token = t\ndns_cloudflare_api_key = k\n");
    let e = CloudflareConfig::from_certbot_ini(&p).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
    write("dns_cloudflare_email = a@example.com\n");
    let e = CloudflareConfig::from_certbot_ini(&p).unwrap_err().to_string();
    assert!(e.contains("dns_cloudflare_api_key is missing"), "{e}");

    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = CloudflareConfig::from_certbot_ini(&p).unwrap_err().to_string();
    assert!(e.ends_with(&format!("run: chmod 600 {}", p.display())), "{e}");
}
