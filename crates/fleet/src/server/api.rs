//! The HTTPS API: [`app`] builds the router (testable without sockets, as axum's examples do);
//! `serve` runs it behind [`crate::tls::serve_tls`], which attaches each connection's
//! [`crate::tls::PeerIdentity`]. Routes and bodies: [`crate::proto`].

use std::path::Path as FsPath;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use certfleet_core::Identifier;
use certfleet_solvers::dns::registry;

use super::auth::{Admin, AgentHost, auth_failed, check_not_blocked};
use super::error::ApiFailure;
use super::state::AppState;
use crate::db::{CertificateSettings, DbError, NewEvent};
use crate::pki;
use crate::proto::{
    API_PREFIX, ApiError, Assignment, CertificateDetail, CertificateView, ChallengeSettings, CsrUpload,
    Custody, Delivery, EnrollRequest, EnrollResponse, HostEnrollment, HostView, ImportCertificate,
    InstallReport, InstallState, LIST_PAGE, ListQuery, MAX_PAGE, NewCertificate, NewHost,
};
use crate::token::{EnrollmentToken, hash_secret, new_secret};

/// Enrollment tokens are good for a day.
pub const ENROLLMENT_TTL_SECONDS: i64 = 24 * 3600;
/// Events shown with one certificate.
const DETAIL_EVENTS: u32 = 50;

type ApiResult<T> = Result<T, ApiFailure>;

pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/hosts", post(add_host).get(list_hosts))
        .route("/hosts/{host}", axum::routing::delete(remove_host))
        .route("/certificates", post(add_certificate).get(list_certificates))
        .route("/certificates/{name}", get(show_certificate))
        .route("/certificates/{name}/renew", post(renew_certificate))
        .route("/certificates/{name}/enable", post(enable_certificate))
        .route("/certificates/{name}/disable", post(disable_certificate))
        .route("/certificates/{name}/import", post(import_certificate))
        .route("/certificates/{name}/hosts/{host}", put(assign).delete(unassign))
        .route("/notify/test", post(super::alerts::notify_test))
        .route("/enroll", post(enroll))
        .route("/agent/assignments", get(agent_assignments))
        .route("/agent/certificates/{name}", get(agent_certificate))
        .route("/agent/csr", post(agent_csr))
        .route("/agent/report", post(agent_report))
        .route("/admin/password", put(super::dashboard::password::set_password));
    Router::new()
        .nest(API_PREFIX, api)
        .route(super::metrics::METRICS_PATH, get(super::metrics::handler))
        .route(super::openapi::OPENAPI_PATH, get(super::openapi::handler))
        .merge(super::dashboard::routes())
        .fallback(|| async { ApiFailure::not_found("no such route (the API lives under /api/v1/)") })
        .layer(axum::middleware::map_response(super::error::json_rejections))
        .layer(axum::middleware::from_fn(super::error::read_body_first))
        .with_state(state)
}

/// Names of hosts and certificates: what a file name, a URL path segment and a shell word can
/// all carry without quoting.
pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiFailure::invalid(format!(
            "{what} name {name:?} is not usable: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

async fn event(s: &AppState, cert: Option<&str>, host: Option<&str>, kind: &str, actor: &str, detail: &str) {
    let ev = NewEvent {
        at: s.now(),
        certificate: cert,
        host,
        kind,
        actor,
        detail,
    };
    if let Err(e) = s.db.append_event(&ev).await {
        tracing::warn!("recording event {kind}: {e}");
    }
}

// ---- hosts ----

#[utoipa::path(post, path = "/api/v1/hosts", tag = "hosts", security(("admin_token" = [])), request_body = NewHost, responses((status = 415, description = "The body is not sent as application/json", body = ApiError), (status = 422, description = "The JSON does not have the expected fields", body = ApiError), (status = 200, description = "The host and its one-time enrollment token", body = HostEnrollment), (status = 409, description = "A host of that name exists", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn add_host(
    State(s): State<AppState>,
    _: Admin,
    Json(req): Json<NewHost>,
) -> ApiResult<Json<HostEnrollment>> {
    check_name("host", &req.name)?;
    let now = s.now();
    s.db.create_host(&req.name, now).await?;
    let secret = new_secret();
    let expires_at = now + ENROLLMENT_TTL_SECONDS;
    s.db.create_enrollment_token(&req.name, &hash_secret(&secret), now, expires_at)
        .await?;
    event(
        &s,
        None,
        Some(&req.name),
        "host-added",
        "admin",
        "enrollment token issued",
    )
    .await;
    let token = EnrollmentToken {
        url: s.public_url.clone(),
        fingerprint: s.fingerprint.clone(),
        secret,
    };
    Ok(Json(HostEnrollment {
        host: req.name,
        enrollment_token: token.encode(),
        expires_at,
    }))
}

#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", security(("admin_token" = [])), responses((status = 200, description = "Every host", body = [HostView]), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn list_hosts(State(s): State<AppState>, _: Admin) -> ApiResult<Json<Vec<HostView>>> {
    Ok(Json(s.db.host_views().await?))
}

#[utoipa::path(delete, path = "/api/v1/hosts/{host}", tag = "hosts", security(("admin_token" = [])), params(("host" = String, Path, description = "Host name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 204, description = "Removed"), (status = 404, description = "No such host", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn remove_host(State(s): State<AppState>, _: Admin, Path(host): Path<String>) -> ApiResult<StatusCode> {
    s.db.delete_host(&host).await?;
    event(&s, None, Some(&host), "host-removed", "admin", "").await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- certificates ----

#[utoipa::path(post, path = "/api/v1/certificates", tag = "certificates", security(("admin_token" = [])), request_body = NewCertificate, responses((status = 415, description = "The body is not sent as application/json", body = ApiError), (status = 422, description = "The JSON does not have the expected fields", body = ApiError), (status = 200, description = "Added; the renewal loop issues it", body = CertificateView), (status = 409, description = "A certificate of that name exists", body = ApiError), (status = 404, description = "A named host does not exist", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn add_certificate(
    State(s): State<AppState>,
    _: Admin,
    Json(req): Json<NewCertificate>,
) -> ApiResult<Json<CertificateView>> {
    check_name("certificate", &req.name)?;
    let ids = certfleet_core::identifier::parse_domain_args(&req.identifiers)
        .map_err(|e| ApiFailure::invalid(format!("certificate {}: {e}", req.name)))?;
    if ids.is_empty() {
        return Err(ApiFailure::invalid(format!(
            "certificate {}: give at least one name (-d)",
            req.name
        )));
    }
    if crate::proto::key_spec(&req.key_type).is_none() {
        return Err(ApiFailure::invalid(format!(
            "key type {:?} is unknown: use ecdsa-p256, ecdsa-p384, rsa2048, rsa3072 or rsa4096",
            req.key_type
        )));
    }
    check_challenge(&s, &req.challenge, &ids)?;
    if req.custody == Custody::Agent && req.hosts.len() > 1 {
        return Err(ApiFailure::invalid(format!(
            "certificate {}: with agent custody the key is made on its one host, so it cannot go to {} hosts; \
             use --custody server for a certificate shared by several hosts",
            req.name,
            req.hosts.len()
        )));
    }
    for h in &req.hosts {
        s.db.host(h).await?;
    }
    let mut settings = CertificateSettings::from(&req);
    settings.identifiers = ids.iter().map(|i| i.to_string()).collect();
    let now = s.now();
    let cert =
        s.db.create_certificate(&req.name, &settings, &req.hosts, now)
            .await?;
    event(
        &s,
        Some(&req.name),
        None,
        "added",
        "admin",
        &settings.identifiers.join(", "),
    )
    .await;
    s.wake.notify_one();
    let hosts = s.db.hosts_of(&req.name).await?;
    Ok(Json(cert.view(hosts, now)))
}

/// A certificate the server cannot solve is refused when it is added, not at 3 a.m.
fn check_challenge(s: &AppState, c: &ChallengeSettings, ids: &[Identifier]) -> ApiResult<()> {
    match c {
        ChallengeSettings::Http01 => {
            if !s.http01_enabled {
                return Err(ApiFailure::invalid(
                    "this server does not answer http-01: start `certfleet serve` with --http-01-listen ADDR \
                     (and proxy /.well-known/acme-challenge/ to it), or use a dns-01 provider",
                ));
            }
            if let Some(w) = ids.iter().find(|i| i.is_wildcard()) {
                return Err(ApiFailure::invalid(format!(
                    "{w}: wildcards need dns-01; use one of: {}",
                    registry::PROVIDERS
                        .iter()
                        .map(|p| format!("--{}", p.flag))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(())
        }
        ChallengeSettings::Dns01 {
            provider,
            credentials,
            ..
        } => {
            let Some(reg) = registry::by_name(provider) else {
                return Err(ApiFailure::invalid(format!(
                    "unknown DNS provider {provider:?}; this server has: {}",
                    registry::PROVIDERS
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            // Reading the credentials checks the file's mode and keys, as certonly does.
            (reg.build)(FsPath::new(credentials))
                .map(drop)
                .map_err(|e| ApiFailure::invalid(format!("dns-01 credentials on the server: {e}")))
        }
    }
}

#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates", security(("admin_token" = [])), params(ListQuery), responses((status = 200, description = "One page of certificates, by name", body = [CertificateView]), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn list_certificates(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<CertificateView>>> {
    let limit = q.limit.unwrap_or(LIST_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiFailure::invalid(format!(
            "limit {limit} is out of range: ask for 1 to {MAX_PAGE} certificates a page"
        )));
    }
    Ok(Json(
        s.db.certificate_views(s.now(), q.after.as_deref(), limit).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/certificates/{name}", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 200, description = "The certificate, its installs and recent events", body = CertificateDetail), (status = 404, description = "No such certificate", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn show_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateDetail>> {
    Ok(Json(
        s.db.certificate_detail(&name, s.now(), DETAIL_EVENTS).await?,
    ))
}

async fn view(s: &AppState, name: &str) -> ApiResult<Json<CertificateView>> {
    let cert = s.db.certificate(name).await?;
    let hosts = s.db.hosts_of(name).await?;
    Ok(Json(cert.view(hosts, s.now())))
}

#[utoipa::path(post, path = "/api/v1/certificates/{name}/renew", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 200, description = "Renewal scheduled now", body = CertificateView), (status = 404, description = "No such certificate", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn renew_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    s.db.schedule(&name, s.now(), super::renewal::ADMIN_RENEW_REASON)
        .await?;
    event(&s, Some(&name), None, "renew-requested", "admin", "").await;
    s.wake.notify_one();
    view(&s, &name).await
}

/// `certfleet import --fleet`: a lineage's current certificate becomes the fleet certificate's,
/// so it is renewed when due (not at once) by the server. Agent custody only: the key it goes
/// with stays on the host that imported it, which the agent finds by the certificate's SPKI.
#[utoipa::path(post, path = "/api/v1/certificates/{name}/import", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), request_body = ImportCertificate, responses((status = 415, description = "The body is not sent as application/json", body = ApiError), (status = 422, description = "The JSON does not have the expected fields", body = ApiError), (status = 200, description = "Imported (or imported before): the certificate's current one, renewed when due", body = CertificateView), (status = 409, description = "The fleet already has a certificate valid as long or longer", body = ApiError), (status = 404, description = "No such certificate", body = ApiError), (status = 400, description = "Not what the certificate describes (names, chain), or server custody", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
pub(crate) async fn import_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
    Json(req): Json<ImportCertificate>,
) -> ApiResult<Json<CertificateView>> {
    let cert = s.db.certificate(&name).await?;
    if cert.settings.custody != Custody::Agent {
        return Err(ApiFailure::invalid(format!(
            "certificate {name} has server custody: an import brings no private key, so only agent-custody \
             certificates (the key stays on the host) can be imported"
        )));
    }
    let bad = |e: &dyn std::fmt::Display| ApiFailure::invalid(format!("certificate {name}: {e}"));
    let info = certfleet_core::CertInfo::from_pem(&req.cert_pem).map_err(|e| bad(&e))?;
    pki::check_issued_by(&req.cert_pem, &req.chain_pem).map_err(|e| bad(&e))?;
    let lower = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|n| n.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    let (has, wants) = (lower(&info.names), lower(&cert.settings.identifiers));
    if has != wants {
        return Err(ApiFailure::invalid(format!(
            "certificate {name}: the imported certificate is for {} but the fleet certificate is for {}",
            has.join(", "),
            wants.join(", ")
        )));
    }
    let serial = info.serial_hex();
    if let Some(cur) = &cert.current {
        if cur.serial.eq_ignore_ascii_case(&serial) {
            // Imported before (a re-run of the import): nothing to do.
            return view(&s, &name).await;
        }
        if cur.not_after >= info.not_after.unix_timestamp() {
            return Err(ApiFailure::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "certificate {name}: the fleet already has a certificate valid as long or longer (serial {}); \
                     nothing imported",
                    cur.serial
                ),
            ));
        }
    }
    let new = crate::db::IssuedCert {
        cert_pem: req.cert_pem.trim().to_string() + "\n",
        chain_pem: req.chain_pem.clone(),
        serial,
        not_before: info.not_before.unix_timestamp(),
        not_after: info.not_after.unix_timestamp(),
        issuer: info.issuer_cn.clone().unwrap_or_default(),
        key_sha256: pki::sha256_fingerprint(&info.spki_der),
        issued_at: s.now(),
    };
    let (next_attempt, reason) = super::renewal::next_renewal(&info, s.clock.as_ref());
    let commit = crate::db::Commit {
        cert: &new,
        key_blob: None,
        lease_owner: None,
        csr_id: None,
        next_attempt,
        next_attempt_reason: &reason,
        actor: "admin",
        imported: true,
    };
    s.db.commit_issued(&name, &commit).await?;
    s.wake.notify_one();
    view(&s, &name).await
}

async fn set_enabled(s: AppState, name: String, enabled: bool) -> ApiResult<Json<CertificateView>> {
    s.db.set_enabled(&name, enabled).await?;
    let kind = if enabled { "enabled" } else { "disabled" };
    event(&s, Some(&name), None, kind, "admin", "").await;
    if enabled {
        s.wake.notify_one();
    }
    view(&s, &name).await
}

#[utoipa::path(post, path = "/api/v1/certificates/{name}/enable", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 200, description = "Enabled", body = CertificateView), (status = 404, description = "No such certificate", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn enable_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    set_enabled(s, name, true).await
}

#[utoipa::path(post, path = "/api/v1/certificates/{name}/disable", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 200, description = "Disabled", body = CertificateView), (status = 404, description = "No such certificate", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn disable_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    set_enabled(s, name, false).await
}

#[utoipa::path(put, path = "/api/v1/certificates/{name}/hosts/{host}", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), ("host" = String, Path, description = "Host name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 204, description = "Assigned"), (status = 404, description = "No such certificate or host", body = ApiError), (status = 409, description = "An agent-custody certificate already goes to another host", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn assign(
    State(s): State<AppState>,
    _: Admin,
    Path((name, host)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let cert = s.db.certificate(&name).await?;
    s.db.host(&host).await?;
    if cert.settings.custody == Custody::Agent {
        let others: Vec<String> =
            s.db.hosts_of(&name)
                .await?
                .into_iter()
                .filter(|h| *h != host)
                .collect();
        if !others.is_empty() {
            return Err(ApiFailure::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "certificate {name} has agent custody and already goes to {}: its key lives on that host; \
                     add a separate certificate for {host}, or use a server-custody certificate",
                    others.join(", ")
                ),
            ));
        }
    }
    if s.db.assign(&name, &host, s.now()).await? {
        event(&s, Some(&name), Some(&host), "assigned", "admin", "").await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/certificates/{name}/hosts/{host}", tag = "certificates", security(("admin_token" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), ("host" = String, Path, description = "Host name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 204, description = "Unassigned"), (status = 404, description = "Not assigned", body = ApiError), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "No or a wrong admin token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn unassign(
    State(s): State<AppState>,
    _: Admin,
    Path((name, host)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if !s.db.unassign(&name, &host).await? {
        return Err(ApiFailure::not_found(format!(
            "certificate {name} is not assigned to host {host}"
        )));
    }
    event(&s, Some(&name), Some(&host), "unassigned", "admin", "").await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- enrollment ----

#[utoipa::path(post, path = "/api/v1/enroll", tag = "agent", request_body = EnrollRequest, responses((status = 415, description = "The body is not sent as application/json", body = ApiError), (status = 422, description = "The JSON does not have the expected fields", body = ApiError), (status = 200, description = "The host's client certificate", body = EnrollResponse), (status = 400, description = "Invalid CSR", body = ApiError), (status = 401, description = "Unknown, used or expired enrollment token", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn enroll(
    State(s): State<AppState>,
    req_parts: axum::http::request::Parts,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    check_not_blocked(&s, &req_parts)?;
    let now = s.now();
    let host = match s
        .db
        .consume_enrollment_token(&hash_secret(&req.secret), now)
        .await
    {
        Ok(h) => h,
        Err(DbError::Token(why)) => {
            return Err(auth_failed(&s, &req_parts, &format!("enrollment refused: {why}")));
        }
        Err(e) => return Err(e.into()),
    };
    let issued =
        s.ca.issue_client_cert(&req.csr_pem, &host, s.clock.now())
            .map_err(|e| ApiFailure::invalid(format!("enrollment of host {host}: {e}")))?;
    let cred = crate::db::HostCredential {
        cert_sha256: &issued.fingerprint_sha256,
        serial: &issued.serial_hex,
        agent_version: &req.agent_version,
    };
    s.db.set_host_credential(&host, &cred, now).await?;
    event(
        &s,
        None,
        Some(&host),
        "enrolled",
        &format!("host:{host}"),
        &format!("agent {}", req.agent_version),
    )
    .await;
    Ok(Json(EnrollResponse {
        host,
        client_cert_pem: issued.cert_pem,
        ca_cert_pem: s.ca.cert_pem().to_string(),
    }))
}

// ---- agents ----

#[utoipa::path(get, path = "/api/v1/agent/assignments", tag = "agent", security(("agent_certificate" = [])), responses((status = 200, description = "The certificates assigned to the asking host", body = [Assignment]), (status = 401, description = "No or an unknown client certificate", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn agent_assignments(
    State(s): State<AppState>,
    AgentHost(host): AgentHost,
) -> ApiResult<Json<Vec<Assignment>>> {
    // Each agent sync starts here: the check-in counter.
    s.metrics.checkin(&host.name);
    Ok(Json(s.db.host_assignments(&host.name).await?))
}

async fn assigned_certificate(s: &AppState, host: &str, name: &str) -> ApiResult<crate::db::Certificate> {
    // Same answer for "no such certificate" and "not yours": a host learns nothing about
    // certificates it does not have.
    if !s.db.is_assigned(name, host).await? {
        return Err(ApiFailure::not_found(format!(
            "certificate {name} is not assigned to host {host} (the admin assigns it: certfleet fleet assign {name} {host})"
        )));
    }
    Ok(s.db.certificate(name).await?)
}

#[utoipa::path(get, path = "/api/v1/agent/certificates/{name}", tag = "agent", security(("agent_certificate" = [])), params(("name" = String, Path, description = "Certificate name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")), responses((status = 200, description = "The newest certificate (and, server custody, its key)", body = Delivery), (status = 404, description = "Not assigned to this host, or not issued yet", body = ApiError), (status = 401, description = "No or an unknown client certificate", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn agent_certificate(
    State(s): State<AppState>,
    AgentHost(host): AgentHost,
    Path(name): Path<String>,
) -> ApiResult<Json<Delivery>> {
    let cert = assigned_certificate(&s, &host.name, &name).await?;
    let Some(cur) = &cert.current else {
        return Err(ApiFailure::not_found(format!(
            "certificate {name} has not been issued yet ({})",
            cert.next_attempt_reason
                .as_deref()
                .unwrap_or("waiting for the renewal loop")
        )));
    };
    let key_pem = if cert.settings.custody == Custody::Server {
        let keys = s.db.server_keys(&name).await?;
        let blob = keys
            .current
            .ok_or_else(|| ApiFailure::internal(format!("{name}: server-custody key missing")))?;
        let blob = String::from_utf8(blob)
            .map_err(|_| ApiFailure::internal(format!("{name}: key blob not text")))?;
        let key = s.secretbox.open(&name, &blob).map_err(ApiFailure::internal)?;
        Some(String::from_utf8(key).map_err(|_| ApiFailure::internal(format!("{name}: key not PEM")))?)
    } else {
        None
    };
    event(
        &s,
        Some(&name),
        Some(&host.name),
        "fetched",
        &format!("host:{}", host.name),
        &format!("serial {}", cur.serial),
    )
    .await;
    Ok(Json(Delivery {
        certificate: name,
        identifiers: cert.settings.identifiers.clone(),
        serial: cur.serial.clone(),
        not_before: cur.not_before,
        not_after: cur.not_after,
        cert_pem: cur.cert_pem.clone(),
        chain_pem: cur.chain_pem.clone(),
        fullchain_pem: cur.fullchain_pem(),
        key_pem,
        key_sha256: cur.key_sha256.clone(),
    }))
}

#[utoipa::path(post, path = "/api/v1/agent/csr", tag = "agent", security(("agent_certificate" = [])), request_body = CsrUpload, responses((status = 415, description = "The body is not sent as application/json", body = ApiError), (status = 422, description = "The JSON does not have the expected fields", body = ApiError), (status = 204, description = "Stored"), (status = 400, description = "Invalid CSR or server custody", body = ApiError), (status = 404, description = "Not assigned to this host", body = ApiError), (status = 401, description = "No or an unknown client certificate", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn agent_csr(
    State(s): State<AppState>,
    AgentHost(host): AgentHost,
    Json(up): Json<CsrUpload>,
) -> ApiResult<StatusCode> {
    let cert = assigned_certificate(&s, &host.name, &up.certificate).await?;
    if cert.settings.custody != Custody::Agent {
        return Err(ApiFailure::invalid(format!(
            "certificate {} has server custody: the server makes its key, no CSR is needed",
            up.certificate
        )));
    }
    let spki = pki::spki_sha256_of_csr(&up.csr_pem).map_err(|e| ApiFailure::invalid(format!("CSR: {e}")))?;
    let der = pem::parse(&up.csr_pem)
        .map_err(|e| ApiFailure::invalid(format!("CSR: not PEM ({e})")))?
        .into_contents();
    let now = s.now();
    s.db.put_csr(&up.certificate, &host.name, &der, &spki, now)
        .await?;
    event(
        &s,
        Some(&up.certificate),
        Some(&host.name),
        "csr-uploaded",
        &format!("host:{}", host.name),
        &format!("key {}", &spki[..16]),
    )
    .await;
    // A certificate waiting for its first CSR can be issued now.
    if cert.current.is_none() {
        s.db.schedule(&up.certificate, now, "first issuance: the host sent its CSR")
            .await?;
        s.wake.notify_one();
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/agent/report", tag = "agent", security(("agent_certificate" = [])), request_body = InstallReport, responses((status = 415, description = "The body is not sent as application/json", body = ApiError), (status = 422, description = "The JSON does not have the expected fields", body = ApiError), (status = 204, description = "Stored"), (status = 404, description = "Not assigned to this host", body = ApiError), (status = 401, description = "No or an unknown client certificate", body = ApiError), (status = 429, description = "Too many failed authentications from this address", body = ApiError)))]
async fn agent_report(
    State(s): State<AppState>,
    AgentHost(host): AgentHost,
    Json(r): Json<InstallReport>,
) -> ApiResult<StatusCode> {
    assigned_certificate(&s, &host.name, &r.certificate).await?;
    let now = s.now();
    s.db.touch_host(&host.name, now, &r.agent_version).await?;
    let before =
        s.db.install_reports(&r.certificate)
            .await?
            .into_iter()
            .find(|v| v.host == host.name);
    s.db.put_install_report(&host.name, &r, now).await?;
    s.metrics.install_report(&host.name, r.state);
    // The log gets a line when something changed, not for every unchanged check-in.
    let changed = before.is_none_or(|b| b.state != Some(r.state) || b.installed_serial != r.installed_serial);
    if changed {
        // Event kinds are the install states, except that a bare "failed" would read as a
        // failed renewal in the certificate's history.
        let kind = match r.state {
            InstallState::Failed => "install-failed",
            state => state.as_str(),
        };
        let mut detail = r
            .installed_serial
            .as_deref()
            .map(|s| format!("serial {s}"))
            .unwrap_or_default();
        if let Some(e) = &r.error {
            detail = format!("{detail}: {e}");
        }
        event(
            &s,
            Some(&r.certificate),
            Some(&host.name),
            kind,
            &format!("host:{}", host.name),
            &detail,
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
