//! ACME profiles (draft-ietf-acme-profiles): which one to ask for, and what to do when the CA
//! does not honour the request.

use certfleet_acme::{Account, AcmeError, Directory, ProblemKind};

use super::IssueRequest;
use crate::EngineError;

/// The profile to put in the order: a required one (which the CA must advertise), a
/// preferred one if advertised, else none (the CA's default).
pub(super) fn choose(account: &Account, req: &IssueRequest) -> Result<Option<String>, EngineError> {
    let directory = account.client().directory();
    if let Some(p) = &req.required_profile {
        check_required_profile(directory, p)?;
        return Ok(Some(p.clone()));
    }
    match &req.preferred_profile {
        Some(p) if directory.meta.profiles.contains_key(p) => Ok(Some(p.clone())),
        Some(p) => {
            tracing::warn!("the CA does not advertise profile {p:?}; using its default");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// `--required-profile`: the CA must advertise it. Checked before any account or order exists.
pub fn check_required_profile(directory: &Directory, p: &str) -> Result<(), EngineError> {
    if directory.meta.profiles.contains_key(p) {
        return Ok(());
    }
    Err(EngineError::config(format!(
        "--required-profile {p}: the CA does not advertise profile {p:?} ({})",
        offered_profiles(directory)
    )))
}

fn offered_profiles(directory: &Directory) -> String {
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
pub(super) fn check_order(
    asked: Option<&str>,
    got: Option<&str>,
    req: &IssueRequest,
) -> Result<(), EngineError> {
    let (Some(asked), Some(got)) = (asked, got) else {
        return Ok(());
    };
    if asked == got {
        return Ok(());
    }
    if req.required_profile.is_some() {
        return Err(EngineError::ProfileSwapped {
            asked: asked.to_string(),
            got: got.to_string(),
        });
    }
    tracing::warn!("asked for profile {asked:?}, the CA chose {got:?}");
    Ok(())
}

/// A refused new order; `invalidProfile` says which profile, since the directory may advertise
/// a profile the CA still refuses (account policy, stale directory).
pub(super) fn order_error(e: AcmeError, profile: Option<&str>, account: &Account) -> EngineError {
    if let (Some(p), Some(problem)) = (profile, e.problem())
        && problem.kind() == ProblemKind::InvalidProfile
    {
        return EngineError::ProfileRefused {
            profile: p.to_string(),
            offered: offered_profiles(account.client().directory()),
            source: e,
        };
    }
    EngineError::Acme(e)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::issue::KeySource;

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
        let err = check_order(Some("shortlived"), Some("classic"), &required).unwrap_err();
        assert!(matches!(err, EngineError::ProfileSwapped { .. }), "{err}");
        assert!(err.to_string().contains("\"classic\" instead"), "{err}");
        // Same profile, or a CA that does not echo it: nothing to say.
        assert!(check_order(Some("shortlived"), Some("shortlived"), &required).is_ok());
        assert!(check_order(Some("shortlived"), None, &required).is_ok());
        // Preferred: the CA's choice stands.
        let preferred = req(Some("shortlived"), None);
        assert!(check_order(Some("shortlived"), Some("classic"), &preferred).is_ok());
    }
}
