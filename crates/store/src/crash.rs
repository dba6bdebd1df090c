//! Test-only crash injection. When `CERTFLEET_CRASH_AT` names a point the process reaches,
//! it aborts right there (no destructors, no flushing), the closest thing to a power cut a
//! test can cause. Integration tests run a child process with the variable set and then
//! check what a fresh reader (certfleet or certbot) makes of the tree.

use std::sync::OnceLock;

pub const CRASH_ENV: &str = "CERTFLEET_CRASH_AT";

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var(CRASH_ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Abort the process if `CERTFLEET_CRASH_AT` equals `name`.
pub fn point(name: &str) {
    if target() == Some(name) {
        eprintln!("certfleet: {CRASH_ENV}={name}: aborting on purpose");
        std::process::abort();
    }
}

pub const FAIL_ENV: &str = "CERTFLEET_FAIL_AT";

/// Test-only fault injection, like [`point`] but survivable: fails with "no space left on
/// device" if `CERTFLEET_FAIL_AT` equals `name`, so tests can show what a full disk at that
/// step leaves behind and how it is reported.
pub fn fail(name: &str) -> std::io::Result<()> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(FAIL_ENV).ok().filter(|s| !s.is_empty()));
    if target.as_deref() == Some(name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("{FAIL_ENV}={name}: no space left on device (injected)"),
        ));
    }
    Ok(())
}
