//! The dashboard password: set by `certfleet fleet admin passwd` (`PUT /api/v1/admin/password`
//! with the admin token), stored in the settings as an scrypt hash
//! (`scrypt$LOG_N$R$P$SALT$HASH`, base64), checked at login. Setting it ends every session.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use rand::RngCore;

use super::super::auth::Admin;
use super::super::error::ApiFailure;
use super::super::state::AppState;
use crate::proto::NewPassword;

pub const PASSWORD_SETTING: &str = "dashboard-password";
/// scrypt cost: 2^15 × 8 × 128 bytes = 32 MiB and some tens of milliseconds per guess.
const LOG_N: u8 = 15;
const R: u32 = 8;
const P: u32 = 1;
const HASH_LEN: usize = 32;
pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

fn derive(password: &str, salt: &[u8], log_n: u8, r: u32, p: u32) -> Option<[u8; HASH_LEN]> {
    let params = scrypt::Params::new(log_n, r, p).ok()?;
    let mut out = [0u8; HASH_LEN];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out).ok()?;
    Some(out)
}

/// The stored form of a new password (random 16-byte salt).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let hash = derive(password, &salt, LOG_N, R, P).expect("fixed scrypt parameters are valid");
    format!("scrypt${LOG_N}${R}${P}${}${}", B64.encode(salt), B64.encode(hash))
}

/// Whether `password` matches the stored form (an unreadable one matches nothing).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let f: Vec<&str> = stored.split('$').collect();
    let [alg, log_n, r, p, salt, hash] = f.as_slice() else {
        return false;
    };
    if *alg != "scrypt" {
        return false;
    }
    let (Ok(log_n), Ok(r), Ok(p), Ok(salt), Ok(hash)) = (
        log_n.parse::<u8>(),
        r.parse::<u32>(),
        p.parse::<u32>(),
        B64.decode(salt),
        B64.decode(hash),
    ) else {
        return false;
    };
    // A corrupted row must not make the server allocate gigabytes.
    if log_n > 20 || r > 16 || p > 4 {
        return false;
    }
    derive(password, &salt, log_n, r, p).is_some_and(|h| super::constant_time_eq(&h, &hash))
}

/// Why a new password is refused, in words for the admin.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password has {n} characters; use at least {MIN_PASSWORD_LEN} (a passphrase of a few words is good)"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("the password is longer than {MAX_PASSWORD_LEN} bytes"));
    }
    if password.trim() != password {
        return Err("the password starts or ends with white space (a stray newline?)".into());
    }
    Ok(())
}

/// `PUT /api/v1/admin/password`.
pub async fn set_password(
    State(s): State<AppState>,
    _: Admin,
    Json(req): Json<NewPassword>,
) -> Result<StatusCode, ApiFailure> {
    check_new_password(&req.password).map_err(ApiFailure::invalid)?;
    let password = req.password;
    let stored = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiFailure::internal)?;
    let now = s.now();
    s.db.put_setting(PASSWORD_SETTING, &stored, now).await?;
    let ended = s.db.delete_all_sessions().await?;
    let ev = crate::db::NewEvent {
        at: now,
        certificate: None,
        host: None,
        kind: "dashboard-password-set",
        actor: "admin",
        detail: &format!("{ended} dashboard session(s) ended"),
    };
    if let Err(e) = s.db.append_event(&ev).await {
        tracing::warn!("recording event dashboard-password-set: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("correct horse battery");
        let b = hash_password("correct horse battery");
        assert_ne!(a, b);
        assert!(a.starts_with("scrypt$15$8$1$"));
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse battery!", &a));
        assert!(!verify_password("x", "scrypt$40$8$1$AA$AA"));
        assert!(!verify_password("x", "garbage"));
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert!(check_new_password("short").unwrap_err().contains("at least 12"));
        assert!(check_new_password("long enough pass\n").is_err());
        assert!(check_new_password("long enough pass").is_ok());
    }
}
