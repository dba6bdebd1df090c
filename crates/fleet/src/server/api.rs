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
    API_PREFIX, Assignment, CertificateDetail, CertificateView, ChallengeSettings, CsrUpload, Custody,
    Delivery, EnrollRequest, EnrollResponse, HostEnrollment, HostView, InstallReport, InstallState,
    LIST_PAGE, ListQuery, MAX_PAGE, NewCertificate, NewHost,
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
        .route("/certificates/{name}/hosts/{host}", put(assign).delete(unassign))
        .route("/enroll", post(enroll))
        .route("/agent/assignments", get(agent_assignments))
        .route("/agent/certificates/{name}", get(agent_certificate))
        .route("/agent/csr", post(agent_csr))
        .route("/agent/report", post(agent_report))
        .route("/admin/password", put(super::dashboard::password::set_password));
    Router::new()
        .nest(API_PREFIX, api)
        .route(super::metrics::METRICS_PATH, get(super::metrics::handler))
        .merge(super::dashboard::routes())
        .fallback(|| async { ApiFailure::not_found("no such route (the API lives under /api/v1/)") })
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

async fn list_hosts(State(s): State<AppState>, _: Admin) -> ApiResult<Json<Vec<HostView>>> {
    Ok(Json(s.db.host_views().await?))
}

async fn remove_host(State(s): State<AppState>, _: Admin, Path(host): Path<String>) -> ApiResult<StatusCode> {
    s.db.delete_host(&host).await?;
    event(&s, None, Some(&host), "host-removed", "admin", "").await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- certificates ----

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

async fn list_certificates(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<CertificateView>>> {
    let limit = q.limit.unwrap_or(LIST_PAGE).clamp(1, MAX_PAGE);
    Ok(Json(
        s.db.certificate_views(s.now(), q.after.as_deref(), limit).await?,
    ))
}

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

async fn set_enabled(s: AppState, name: String, enabled: bool) -> ApiResult<Json<CertificateView>> {
    s.db.set_enabled(&name, enabled).await?;
    let kind = if enabled { "enabled" } else { "disabled" };
    event(&s, Some(&name), None, kind, "admin", "").await;
    if enabled {
        s.wake.notify_one();
    }
    view(&s, &name).await
}

async fn enable_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    set_enabled(s, name, true).await
}

async fn disable_certificate(
    State(s): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    set_enabled(s, name, false).await
}

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
