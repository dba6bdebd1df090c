//! The http-01 authenticators certbot users have beyond webroot and standalone: `nginx` and
//! `apache` (which are installers too: after issuance the server is tested and reloaded so
//! it serves the new certificate its configuration points at under `live/`), and `manual`
//! with hooks for http-01.
//!
//! Renewal conf keys, as certbot writes them: `authenticator = nginx`, `installer = nginx`,
//! `nginx_server_root`, `nginx_ctl`; `authenticator = apache`, `installer = apache`,
//! `apache_server_root`, `apache_ctl`; `authenticator = manual`, `manual_auth_hook`,
//! `manual_cleanup_hook`, `pref_challs = http-01,`; and `http01_port` for all of them.

use certfleet_core::Identifier;
use certfleet_renew::ReloadCommands;
use certfleet_solvers::webserver::apache::ApacheOptions;
use certfleet_solvers::webserver::nginx::NginxOptions;
use certfleet_store::RenewalConf;

use super::AuthSpec;
use crate::EngineError;

/// `http01_port` of the conf (certbot: 80 when absent, and for a legacy `None`).
pub fn http01_port(conf: &RenewalConf) -> Result<u16, EngineError> {
    match conf
        .param_str("http01_port")
        .filter(|p| !p.is_empty() && *p != "None")
    {
        Some(p) => p
            .trim()
            .parse()
            .map_err(|_| EngineError::config(format!("http01_port {p:?} in the renewal conf is not a port"))),
        None => Ok(80),
    }
}

/// A plugin setting of the conf, else certbot's default.
fn setting(conf: &RenewalConf, key: &str, default: String) -> String {
    conf.param_str(key)
        .filter(|s| !s.is_empty())
        .map_or(default, str::to_string)
}

pub fn nginx_options(conf: &RenewalConf) -> Result<NginxOptions, EngineError> {
    let d = NginxOptions::default();
    Ok(NginxOptions {
        server_root: setting(conf, "nginx_server_root", d.server_root.display().to_string()).into(),
        ctl: setting(conf, "nginx_ctl", d.ctl),
        http01_port: http01_port(conf)?,
    })
}

pub fn apache_options(conf: &RenewalConf) -> Result<ApacheOptions, EngineError> {
    let d = ApacheOptions::default();
    Ok(ApacheOptions {
        server_root: setting(conf, "apache_server_root", d.server_root.display().to_string()).into(),
        ctl: setting(conf, "apache_ctl", d.ctl),
        http01_port: http01_port(conf)?,
    })
}

/// Which challenge certbot's manual plugin answers: the first of the preferences it can do;
/// without one, http-01 unless a name is a wildcard.
pub fn manual_challenge(prefs: &[&str], ids: &[Identifier]) -> &'static str {
    match prefs.iter().find(|p| **p == "http-01" || **p == "dns-01") {
        Some(&"http-01") => "http-01",
        Some(_) => "dns-01",
        None if ids.iter().any(Identifier::is_wildcard) => "dns-01",
        None => "http-01",
    }
}

/// The manual http-01 spec from the conf's hooks (certbot's interactive mode, without an
/// auth hook, needs a person and a terminal: refused with what to do instead).
pub fn manual_http_from_conf(conf: &RenewalConf) -> Result<AuthSpec, EngineError> {
    match conf.manual_auth_hook().filter(|h| !h.is_empty()) {
        Some(auth) => Ok(AuthSpec::ManualHttp {
            auth_hook: auth.to_string(),
            cleanup_hook: conf
                .manual_cleanup_hook()
                .filter(|h| !h.is_empty())
                .map(str::to_string),
        }),
        None => Err(manual_http_needs_hook()),
    }
}

pub fn manual_http_needs_hook() -> EngineError {
    EngineError::config(
        "manual http-01 without --manual-auth-hook means placing files by hand, which certfleet does not \
         do: give --manual-auth-hook CMD (it gets CERTBOT_TOKEN and CERTBOT_VALIDATION), or use --webroot, \
         --nginx or --apache",
    )
}

/// Write certbot's keys for these authenticators.
pub(super) fn record(spec: &AuthSpec, conf: &mut RenewalConf) {
    let port = match spec {
        AuthSpec::Nginx(o) => {
            conf.set_param("authenticator", "nginx");
            conf.set_param("installer", "nginx");
            conf.set_param("nginx_server_root", o.server_root.display().to_string());
            conf.set_param("nginx_ctl", o.ctl.clone());
            o.http01_port
        }
        AuthSpec::Apache(o) => {
            conf.set_param("authenticator", "apache");
            conf.set_param("installer", "apache");
            conf.set_param("apache_server_root", o.server_root.display().to_string());
            conf.set_param("apache_ctl", o.ctl.clone());
            o.http01_port
        }
        AuthSpec::ManualHttp {
            auth_hook,
            cleanup_hook,
        } => {
            conf.set_param("authenticator", "manual");
            conf.set_param("manual_auth_hook", auth_hook.clone());
            match cleanup_hook {
                Some(c) => conf.set_param("manual_cleanup_hook", c.clone()),
                None => {
                    conf.remove_param("manual_cleanup_hook");
                }
            }
            conf.set_param("pref_challs", vec!["http-01".to_string()]);
            return;
        }
        _ => return,
    };
    if port == 80 {
        conf.remove_param("http01_port");
    } else {
        conf.set_param("http01_port", port.to_string());
    }
}

/// certbot's installer step after a certificate was saved: test the server's configuration
/// and reload it, so it serves the new files. `None` without an nginx/apache installer.
pub fn installer_reload(conf: &RenewalConf) -> Result<Option<ReloadCommands>, EngineError> {
    let (service, test, reload) = match conf.installer() {
        Some("nginx") => {
            let o = nginx_options(conf)?;
            (
                format!("nginx ({})", o.conf_file().display()),
                o.test_command(),
                o.reload_command(),
            )
        }
        Some("apache") => {
            let o = apache_options(conf)?;
            (
                format!("apache ({})", o.server_root.display()),
                o.test_command(),
                o.reload_command(),
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(ReloadCommands {
        service,
        config_test: Some(test),
        reload,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
    }

    /// What `certbot --nginx` writes is read, recorded back the same way, and reloads nginx.
    #[test]
    fn certbot_nginx_conf_round_trips() {
        let text = "version = 2.1.0\n[renewalparams]\naccount = a\nhttp01_port = 18080\nserver = https://x/dir\n\
                    authenticator = nginx\ninstaller = nginx\nnginx_server_root = /srv/ngx\nnginx_ctl = /usr/sbin/nginx\n";
        let conf = RenewalConf::parse(text, Path::new("x.conf")).unwrap();
        let spec = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap();
        let AuthSpec::Nginx(o) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(o.server_root, PathBuf::from("/srv/ngx"));
        assert_eq!(o.http01_port, 18080);
        let mut back = RenewalConf::default();
        spec.record(&mut back);
        assert_eq!(
            AuthSpec::from_conf(&back, &ids(&["a.example.test"])).unwrap(),
            spec
        );
        let r = installer_reload(&conf).unwrap().unwrap();
        assert_eq!(
            r.reload,
            ["/usr/sbin/nginx", "-c", "/srv/ngx/nginx.conf", "-s", "reload"]
        );
        assert_eq!(
            r.config_test.unwrap(),
            ["/usr/sbin/nginx", "-c", "/srv/ngx/nginx.conf", "-t"]
        );

        let apache = "[renewalparams]\nauthenticator = apache\ninstaller = apache\n";
        let conf = RenewalConf::parse(apache, Path::new("x.conf")).unwrap();
        let AuthSpec::Apache(o) = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap() else {
            panic!()
        };
        assert_eq!(o, ApacheOptions::default());
        assert_eq!(
            installer_reload(&conf).unwrap().unwrap().reload,
            ["apache2ctl", "graceful"]
        );
    }

    /// certbot's `--manual --preferred-challenges http` lineage with hooks.
    #[test]
    fn manual_http_with_hooks() {
        let text = "[renewalparams]\nauthenticator = manual\nmanual_auth_hook = /a.sh\n\
                    manual_cleanup_hook = /c.sh\npref_challs = http-01,\n";
        let conf = RenewalConf::parse(text, Path::new("x.conf")).unwrap();
        let spec = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap();
        assert_eq!(
            spec,
            AuthSpec::ManualHttp {
                auth_hook: "/a.sh".into(),
                cleanup_hook: Some("/c.sh".into())
            }
        );
        // No preference: http-01 for plain names (certbot's default), dns-01 for wildcards.
        let text = "[renewalparams]\nauthenticator = manual\nmanual_auth_hook = /a.sh\n";
        let conf = RenewalConf::parse(text, Path::new("x.conf")).unwrap();
        assert!(matches!(
            AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap(),
            AuthSpec::ManualHttp { .. }
        ));
        assert!(matches!(
            AuthSpec::from_conf(&conf, &ids(&["*.example.test"])).unwrap(),
            AuthSpec::Dns(_)
        ));
        let text = "[renewalparams]\nauthenticator = manual\npref_challs = http-01,\n";
        let conf = RenewalConf::parse(text, Path::new("x.conf")).unwrap();
        let e = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap_err();
        assert!(e.to_string().contains("--manual-auth-hook"), "{e}");
    }
}
