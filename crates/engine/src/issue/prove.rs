//! Proving control of every pending name of an order: present all challenge responses at
//! once, tell the CA, wait for its verdict, clean up whatever happened.

use std::time::Duration;

use certfleet_acme::{Account, AcmeError, AuthorizationStatus};
use certfleet_core::{ChallengeType, Identifier};
use certfleet_solvers::{ChallengeTask, Solver};

use crate::EngineError;
use crate::events::{EventSink, step};

pub(super) async fn prove_control(
    account: &Account,
    solver: &dyn Solver,
    authz_urls: &[String],
    timeout: Duration,
    events: &dyn EventSink,
) -> Result<(), EngineError> {
    let authzs = futures::future::try_join_all(authz_urls.iter().map(|u| account.authorization(u))).await?;
    let kind = solver.challenge_type();
    let mut pending = Vec::new();
    for (url, authz) in authz_urls.iter().zip(&authzs) {
        if authz.status != AuthorizationStatus::Pending {
            continue; // valid already (authorization reuse)
        }
        let name = authz.ordered_name();
        let challenge = authz
            .challenge(kind.as_str())
            .ok_or_else(|| EngineError::ChallengeNotOffered {
                identifier: name.clone(),
                challenge: kind,
                offered: authz.challenges.iter().map(|c| c.kind.clone()).collect(),
            })?;
        let identifier = if authz.identifier.kind == "ip" {
            Identifier::ip(&authz.identifier.value)
        } else {
            Identifier::dns(&name)
        }
        .map_err(EngineError::CaIdentifier)?;
        pending.push((
            url.clone(),
            challenge.url.clone(),
            ChallengeTask {
                identifier,
                token: challenge.token.clone(),
                key_authorization: account.key().key_authorization(&challenge.token),
            },
        ));
    }
    if pending.is_empty() {
        return Ok(());
    }
    let tasks: Vec<ChallengeTask> = pending.iter().map(|p| p.2.clone()).collect();
    step(
        events,
        &format!(
            "answering {kind} for {}",
            tasks
                .iter()
                .map(|t| t.identifier.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let outcome = async {
        solver.present(&tasks).await?;
        futures::future::try_join_all(pending.iter().map(|(_, ch, _)| account.respond(ch))).await?;
        step(events, "waiting for the CA to validate");
        futures::future::try_join_all(
            pending
                .iter()
                .map(|(az, _, _)| account.wait_authorization(az, timeout)),
        )
        .await
        .map_err(|e| validation_error(e, kind))
    }
    .await;
    // Clean up whatever happened; a cleanup failure is worth a warning, not a lost certificate.
    if let Err(e) = solver.cleanup(&tasks).await {
        tracing::warn!("cleaning up {kind} challenges failed: {e}");
    }
    outcome.map(drop)
}

/// Turn a failed validation into an error that says what the CA saw and what to check.
fn validation_error(e: AcmeError, kind: ChallengeType) -> EngineError {
    let AcmeError::AuthorizationFailed {
        identifier, problem, ..
    } = &e
    else {
        return EngineError::Acme(e);
    };
    EngineError::Validation {
        identifier: identifier.clone(),
        challenge: kind,
        hints: hints(identifier, &problem.detail, kind),
        source: e,
    }
}

/// What usually causes a failed validation of this kind with this detail.
fn hints(identifier: &str, detail: &str, kind: ChallengeType) -> Vec<String> {
    let mut hints = Vec::new();
    let detail = detail.to_ascii_lowercase();
    match kind {
        ChallengeType::Http01 => {
            if detail.contains("403") || detail.contains("404") || detail.contains("unauthorized") {
                hints.extend([
                    format!("fetch http://{identifier}/.well-known/acme-challenge/test yourself: it must reach the webroot given with -w"),
                    "web server: an Alias or location for /.well-known/acme-challenge/ must point at the webroot, with read access (Apache: Require all granted; nginx: allow all)".to_string(),
                    "each vhost has its own DocumentRoot/root: the webroot must be the one of the vhost that answers this name".to_string(),
                    "a reverse proxy (ProxyPass, mod_jk, proxy_pass) must not forward /.well-known/acme-challenge/ (Apache: ProxyPass /.well-known/acme-challenge/ !)".to_string(),
                    "redirects to https are fine, but not to another host that lacks the file".to_string(),
                ]);
            } else if detail.contains("connection")
                || detail.contains("timeout")
                || detail.contains("refused")
            {
                hints.extend([
                    "port 80 must be open to the internet: check the firewall, security groups and fail2ban bans"
                        .to_string(),
                    format!("the A/AAAA records of {identifier} must point at this server"),
                ]);
            }
        }
        ChallengeType::TlsAlpn01 => {
            hints.extend([
                format!("port 443 of {identifier} must reach certfleet's --tls-alpn-01-port: check the firewall and any port forward"),
                "a proxy or load balancer that terminates TLS on 443 hides the acme-tls/1 handshake: pass it through, or use http-01/dns-01".to_string(),
            ]);
        }
        ChallengeType::Dns01 => {
            hints.push(format!(
                "check the TXT record of _acme-challenge.{} at every authoritative nameserver",
                identifier.trim_start_matches("*.")
            ));
        }
    }
    hints
}
