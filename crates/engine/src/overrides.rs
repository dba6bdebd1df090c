//! Renewal settings given on `renew`'s command line (certbot's `renew --http-01-port 8080`,
//! `--webroot -w DIR`, `--key-type rsa`, `--nginx-server-root DIR`, ...): they replace the
//! lineage's `[renewalparams]` values for this run, and a successful renewal writes the
//! renewal conf with them, as certbot does (certbot saves the values a renewal used).
//!
//! certbot's rule for plugin settings (`nginx_*`, `apache_*`, `manual_*`, `dns_<name>_*`,
//! `webroot_*`): a lineage takes them only when its authenticator or installer (after the
//! overrides) is that plugin, so `renew --nginx-ctl X` leaves webroot lineages alone.

use certfleet_store::RenewalConf;
use certfleet_store::renewal_conf::Value;

/// `[renewalparams]` keys to set (`Some`) or remove (`None`), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfOverrides {
    pub params: Vec<(String, Option<Value>)>,
    /// certbot's `--new-key`: a fresh key this once, even with `reuse_key = True`.
    pub new_key: bool,
    /// `--webroot-map`: the `[[webroot_map]]` of webroot lineages.
    pub webroot_map: Option<Vec<(String, String)>>,
}

const PLUGIN_PREFIXES: &[&str] = &["nginx_", "apache_", "manual_", "dns_", "webroot_"];

impl ConfOverrides {
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && !self.new_key && self.webroot_map.is_none()
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.params.push((key.to_string(), Some(value.into())));
    }

    pub fn remove(&mut self, key: &str) {
        self.params.push((key.to_string(), None));
    }

    /// Apply to one lineage's conf.
    pub fn apply(&self, conf: &mut RenewalConf) {
        let plugin_key = |k: &str| PLUGIN_PREFIXES.iter().any(|p| k.starts_with(p));
        // Authenticator and installer first: they decide which plugin settings apply.
        for (k, v) in self.params.iter().filter(|(k, _)| !plugin_key(k)) {
            set(conf, k, v);
        }
        let owners: Vec<String> = [conf.authenticator(), conf.installer()]
            .into_iter()
            .flatten()
            .map(|p| format!("{}_", p.replace('-', "_")))
            .collect();
        if let Some(map) = &self.webroot_map
            && conf.authenticator() == Some("webroot")
        {
            conf.set_webroot_map(map);
        }
        for (k, v) in self.params.iter().filter(|(k, _)| plugin_key(k)) {
            if owners.iter().any(|o| k.starts_with(o.as_str())) {
                set(conf, k, v);
            } else {
                tracing::debug!(
                    "{k}: not a setting of this lineage's authenticator or installer; ignored for it"
                );
            }
        }
    }
}

fn set(conf: &mut RenewalConf, key: &str, v: &Option<Value>) {
    match v {
        Some(v) => conf.set_param(key, v.clone()),
        // The one subsection of `[renewalparams]`.
        None if key == "webroot_map" => {
            conf.params_mut().remove_section(key);
        }
        None => {
            conf.remove_param(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn plugin_settings_go_to_their_plugin_only() {
        let mut o = ConfOverrides::default();
        o.set("http01_port", "8080");
        o.set("nginx_ctl", "/opt/nginx");
        o.set("webroot_path", vec!["/new".to_string()]);
        o.remove("webroot_map");
        let parse = |t: &str| RenewalConf::parse(t, Path::new("x.conf")).unwrap();

        let mut ngx = parse("[renewalparams]\nauthenticator = nginx\ninstaller = nginx\n");
        o.apply(&mut ngx);
        assert_eq!(ngx.param_str("http01_port"), Some("8080"));
        assert_eq!(ngx.param_str("nginx_ctl"), Some("/opt/nginx"));
        assert_eq!(ngx.param_str("webroot_path"), None);

        let mut web = parse(
            "[renewalparams]\nauthenticator = webroot\nwebroot_path = /old,\n[[webroot_map]]\na = /old\n",
        );
        o.apply(&mut web);
        assert_eq!(web.webroot_path(), vec!["/new"]);
        assert!(web.webroot_map().is_empty());
        assert_eq!(web.param_str("nginx_ctl"), None);

        // Switching the authenticator brings its settings along.
        let mut o2 = o.clone();
        o2.params
            .insert(0, ("authenticator".into(), Some("nginx".into())));
        let mut was_web = parse("[renewalparams]\nauthenticator = webroot\n");
        o2.apply(&mut was_web);
        assert_eq!(was_web.param_str("nginx_ctl"), Some("/opt/nginx"));
    }
}
