//! certbot's manual hooks (`--manual-auth-hook`, `--manual-cleanup-hook`), shared by dns-01
//! ([`crate::dns::exec`]) and http-01 ([`crate::http01_manual`]): `sh -c HOOK`, one run per
//! challenge, one after the other, with certbot's environment:
//!
//! - `CERTBOT_DOMAIN`: the name being validated (no `*.`);
//! - `CERTBOT_VALIDATION`: the TXT value (dns-01) or the file's content (http-01);
//! - `CERTBOT_TOKEN`: http-01 only, the file name under `/.well-known/acme-challenge/`;
//! - `CERTBOT_REMAINING_CHALLENGES`: how many challenges come after this one;
//! - `CERTBOT_ALL_DOMAINS`: every name of the batch, comma-separated;
//! - `CERTBOT_AUTH_OUTPUT` (cleanup only): the auth hook's trimmed standard output.
//!
//! Unlike certbot, a hook exiting non-zero is an error, with the end of its stderr.

/// Environment variables of one hook run.
pub(crate) type Env = Vec<(String, String)>;

#[derive(Debug)]
pub(crate) enum HookError {
    /// The shell could not be started.
    Spawn { context: String, source: std::io::Error },
    /// The hook ran and failed: what it said.
    Failed(String),
}

/// certbot's variables for challenge `i` of a batch over `domains`.
pub(crate) fn certbot_env(domains: &[&str], i: usize, validation: &str, token: Option<&str>) -> Env {
    let mut env = vec![
        ("CERTBOT_DOMAIN".into(), domains[i].to_string()),
        ("CERTBOT_VALIDATION".into(), validation.to_string()),
        ("CERTBOT_ALL_DOMAINS".into(), domains.join(",")),
        (
            "CERTBOT_REMAINING_CHALLENGES".into(),
            (domains.len() - i - 1).to_string(),
        ),
    ];
    if let Some(t) = token {
        env.push(("CERTBOT_TOKEN".into(), t.to_string()));
    }
    env
}

/// Run `sh -c hook` with `env` (and no `CERTBOT_TOKEN` unless `env` sets it); returns its
/// trimmed stdout.
pub(crate) async fn run(
    which: &str,
    hook: &str,
    domain: &str,
    env: &[(String, String)],
) -> Result<String, HookError> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(hook)
        .env_remove("CERTBOT_TOKEN")
        .env_remove("CERTBOT_AUTH_OUTPUT")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| HookError::Spawn {
            context: format!("running --manual-{which}-hook for {domain}"),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(HookError::Failed(format!(
            "--manual-{which}-hook for {domain} failed ({}): {}",
            out.status,
            if tail.is_empty() {
                "no error output".into()
            } else {
                tail.join(" | ")
            }
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
