//! Taking over certbot hosts: lineages made by the real certbot with `--nginx`, `--apache` and
//! `--manual` http-01 hooks, renewed by certfleet and then by certbot again, against real
//! Pebble, nginx and Apache on loopback. Each time the server must serve the new certificate
//! (TLS handshake) and every file under the server root must be byte-identical afterwards.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certfleet_testkit::nginx::fetch_leaf;
use certfleet_testkit::webserver::{Sites, snapshot, wait_for_leaf};
use certfleet_testkit::{Certbot, Pebble, free_port, pem_certs};
use common::{Env, stderr};

/// Pebble validating http-01 on `http_port`, every order validated afresh (no reused
/// authorizations: each renewal must really go through the server). No rejected nonces:
/// certbot 2.1 fails with "AttributeError: can't set attribute" retrying a badNonce on a
/// certificate download, which is certbot's bug, not what these tests are about.
fn pebble(http_port: u16) -> Pebble {
    Pebble::builder()
        .http_port(http_port)
        .env("PEBBLE_AUTHZREUSE", "0")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .start()
        .unwrap()
}

fn leaf_of(live: &Path) -> Vec<u8> {
    let pem = std::fs::read(live.join("cert.pem")).unwrap();
    pem_certs(&pem).unwrap().remove(0)
}

/// certbot sharing certfleet's config/work/logs dirs, talking to the same Pebble.
fn certbot(env: &Env) -> Certbot {
    Certbot::with_dirs(
        env.config_dir(),
        env.tmp.path().join("work"),
        env.tmp.path().join("logs"),
    )
    .server(env.pebble.directory_url())
    .ca_bundle(env.pebble.ca_bundle_path())
}

fn conf_text(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.config_dir().join("renewal").join(format!("{name}.conf"))).unwrap()
}

/// After a renewal of a.example.test: a new certificate, valid, served on `https`, and the
/// server's configuration byte-identical to `before`. Returns the new leaf.
fn renewed_and_served(
    env: &Env,
    server: &Sites,
    https: u16,
    first: &[u8],
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
) -> Vec<u8> {
    let ours = leaf_of(&env.live("a.example.test"));
    assert_ne!(ours, first);
    wait_for_leaf(https, "a.example.test", &ours).unwrap_or_else(|e| panic!("{e}\n{}", server.error_log()));
    assert_eq!(
        &snapshot(server.server_root()),
        before,
        "the server's configuration changed"
    );
    env.verify_lineage("a.example.test", &["a.example.test"]);
    ours
}

fn leaf_at(port: u16, sni: &str) -> Vec<u8> {
    fetch_leaf(([127, 0, 0, 1], port).into(), sni).unwrap()
}

/// `certbot run --nginx` issues and installs; certfleet renews through nginx (the site's
/// block also redirects to https, which the challenge must get past), nginx serves the new
/// certificate, the configuration is byte-identical, certbot renews it again after us, and
/// `renew --http-01-port` overrides a wrong port in the conf.
#[test]
fn certbot_nginx_lineage_renews_with_certfleet_and_back() {
    let http = free_port();
    let https = free_port();
    let site_a = format!(
        "server {{\n    listen 127.0.0.1:{http};\n    server_name a.example.test;\n    root /nonexistent;\n}}\n"
    );
    // Another site on the same port: must not be touched or served the challenge.
    let site_z = format!(
        "server {{\n    listen 127.0.0.1:{http};\n    server_name z.example.test;\n    return 404;\n}}\n"
    );
    let nginx = Sites::nginx(&[("a.conf", site_a), ("z.conf", site_z)], &[http]).unwrap();
    let root = nginx.server_root().display().to_string();
    let env = Env::new(pebble(http));
    let certbot = certbot(&env);
    let (hp, sp) = (http.to_string(), https.to_string());
    certbot
        .run_ok(&[
            "run",
            "--nginx",
            "--nginx-server-root",
            &root,
            "--nginx-ctl",
            "nginx",
            "--http-01-port",
            &hp,
            "--https-port",
            &sp,
            "-d",
            "a.example.test",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .unwrap();
    let conf = conf_text(&env, "a.example.test");
    assert!(
        conf.contains("authenticator = nginx") && conf.contains("installer = nginx"),
        "{conf}"
    );
    // What certbot's installer left is now the user's configuration; add certbot's
    // https redirect (as `--redirect` writes it for a shared block).
    let site = nginx.server_root().join("sites/a.conf");
    let text = std::fs::read_to_string(&site).unwrap().replacen(
        "    root /nonexistent;\n",
        "    root /nonexistent;\n    if ($scheme != \"https\") {\n        return 301 https://$host$request_uri;\n    } # managed by Certbot\n",
        1,
    );
    std::fs::write(&site, text).unwrap();
    nginx.reload().unwrap();
    let live = env.live("a.example.test");
    wait_for_leaf(https, "a.example.test", &leaf_of(&live)).unwrap();
    let before = snapshot(nginx.server_root());
    let first = leaf_of(&live);

    // certfleet renews through nginx and reloads it.
    let out = env.run_ok(&["renew", "--cert-name", "a.example.test", "--force-renewal"]);
    assert!(
        stderr(&out).contains("renewed a.example.test"),
        "{}",
        stderr(&out)
    );
    let ours = renewed_and_served(&env, &nginx, https, &first, &before);
    let conf = conf_text(&env, "a.example.test");
    for line in [
        "authenticator = nginx",
        "installer = nginx",
        "version = 2.1.0",
        &format!("http01_port = {http}"),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
    // The challenge went through nginx, and nothing of it is left behind.
    let ours_dir = env.tmp.path().join("work/certfleet-http01");
    for d in ours_dir.read_dir().unwrap() {
        let left: Vec<_> = d.unwrap().path().read_dir().unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    // certbot renews what certfleet renewed, with its own nginx plugin.
    certbot
        .run_ok(&["renew", "--cert-name", "a.example.test", "--force-renewal"])
        .unwrap();
    let theirs = leaf_of(&live);
    assert_ne!(theirs, ours);
    wait_for_leaf(https, "a.example.test", &theirs).unwrap();
    assert_eq!(snapshot(nginx.server_root()), before);
    assert_eq!(leaf_at(https, "a.example.test"), theirs);

    // The conf names a port nginx does not use for this site: `renew --http-01-port` fixes
    // this run and, as certbot does, the saved conf.
    let path = env.config_dir().join("renewal/a.example.test.conf");
    let wrong = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("http01_port = {http}"), "http01_port = 1");
    std::fs::write(&path, wrong).unwrap();
    env.run_ok(&[
        "renew",
        "--cert-name",
        "a.example.test",
        "--force-renewal",
        "--http-01-port",
        &hp,
    ]);
    assert!(conf_text(&env, "a.example.test").contains(&format!("http01_port = {http}\n")));
    wait_for_leaf(https, "a.example.test", &leaf_of(&live)).unwrap();
    assert_eq!(snapshot(nginx.server_root()), before);
}

/// `certfleet certonly --nginx` for a new certificate: recorded as certbot would, the
/// configuration byte-identical afterwards, and the lineage renews the same way.
#[test]
fn certonly_nginx_new_certificate() {
    let http = free_port();
    let site = format!(
        "server {{\n    listen 127.0.0.1:{http} default_server;\n    server_name c.example.test;\n    location / {{ return 404; }}\n}}\n"
    );
    let nginx = Sites::nginx(&[("c.conf", site)], &[http]).unwrap();
    let root = nginx.server_root().display().to_string();
    let env = Env::new(pebble(http));
    let before = snapshot(nginx.server_root());
    let hp = http.to_string();
    // d.example.test has no server block: nginx's default server for the port answers it.
    env.run_ok(&[
        "certonly",
        "--nginx",
        "--nginx-server-root",
        &root,
        "--http-01-port",
        &hp,
        "-d",
        "c.example.test",
        "-d",
        "d.example.test",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    assert_eq!(snapshot(nginx.server_root()), before);
    env.verify_lineage("c.example.test", &["c.example.test", "d.example.test"]);
    let conf = conf_text(&env, "c.example.test");
    for line in [
        "authenticator = nginx",
        "installer = nginx",
        &format!("nginx_server_root = {root}"),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
    env.run_ok(&["renew", "--force-renewal"]);
    assert_eq!(snapshot(nginx.server_root()), before);
}

/// A lineage certbot made with `--manual --preferred-challenges http` and hooks renews with
/// certfleet, which gives the hooks certbot's variables.
#[test]
fn certbot_manual_http_hooks_lineage_renews() {
    let nginx = certfleet_testkit::Nginx::start().unwrap();
    let env = Env::new(pebble(nginx.http_port()));
    let dir = env.tmp.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let webroot = nginx.webroot().join(".well-known/acme-challenge");
    let auth = dir.join("auth.sh");
    let cleanup = dir.join("cleanup.sh");
    std::fs::write(
        &auth,
        format!(
            "#!/bin/sh\nmkdir -p {w}\nprintf %s \"$CERTBOT_VALIDATION\" > {w}/$CERTBOT_TOKEN\n\
             echo \"auth $CERTBOT_DOMAIN $CERTBOT_REMAINING_CHALLENGES $CERTBOT_ALL_DOMAINS\" >> {l}\necho made-$CERTBOT_TOKEN\n",
            w = webroot.display(),
            l = log.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &cleanup,
        format!(
            "#!/bin/sh\nrm -f {w}/$CERTBOT_TOKEN\necho \"cleanup $CERTBOT_DOMAIN $CERTBOT_AUTH_OUTPUT\" >> {l}\n",
            w = webroot.display(),
            l = log.display()
        ),
    )
    .unwrap();
    for f in [&auth, &cleanup] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (a, c) = (auth.display().to_string(), cleanup.display().to_string());
    certbot(&env)
        .run_ok(&[
            "certonly",
            "--manual",
            "--preferred-challenges",
            "http",
            "--manual-auth-hook",
            &a,
            "--manual-cleanup-hook",
            &c,
            "-d",
            "m.example.test",
            "-d",
            "n.example.test",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .unwrap();
    std::fs::remove_file(&log).unwrap();
    let first = leaf_of(&env.live("m.example.test"));
    env.run_ok(&["renew", "--force-renewal"]);
    assert_ne!(leaf_of(&env.live("m.example.test")), first);
    env.verify_lineage("m.example.test", &["m.example.test", "n.example.test"]);
    // One auth and one cleanup run per pending authorization (the CA may still hold a valid
    // one for a name), in order, with certbot's variables.
    let text = std::fs::read_to_string(&log).unwrap();
    let auth: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("auth "))
        .map(|l| l.split(' ').collect())
        .collect();
    let cleanup: Vec<&str> = text.lines().filter(|l| l.starts_with("cleanup ")).collect();
    assert!(!auth.is_empty() && auth.len() == cleanup.len(), "{text}");
    let batch: Vec<&str> = auth.iter().map(|a| a[1]).collect();
    for (i, a) in auth.iter().enumerate() {
        assert!(["m.example.test", "n.example.test"].contains(&a[1]), "{text}");
        assert_eq!(a[2], (auth.len() - i - 1).to_string(), "{text}");
        assert_eq!(a[3], batch.join(","), "{text}");
        assert!(
            cleanup[i].starts_with(&format!("cleanup {} made-", a[1])),
            "{text}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&webroot).unwrap().count(),
        0,
        "cleanup left files"
    );
    // certbot renews it back.
    certbot(&env)
        .run_ok(&["renew", "--cert-name", "m.example.test", "--force-renewal"])
        .unwrap();
}

/// `certbot certonly --apache` issues; the site then serves it over TLS (the user's SSL vhost,
/// pointing at live/); certfleet renews through Apache and gracefully reloads it; certbot
/// renews again; the configuration is byte-identical throughout.
#[test]
fn certbot_apache_lineage_renews_with_certfleet_and_back() {
    let http = free_port();
    let https = free_port();
    let env = Env::new(pebble(http));
    // Apache's workers (www-data) read certfleet's response files under the work dir.
    std::fs::set_permissions(env.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let site = format!(
        "<VirtualHost 127.0.0.1:{http}>\n    ServerName a.example.test\n    DocumentRoot /nonexistent\n\
         \x20   RewriteEngine on\n    RewriteRule ^ https://a.example.test/ [R=301,L]\n</VirtualHost>\n"
    );
    let apache = Sites::apache(&[http, https], &[("a.conf", site)]).unwrap();
    let root = apache.server_root().display().to_string();
    let ctl = apache.ctl().display().to_string();
    let certbot = certbot(&env);
    let hp = http.to_string();
    // certbot's challenge snippets go to /etc/apache2 by default, shared by parallel tests.
    let snippets = apache.scratch().display().to_string();
    certbot
        .run_ok(&[
            "--apache-challenge-location",
            &snippets,
            "certonly",
            "--apache",
            "--apache-server-root",
            &root,
            "--apache-ctl",
            &ctl,
            "--apache-handle-modules",
            "False",
            "--apache-handle-sites",
            "False",
            "--http-01-port",
            &hp,
            "-d",
            "a.example.test",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .unwrap_or_else(|e| panic!("{e}\n{}", apache.error_log()));
    let conf = conf_text(&env, "a.example.test");
    assert!(
        conf.contains("authenticator = apache") && conf.contains("installer = apache"),
        "{conf}"
    );
    let live = env.live("a.example.test");
    let ssl = format!(
        "<VirtualHost 127.0.0.1:{https}>\n    ServerName a.example.test\n    SSLEngine on\n\
         \x20   SSLCertificateFile {0}/fullchain.pem\n    SSLCertificateKeyFile {0}/privkey.pem\n</VirtualHost>\n",
        live.display()
    );
    std::fs::write(apache.server_root().join("sites/a-ssl.conf"), ssl).unwrap();
    apache.reload().unwrap();
    wait_for_leaf(https, "a.example.test", &leaf_of(&live)).unwrap();
    let before = snapshot(apache.server_root());
    let first = leaf_of(&live);

    let out = env.run(&["renew", "--cert-name", "a.example.test", "--force-renewal"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), apache.error_log());
    let ours = renewed_and_served(&env, &apache, https, &first, &before);

    certbot
        .run_ok(&["renew", "--cert-name", "a.example.test", "--force-renewal"])
        .unwrap();
    let theirs = leaf_of(&live);
    assert_ne!(theirs, ours);
    // certbot's installer reloads Apache itself.
    wait_for_leaf(https, "a.example.test", &theirs).unwrap();
    assert_eq!(snapshot(apache.server_root()), before);
}

/// The temporary configuration goes away when validation fails and when the run is
/// interrupted (Ctrl-C while it is in place); nginx keeps running a valid configuration.
#[test]
fn nginx_challenge_removed_on_failure_and_ctrl_c() {
    let http = free_port();
    let env = Env::new(pebble(http));
    // A standalone lineage first, then nginx takes the port: `renew --nginx` switches it.
    let out = env.certonly_standalone(&["f.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // nginx answers on 127.0.0.2 only, where the CA (127.0.0.1) does not look: validation fails.
    let site = format!("server {{\n    listen 127.0.0.2:{http};\n    server_name f.example.test;\n}}\n");
    let nginx = Sites::nginx(&[("f.conf", site)], &[]).unwrap();
    let root = nginx.server_root().display().to_string();
    let before = snapshot(nginx.server_root());
    let renew = [
        "renew",
        "--force-renewal",
        "--nginx",
        "--nginx-server-root",
        &root,
    ];

    let out = env.run(&renew);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("f.example.test"), "{}", stderr(&out));
    assert_eq!(snapshot(nginx.server_root()), before);

    // Ctrl-C while the include is in place: an nginx_ctl whose reload is slow keeps it there.
    let slow = env.tmp.path().join("slow-nginx");
    std::fs::write(
        &slow,
        "#!/bin/sh
case \"$*\" in *reload*) sleep 3;; esac\nexec nginx \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let slow = slow.display().to_string();
    let renew = [&renew[..], &["--nginx-ctl", &slow]].concat();
    let child = env
        .cmd(&renew)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let own = env.tmp.path().join("work/certfleet-http01");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let journal = loop {
        let found = own
            .read_dir()
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join("journal.json"))
            .find(|j| j.exists());
        if let Some(j) = found {
            break j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the challenge configuration never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_ne!(
        snapshot(nginx.server_root()),
        before,
        "the include should be in place now"
    );
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted"), "{err}");
    assert!(!journal.exists());
    assert_eq!(snapshot(nginx.server_root()), before);
    let test = std::process::Command::new("nginx")
        .args(["-c", &format!("{root}/nginx.conf"), "-t"])
        .output()
        .unwrap();
    assert!(test.status.success());
}

/// `renew --server` at a CA where the lineage's account does not exist registers one there
/// with the lineage's contact (as certbot does), renews, and records the new server and
/// account; the conf keeps the `version` line certbot wrote.
#[test]
fn renew_at_a_new_server_registers_with_the_lineages_contact() {
    let a = pebble(free_port());
    let b = Pebble::builder()
        .http_port(a.http_port())
        .env("PEBBLE_AUTHZREUSE", "0")
        .start()
        .unwrap();
    let env = Env::new(a);
    let out = env.certonly_standalone(&["s.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Trust both CAs' HTTPS; pretend a newer certbot wrote the conf.
    let bundle = env.tmp.path().join("both.pem");
    let mut pem = std::fs::read(env.pebble.ca_bundle_path()).unwrap();
    pem.extend(std::fs::read(b.ca_bundle_path()).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let path = env.config_dir().join("renewal/s.example.test.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let old_account = text
        .lines()
        .find(|l| l.starts_with("account = "))
        .unwrap()
        .to_string();
    let text = text
        .replace("version = 2.1.0", "version = 5.8.0")
        .lines()
        .map(|l| {
            if l.starts_with("ca_bundle = ") {
                format!("ca_bundle = {}", bundle.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text + "\n").unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certfleet"))
        .args([
            "renew",
            "--force-renewal",
            "--agree-tos",
            "--server",
            &b.directory_url(),
        ])
        .arg("--config-dir")
        .arg(env.config_dir())
        .arg("--work-dir")
        .arg(env.tmp.path().join("work"))
        .env("CERTFLEET_CA_BUNDLE", &bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = conf_text(&env, "s.example.test");
    assert!(
        conf.contains(&format!("server = {}\n", b.directory_url())),
        "{conf}"
    );
    assert!(!conf.contains(&format!("{old_account}\n")), "{conf}");
    assert!(conf.contains("version = 5.8.0\n"), "{conf}");
    // The new account at B has the lineage's contact.
    let host = url_host(&b.directory_url());
    let accounts = env.config_dir().join("accounts").join(host);
    let regr = walk_find(&accounts, "regr.json").expect("an account saved for the new server");
    let regr = std::fs::read_to_string(regr).unwrap();
    assert!(regr.contains("mailto:admin@example.test"), "{regr}");
    let fullchain = std::fs::read(env.live("s.example.test").join("fullchain.pem")).unwrap();
    b.verify_chain(&fullchain, &["s.example.test"], std::time::SystemTime::now())
        .unwrap();
}

fn url_host(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn walk_find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = walk_find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// `certfleet certonly --apache` for a new certificate (plain vhost on the http-01 port and
/// a TLS one for the same name): recorded as certbot would, configuration byte-identical.
#[test]
fn certonly_apache_new_certificate() {
    let http = free_port();
    let https = free_port();
    let env = Env::new(pebble(http));
    std::fs::set_permissions(env.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let site = format!(
        "<VirtualHost 127.0.0.1:{http}>\n    ServerName e.example.test\n    ServerAlias www.e.example.test\n\
         \x20   Redirect permanent / https://e.example.test/\n</VirtualHost>\n"
    );
    let apache = Sites::apache(&[http, https], &[("e.conf", site)]).unwrap();
    let before = snapshot(apache.server_root());
    let root = apache.server_root().display().to_string();
    let ctl = apache.ctl().display().to_string();
    let hp = http.to_string();
    let out = env.run(&[
        "certonly",
        "--apache",
        "--apache-server-root",
        &root,
        "--apache-ctl",
        &ctl,
        "--http-01-port",
        &hp,
        "-d",
        "e.example.test",
        "-d",
        "www.e.example.test",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), apache.error_log());
    assert_eq!(snapshot(apache.server_root()), before);
    env.verify_lineage("e.example.test", &["e.example.test", "www.e.example.test"]);
    let conf = conf_text(&env, "e.example.test");
    for line in [
        "authenticator = apache",
        "installer = apache",
        &format!("apache_ctl = {ctl}"),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
}
