//! Temp files of atomic writes (the store's and the state store's) left by a process that
//! died mid-write: found by their names, removed after a successful renewal.

/// Remove the temp files of the store's and the state store's atomic writes left by a process
/// that died (`.NAME.tmp-PID-N`, `.NAME.link-PID-N`, `.NAME.new-PID`, `.NAME.json.PID.N.tmp`),
/// never this process's own.
pub fn sweep_temp_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id().to_string();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = temp_file_pid(name)
            && pid != me
        {
            let path = e.path();
            let res = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match res {
                Ok(()) => tracing::info!("removed {} left by an interrupted run", path.display()),
                Err(err) => tracing::warn!("cannot remove {}: {err}", path.display()),
            }
        }
    }
}

/// The pid in a temp file name of ours, if `name` is one.
fn temp_file_pid(name: &str) -> Option<&str> {
    if !name.starts_with('.') {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for marker in [".tmp-", ".link-"] {
        if let Some(i) = name.rfind(marker) {
            let (pid, n) = name[i + marker.len()..].split_once('-')?;
            return (digits(pid) && digits(n)).then_some(pid);
        }
    }
    if let Some(i) = name.rfind(".new-") {
        let pid = &name[i + 5..];
        return digits(pid).then_some(pid);
    }
    let rest = name.strip_suffix(".tmp")?;
    let (rest, n) = rest.rsplit_once('.')?;
    let (_, pid) = rest.rsplit_once('.')?;
    (digits(pid) && digits(n)).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_names() {
        assert_eq!(temp_file_pid(".cert3.pem.tmp-123-0"), Some("123"));
        assert_eq!(temp_file_pid(".cert.pem.link-77-12"), Some("77"));
        assert_eq!(temp_file_pid(".a.example.new-4242"), Some("4242"));
        assert_eq!(temp_file_pid(".a.example.json.99.3.tmp"), Some("99"));
        assert_eq!(temp_file_pid("cert3.pem"), None);
        assert_eq!(temp_file_pid(".certbot.lock"), None);
        assert_eq!(temp_file_pid("README"), None);
        assert_eq!(temp_file_pid(".x.tmp-abc-1"), None);
    }
}
