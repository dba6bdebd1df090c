//! Built-in deploy action: test the service's configuration, then reload it only if the test
//! passed, so a broken config never takes a running server down (the old certificate keeps
//! being served and the user is shown the test's output).

use std::time::Duration;

use crate::hooks::{HookCommand, HookKind, HookResult, run_hook};

/// A service certfleet knows how to check and reload; anything else is a systemd unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Nginx,
    Apache2,
    Haproxy,
    Postfix,
    Dovecot,
    Unit(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid service {0:?} for reload: use nginx, apache2, haproxy, postfix, dovecot or a systemd unit name \
     (letters, digits and :-_.@\\)"
)]
pub struct ServiceError(pub String);

impl std::str::FromStr for Service {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "nginx" => Service::Nginx,
            "apache2" | "apache" | "httpd" => Service::Apache2,
            "haproxy" => Service::Haproxy,
            "postfix" => Service::Postfix,
            "dovecot" => Service::Dovecot,
            unit => {
                // systemd's unit-name alphabet; refuse anything a shell or systemctl option
                // parser could read as something else.
                let ok = !unit.is_empty()
                    && !unit.starts_with('-')
                    && unit.len() <= 256
                    && unit
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c));
                if !ok {
                    return Err(ServiceError(s.to_string()));
                }
                Service::Unit(unit.to_string())
            }
        })
    }
}

impl Service {
    /// The systemd unit reloaded for this service.
    pub fn unit(&self) -> &str {
        match self {
            Service::Nginx => "nginx",
            Service::Apache2 => "apache2",
            Service::Haproxy => "haproxy",
            Service::Postfix => "postfix",
            Service::Dovecot => "dovecot",
            Service::Unit(u) => u,
        }
    }
}

/// The command lines of a reload; overridable so tests (and unusual installs) can point at
/// their own binary and configuration, e.g. `nginx -t -c CONF` / `nginx -s reload -c CONF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadCommands {
    /// Name used in messages.
    pub service: String,
    /// Configuration test; `None` when the service has none (a plain systemd unit).
    pub config_test: Option<Vec<String>>,
    pub reload: Vec<String>,
}

impl ReloadCommands {
    pub fn for_service(service: &Service) -> Self {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let test = match service {
            Service::Nginx => Some(v(&["nginx", "-t"])),
            Service::Apache2 => Some(v(&["apache2ctl", "configtest"])),
            Service::Haproxy => Some(v(&["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"])),
            Service::Postfix => Some(v(&["postfix", "check"])),
            Service::Dovecot => Some(v(&["doveconf", "-n"])),
            Service::Unit(_) => None,
        };
        Self {
            service: service.unit().to_string(),
            config_test: test,
            reload: v(&["systemctl", "reload", service.unit()]),
        }
    }
}

/// What a successful reload ran.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub test: Option<HookResult>,
    pub reload: HookResult,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "{service} configuration test `{}` failed, so {service} was NOT reloaded and keeps serving the \
         previous certificate; fix the configuration, then run `{}`. Test output:\n{}",
        .test.command, .reload_command, .test.output()
    )]
    ConfigBroken {
        service: String,
        reload_command: String,
        test: HookResult,
    },
    #[error("reloading {service} failed: {reload}")]
    ReloadFailed { service: String, reload: HookResult },
}

/// Test the configuration, then reload only if it passed.
pub async fn deploy_reload(cmds: &ReloadCommands, timeout: Duration) -> Result<ReloadReport, ReloadError> {
    let test = match &cmds.config_test {
        Some(argv) => {
            let t = run_hook(
                HookKind::ConfigTest,
                &HookCommand::Argv(argv.clone()),
                &[],
                timeout,
            )
            .await;
            if !t.success() {
                return Err(ReloadError::ConfigBroken {
                    service: cmds.service.clone(),
                    reload_command: cmds.reload.join(" "),
                    test: t,
                });
            }
            Some(t)
        }
        None => None,
    };
    let reload = run_hook(
        HookKind::Reload,
        &HookCommand::Argv(cmds.reload.clone()),
        &[],
        timeout,
    )
    .await;
    if !reload.success() {
        return Err(ReloadError::ReloadFailed {
            service: cmds.service.clone(),
            reload,
        });
    }
    Ok(ReloadReport { test, reload })
}
