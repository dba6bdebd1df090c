//! The issuance pipeline: order, prove control of every name, finalize, download, pick a
//! chain. Shared by `certonly`, `renew` and the fleet server; returns the issued bundle and
//! knows nothing about where it is stored.

mod profile;
mod prove;

use std::time::Duration;

use certfleet_acme::{Account, ChainOption, NewOrder, OrderStatus};
use certfleet_core::cert::pem_certificates;
use certfleet_core::{CertInfo, Identifier, KeySpec, PrivateKey};
use certfleet_solvers::Solver;

pub use profile::check_required_profile;

use crate::EngineError;
use crate::events::{EventSink, step};

/// Where the certificate's key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Generate(KeySpec),
    Reuse(PrivateKey),
    /// `--csr`: the CSR is the caller's; certfleet never sees the key.
    Csr(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub identifiers: Vec<Identifier>,
    pub key: KeySource,
    pub preferred_profile: Option<String>,
    pub required_profile: Option<String>,
    pub preferred_chain: Option<String>,
    /// ARI (RFC 9773): the CertID of the certificate this one replaces.
    pub replaces: Option<String>,
    /// For each wait on the CA (validation, finalization).
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub chain_pem: String,
    /// Leaf first, then the chain, as the CA sent it (for the chain we chose).
    pub fullchain_pem: String,
    /// None for a CSR: the key is the caller's.
    pub key: Option<PrivateKey>,
    pub info: CertInfo,
}

/// [`issue`] for a renewal that names the certificate it `replaces` (ARI, RFC 9773): a CA that
/// already saw that certificate replaced (an earlier attempt crashed after its order) refuses
/// `replaces`, but the renewal itself is still wanted, so order again without it.
pub async fn issue_replacing(
    account: &Account,
    solver: &dyn Solver,
    req: IssueRequest,
    events: &dyn EventSink,
) -> Result<Issued, EngineError> {
    match issue(account, solver, req.clone(), events).await {
        Err(e) if req.replaces.is_some() && e.is_already_replaced() => {
            tracing::warn!(
                "{}: the CA refused `replaces` ({}); ordering without it",
                names(&req.identifiers),
                e.message()
            );
            let req = IssueRequest {
                replaces: None,
                ..req
            };
            issue(account, solver, req, events).await
        }
        other => other,
    }
}

/// Callers run `solver.preflight` first, before any account or lock work, so a bad setup
/// fails without a request to the CA.
pub async fn issue(
    account: &Account,
    solver: &dyn Solver,
    req: IssueRequest,
    events: &dyn EventSink,
) -> Result<Issued, EngineError> {
    let ids = &req.identifiers;
    let profile = profile::choose(account, &req)?;

    // Key generation (RSA 4096 takes a while) overlaps with validation at the CA.
    let key_task = match &req.key {
        KeySource::Generate(spec) => {
            let spec = *spec;
            Some(tokio::task::spawn_blocking(move || PrivateKey::generate(spec)))
        }
        _ => None,
    };

    step(events, &format!("ordering a certificate for {}", names(ids)));
    let (order_url, order) = account
        .new_order(&NewOrder {
            identifiers: ids.clone(),
            profile: profile.clone(),
            replaces: req.replaces.clone(),
        })
        .await
        .map_err(|e| profile::order_error(e, profile.as_deref(), account))?;
    profile::check_order(profile.as_deref(), order.profile.as_deref(), &req)?;

    if order.status == OrderStatus::Pending {
        prove::prove_control(account, solver, &order.authorizations, req.timeout, events).await?;
    }
    let order = account
        .wait_order(&order_url, &[OrderStatus::Ready, OrderStatus::Valid], req.timeout)
        .await?;

    let (key, csr) = match req.key {
        KeySource::Csr(der) => (None, der),
        KeySource::Reuse(k) => {
            let csr = k.csr_der(ids)?;
            (Some(k), csr)
        }
        KeySource::Generate(_) => {
            let k = key_task
                .expect("spawned above")
                .await
                .map_err(EngineError::KeyTask)??;
            let csr = k.csr_der(ids)?;
            (Some(k), csr)
        }
    };

    step(events, "finalizing the order");
    let order = if order.status == OrderStatus::Valid {
        order
    } else {
        account
            .finalize(&order_url, &order.finalize, &csr, req.timeout)
            .await?
    };
    let cert_url = order.certificate.ok_or(EngineError::NoCertificateUrl)?;

    step(events, "downloading the certificate");
    let chains = account.download(&cert_url, req.preferred_chain.is_some()).await?;
    let chosen = choose_chain(chains, req.preferred_chain.as_deref());
    split_chain(&chosen.pem, key)
}

/// Run an issuance; on Ctrl-C or SIGTERM stop it, remove every challenge response the solver
/// has put in place (DNS records must not outlive the run), and fail with nothing saved.
pub async fn interruptible<T>(
    solver: &dyn Solver,
    issuance: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(EngineError::Signal)?;
    let why = tokio::select! {
        r = issuance => return r,
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
    };
    if let Err(e) = solver.cleanup_all().await {
        tracing::warn!("removing challenge responses after the interruption failed: {e}");
    }
    Err(EngineError::Interrupted { why })
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

fn split_chain(fullchain: &str, key: Option<PrivateKey>) -> Result<Issued, EngineError> {
    let ders = pem_certificates(fullchain).map_err(EngineError::UnreadableChain)?;
    let info = CertInfo::from_der(&ders[0]).map_err(EngineError::UnreadableCertificate)?;
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
