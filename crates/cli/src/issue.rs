//! The issuance pipeline: order, prove control of every name, finalize, download, pick a
//! chain. Shared by `certonly` and `renew`; knows nothing about files.

use std::time::Duration;

use certfleet_acme::{Account, AcmeError, ChainOption, NewOrder, OrderStatus};
use certfleet_core::cert::pem_certificates;
use certfleet_core::{CertInfo, Identifier, KeySpec, PrivateKey};
use certfleet_solvers::{ChallengeTask, Solver};

use crate::error::{CliError, ExitCode};
use crate::progress::Progress;

/// Where the certificate's key comes from.
pub enum KeySource {
    Generate(KeySpec),
    Reuse(PrivateKey),
    /// `--csr`: the CSR is the caller's; certfleet never sees the key.
    Csr(Vec<u8>),
}

pub struct IssueRequest {
    pub identifiers: Vec<Identifier>,
    pub key: KeySource,
    pub preferred_profile: Option<String>,
    pub required_profile: Option<String>,
    pub preferred_chain: Option<String>,
    pub replaces: Option<String>,
    pub timeout: Duration,
}

pub struct Issued {
    /// Leaf first, then the chain, as the CA sent it (for the chain we chose).
    pub fullchain_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
    pub key: Option<PrivateKey>,
    pub info: CertInfo,
}

/// Callers run `solver.preflight` first, before any account or lock work, so a bad setup
/// fails without a request to the CA.
pub async fn issue(
    account: &Account,
    solver: &dyn Solver,
    req: IssueRequest,
    progress: &Progress,
) -> Result<Issued, CliError> {
    let ids = &req.identifiers;
    let profile = choose_profile(account, &req)?;

    // Key generation (RSA 4096 takes a while) overlaps with validation at the CA.
    let key_task = match &req.key {
        KeySource::Generate(spec) => {
            let spec = *spec;
            Some(tokio::task::spawn_blocking(move || PrivateKey::generate(spec)))
        }
        _ => None,
    };

    progress.step(&format!("ordering a certificate for {}", names(ids)));
    let (order_url, order) = account
        .new_order(&NewOrder {
            identifiers: ids.clone(),
            profile: profile.clone(),
            replaces: req.replaces.clone(),
        })
        .await
        .map_err(|e| order_error(e, profile.as_deref(), account))?;
    check_order_profile(profile.as_deref(), order.profile.as_deref(), &req)?;

    if order.status == OrderStatus::Pending {
        prove_control(account, solver, &order.authorizations, req.timeout, progress).await?;
    }
    let order = account
        .wait_order(&order_url, &[OrderStatus::Ready, OrderStatus::Valid], req.timeout)
        .await
        .map_err(CliError::acme)?;

    let (key, csr) = match req.key {
        KeySource::Csr(der) => (None, der),
        KeySource::Reuse(k) => {
            let csr = k
                .csr_der(ids)
                .map_err(|e| CliError::new(ExitCode::Failure, e.to_string()))?;
            (Some(k), csr)
        }
        KeySource::Generate(_) => {
            let k = key_task
                .expect("spawned above")
                .await
                .map_err(|e| CliError::new(ExitCode::Failure, format!("key generation: {e}")))?
                .map_err(|e| CliError::new(ExitCode::Failure, e.to_string()))?;
            let csr = k
                .csr_der(ids)
                .map_err(|e| CliError::new(ExitCode::Failure, e.to_string()))?;
            (Some(k), csr)
        }
    };

    progress.step("finalizing the order");
    let order = if order.status == OrderStatus::Valid {
        order
    } else {
        account
            .finalize(&order_url, &order.finalize, &csr, req.timeout)
            .await
            .map_err(CliError::acme)?
    };
    let cert_url = order.certificate.ok_or_else(|| {
        CliError::new(
            ExitCode::Ca,
            "the CA marked the order valid but gave no certificate URL".to_string(),
        )
    })?;

    progress.step("downloading the certificate");
    let chains = account
        .download(&cert_url, req.preferred_chain.is_some())
        .await
        .map_err(CliError::acme)?;
    let chosen = choose_chain(chains, req.preferred_chain.as_deref());
    split_chain(&chosen.pem, key)
}

/// Run an issuance; on Ctrl-C or SIGTERM stop it, remove every challenge response the solver
/// has put in place (DNS records must not outlive the run), and fail with nothing saved.
pub async fn interruptible<T>(
    solver: &dyn Solver,
    issuance: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| {
        CliError::new(
            ExitCode::Failure,
            format!("cannot install a SIGTERM handler: {e}"),
        )
    })?;
    let why = tokio::select! {
        r = issuance => return r,
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
    };
    if let Err(e) = solver.cleanup_all().await {
        tracing::warn!("removing challenge responses after the interruption failed: {e}");
    }
    Err(CliError::new(
        ExitCode::Failure,
        format!("{why}: challenge responses removed, nothing saved"),
    ))
}

async fn prove_control(
    account: &Account,
    solver: &dyn Solver,
    authz_urls: &[String],
    timeout: Duration,
    progress: &Progress,
) -> Result<(), CliError> {
    let authzs = futures::future::try_join_all(authz_urls.iter().map(|u| account.authorization(u)))
        .await
        .map_err(CliError::acme)?;
    let kind = solver.challenge_type();
    let mut pending = Vec::new();
    for (url, authz) in authz_urls.iter().zip(&authzs) {
        if authz.status != certfleet_acme::AuthorizationStatus::Pending {
            continue; // valid already (authorization reuse)
        }
        let name = authz.ordered_name();
        let challenge = authz.challenge(kind.as_str()).ok_or_else(|| {
            let offered: Vec<&str> = authz.challenges.iter().map(|c| c.kind.as_str()).collect();
            CliError::new(
                ExitCode::Validation,
                format!(
                    "the CA does not offer {kind} for {name} (it offers: {}); choose another authenticator",
                    offered.join(", ")
                ),
            )
        })?;
        let identifier = if authz.identifier.kind == "ip" {
            Identifier::ip(&authz.identifier.value)
        } else {
            Identifier::dns(&name)
        }
        .map_err(|e| CliError::new(ExitCode::Ca, e.to_string()))?;
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
    progress.step(&format!(
        "answering {kind} for {}",
        tasks
            .iter()
            .map(|t| t.identifier.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let outcome = async {
        solver.present(&tasks).await.map_err(CliError::solver)?;
        futures::future::try_join_all(pending.iter().map(|(_, ch, _)| account.respond(ch)))
            .await
            .map_err(CliError::acme)?;
        progress.step("waiting for the CA to validate");
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

fn choose_profile(account: &Account, req: &IssueRequest) -> Result<Option<String>, CliError> {
    let directory = account.client().directory();
    let offered = &directory.meta.profiles;
    if let Some(p) = &req.required_profile {
        check_required_profile(directory, p)?;
        return Ok(Some(p.clone()));
    }
    match &req.preferred_profile {
        Some(p) if offered.contains_key(p) => Ok(Some(p.clone())),
        Some(p) => {
            tracing::warn!("the CA does not advertise profile {p:?}; using its default");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// `--required-profile`: the CA must advertise it. Checked before any account or order exists.
pub fn check_required_profile(directory: &certfleet_acme::Directory, p: &str) -> Result<(), CliError> {
    if directory.meta.profiles.contains_key(p) {
        return Ok(());
    }
    Err(CliError::new(
        ExitCode::Usage,
        format!(
            "--required-profile {p}: the CA does not advertise profile {p:?} ({})",
            offered_profiles(directory)
        ),
    ))
}

fn offered_profiles(directory: &certfleet_acme::Directory) -> String {
    let offered = &directory.meta.profiles;
    if offered.is_empty() {
        "it advertises no profiles".to_string()
    } else {
        format!(
            "it offers: {}",
            offered.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

/// A CA may answer an order with another profile than the one asked for (the order object names
/// it, draft-ietf-acme-profiles). A required profile must hold; a preferred one earns a warning.
/// (acme2certifier 0.46 swaps silently when it has one profile, but its orders carry no `profile`.)
fn check_order_profile(asked: Option<&str>, got: Option<&str>, req: &IssueRequest) -> Result<(), CliError> {
    let (Some(asked), Some(got)) = (asked, got) else {
        return Ok(());
    };
    if asked == got {
        return Ok(());
    }
    if req.required_profile.is_some() {
        return Err(CliError::new(
            ExitCode::Ca,
            format!(
                "--required-profile {asked}: the CA created the order with profile {got:?} instead; \
                 nothing was issued\n  hint: ask the CA operator which profiles this account may use, \
                 or use --preferred-profile {asked} to accept the CA's choice"
            ),
        ));
    }
    tracing::warn!("asked for profile {asked:?}, the CA chose {got:?}");
    Ok(())
}

/// A refused new order; `invalidProfile` says which profile and what to do instead, since the
/// directory may advertise a profile the CA still refuses (account policy, stale directory).
fn order_error(e: AcmeError, profile: Option<&str>, account: &Account) -> CliError {
    if let (Some(p), Some(problem)) = (profile, e.problem())
        && problem.kind() == certfleet_acme::ProblemKind::InvalidProfile
    {
        return CliError::new(
            ExitCode::Ca,
            format!(
                "the CA refused the order with profile {p:?}: {problem}\n  \
                 hint: the CA's directory lists profiles ({}), but it does not accept {p:?} for this order \
                 (account or CA policy); choose another with --preferred-profile/--required-profile, \
                 or drop the flag to get the CA's default profile",
                offered_profiles(account.client().directory())
            ),
        );
    }
    CliError::acme(e)
}

/// certbot's rule: the first chain whose topmost issuer CN matches, else the default chain.
fn choose_chain(chains: Vec<ChainOption>, preferred: Option<&str>) -> ChainOption {
    if let Some(want) = preferred {
        if let Some(c) = chains.iter().find(|c| c.top_issuer_cn().as_deref() == Some(want)) {
            return c.clone();
        }
        if let Some(c) = chains.iter().find(|c| c.issuer_cns().iter().any(|cn| cn == want)) {
            return c.clone();
        }
        tracing::warn!("no chain has an issuer named {want:?}; keeping the CA's default chain");
    }
    chains
        .into_iter()
        .next()
        .expect("download returns the default chain first")
}

fn split_chain(fullchain: &str, key: Option<PrivateKey>) -> Result<Issued, CliError> {
    let ders = pem_certificates(fullchain).map_err(|e| {
        CliError::new(
            ExitCode::Ca,
            format!("the CA sent an unreadable certificate chain: {e}"),
        )
    })?;
    let info = CertInfo::from_der(&ders[0]).map_err(|e| CliError::new(ExitCode::Ca, e.to_string()))?;
    let pems: Vec<String> = ders.iter().map(|d| certfleet_core::cert::der_to_pem(d)).collect();
    Ok(Issued {
        fullchain_pem: pems.concat(),
        cert_pem: pems[0].clone(),
        chain_pem: pems[1..].concat(),
        key,
        info,
    })
}

fn names(ids: &[Identifier]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Turn a failed validation into an error that says what the CA saw and what to check.
fn validation_error(e: AcmeError, kind: certfleet_core::ChallengeType) -> CliError {
    let AcmeError::AuthorizationFailed {
        identifier, problem, ..
    } = &e
    else {
        return CliError::acme(e);
    };
    let mut msg = format!(
        "the CA could not validate {identifier} with {kind}: {}",
        problem.detail
    );
    let mut hints = Vec::new();
    let detail = problem.detail.to_ascii_lowercase();
    if kind == certfleet_core::ChallengeType::Http01 {
        if detail.contains("403") || detail.contains("404") || detail.contains("unauthorized") {
            hints.extend([
                format!("fetch http://{identifier}/.well-known/acme-challenge/test yourself: it must reach the webroot given with -w"),
                "web server: an Alias or location for /.well-known/acme-challenge/ must point at the webroot, with read access (Apache: Require all granted; nginx: allow all)".to_string(),
                "each vhost has its own DocumentRoot/root: the webroot must be the one of the vhost that answers this name".to_string(),
                "a reverse proxy (ProxyPass, mod_jk, proxy_pass) must not forward /.well-known/acme-challenge/ (Apache: ProxyPass /.well-known/acme-challenge/ !)".to_string(),
                "redirects to https are fine, but not to another host that lacks the file".to_string(),
            ]);
        } else if detail.contains("connection") || detail.contains("timeout") || detail.contains("refused") {
            hints.extend([
                "port 80 must be open to the internet: check the firewall, security groups and fail2ban bans"
                    .to_string(),
                format!("the A/AAAA records of {identifier} must point at this server"),
            ]);
        }
    } else if kind == certfleet_core::ChallengeType::TlsAlpn01 {
        hints.extend([
            format!("port 443 of {identifier} must reach certfleet's --tls-alpn-01-port: check the firewall and any port forward"),
            "a proxy or load balancer that terminates TLS on 443 hides the acme-tls/1 handshake: pass it through, or use http-01/dns-01".to_string(),
        ]);
    } else if kind == certfleet_core::ChallengeType::Dns01 {
        hints.push(format!(
            "check the TXT record of _acme-challenge.{} at every authoritative nameserver",
            identifier.trim_start_matches("*.")
        ));
    }
    for h in &hints {
        msg.push_str("\n  hint: ");
        msg.push_str(h);
    }
    CliError::new(ExitCode::Validation, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(preferred: Option<&str>, required: Option<&str>) -> IssueRequest {
        IssueRequest {
            identifiers: vec![],
            key: KeySource::Csr(vec![]),
            preferred_profile: preferred.map(str::to_string),
            required_profile: required.map(str::to_string),
            preferred_chain: None,
            replaces: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn order_profile_swapped_by_the_ca() {
        let required = req(None, Some("shortlived"));
        let err = check_order_profile(Some("shortlived"), Some("classic"), &required).unwrap_err();
        assert_eq!(err.code, ExitCode::Ca);
        assert!(err.message.contains("\"classic\" instead"), "{err}");
        // Same profile, or a CA that does not echo it: nothing to say.
        assert!(check_order_profile(Some("shortlived"), Some("shortlived"), &required).is_ok());
        assert!(check_order_profile(Some("shortlived"), None, &required).is_ok());
        // Preferred: the CA's choice stands.
        let preferred = req(Some("shortlived"), None);
        assert!(check_order_profile(Some("shortlived"), Some("classic"), &preferred).is_ok());
    }
}
