//! Writes the fuzz seed corpora (`fuzz/corpus/<target>/`) from real runs: Debian's certbot
//! against Pebble and acme2certifier (its certbot-written trees, and every ACME answer it logged),
//! BIND's answers (TSIG-signed too), files openssl and certfleet write. Run as root (acme2certifier
//! needs a network namespace; it is skipped with a warning otherwise):
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml -p certfleet-fuzz-capture -- fuzz/corpus
//! ```
//!
//! Inputs that carry a run's random parts (keys, URLs, nonces) differ on every run; commit a
//! fresh capture whole rather than mixing runs.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use base64::Engine;
use certfleet_testkit::bind::{Bind, BindOptions};
use certfleet_testkit::{Acme2Certifier, Certbot, Nginx, Pebble, pem_certs};
use time::{Duration, OffsetDateTime};

struct Seeds {
    root: PathBuf,
    count: usize,
    seen: std::collections::HashSet<(String, Vec<u8>)>,
}

impl Seeds {
    /// Write `data` as `<target>/<name>`, unless the target already has the same bytes.
    fn put(&mut self, target: &str, name: &str, data: &[u8]) -> Result<()> {
        if !self.seen.insert((target.to_string(), data.to_vec())) {
            return Ok(());
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), data).with_context(|| format!("writing {target}/{name}"))?;
        self.count += 1;
        Ok(())
    }

    fn copy(&mut self, target: &str, name: &str, from: &Path) -> Result<()> {
        let data = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        self.put(target, name, &data)
    }
}

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let mut seeds = Seeds {
        root,
        count: 0,
        seen: Default::default(),
    };
    pebble(&mut seeds).context("certbot against Pebble")?;
    match Acme2Certifier::start() {
        Ok(a2c) => acme2certifier(&mut seeds, &a2c).context("certbot against acme2certifier")?,
        Err(e) => eprintln!("warning: no acme2certifier seeds ({e:#})"),
    }
    for alg in ["hmac-sha256", "hmac-md5"] {
        dns(&mut seeds, alg).with_context(|| format!("BIND with {alg}"))?;
    }
    files(&mut seeds)?;
    println!("wrote {} seeds under {}", seeds.count, seeds.root.display());
    Ok(())
}

/// certbot 2.1 against Pebble: an ECDSA lineage, an RSA one with hooks and alternate chains, a
/// forced renewal, and a failed validation (a problem document).
fn pebble(seeds: &mut Seeds) -> Result<()> {
    let pebble = Pebble::builder()
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_ALTERNATE_ROOTS", "2")
        .start()?;
    let certbot = Certbot::for_pebble(&pebble)?;
    let port = pebble.http_port();
    certbot.certonly_standalone(
        &["a.example.test", "b.example.test"],
        port,
        &["--key-type", "ecdsa"],
    )?;
    certbot.certonly_standalone(
        &["rsa.example.test"],
        port,
        &[
            "--key-type",
            "rsa",
            "--rsa-key-size",
            "2048",
            "--preferred-chain",
            "Pebble Root CA",
            "--pre-hook",
            "echo \"pre hook\"",
            "--deploy-hook",
            "echo 'deployed, ok' # not a comment",
            "--elliptic-curve",
            "secp384r1",
        ],
    )?;
    certbot.run_ok(&["renew", "--force-renewal", "--cert-name", "a.example.test"])?;
    // Nobody answers http-01 on this port: Pebble answers with a problem document.
    let failed = certbot.run(&[
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        "1",
        "-d",
        "fail.example.test",
    ])?;
    if failed.status.success() {
        bail!("the failing certbot run succeeded");
    }
    certbot_tree(seeds, &certbot, "pebble")?;
    certbot_log(seeds, &certbot, "pebble")?;

    // A webroot lineage (webroot_path and [[webroot_map]] in its conf), served by nginx.
    let nginx = Nginx::start()?;
    let pebble = Pebble::builder()
        .http_port(nginx.http_port())
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .start()?;
    let certbot = Certbot::for_pebble(&pebble)?;
    let root = nginx.webroot().display().to_string();
    let mut args: Vec<&str> = "certonly --webroot -d web.example.test -d www.web.example.test \
                               --agree-tos --register-unsafely-without-email --post-hook true"
        .split_whitespace()
        .collect();
    args.extend(["-w", &root]);
    certbot.run_ok(&args)?;
    certbot_tree(seeds, &certbot, "pebble-webroot")
}

/// certbot against acme2certifier (in its network namespace), and its renewalInfo answer.
fn acme2certifier(seeds: &mut Seeds, a2c: &Acme2Certifier) -> Result<()> {
    let certbot = Certbot::for_acme2certifier(a2c)?;
    certbot.certonly_standalone(&["a2c.example.test"], 80, &["--key-type", "ecdsa"])?;
    certbot_tree(seeds, &certbot, "a2c")?;
    certbot_log(seeds, &certbot, "a2c")?;

    let (status, dir) = a2c.get(&a2c.directory_url())?;
    if status != 200 {
        bail!("acme2certifier directory: HTTP {status}");
    }
    let dir: serde_json::Value = serde_json::from_slice(&dir)?;
    let ari_base = dir["renewalInfo"]
        .as_str()
        .context("acme2certifier offers no renewalInfo")?;
    let pem = std::fs::read_to_string(certbot.live_dir("a2c.example.test").join("cert.pem"))?;
    let info = certfleet_core::CertInfo::from_pem(&pem)?;
    let id = certfleet_acme::cert_id(info.authority_key_id.as_deref().unwrap_or_default(), &info.serial);
    let (status, body) = a2c.get(&format!("{}/{id}", ari_base.trim_end_matches('/')))?;
    if status != 200 {
        bail!("acme2certifier renewalInfo: HTTP {status}");
    }
    seeds.put("acme_json", "a2c-renewal-info.json", &body)
}

/// A certbot config dir: renewal confs, certificates, keys and the account.
fn certbot_tree(seeds: &mut Seeds, certbot: &Certbot, tag: &str) -> Result<()> {
    let config = certbot.config_dir();
    for entry in std::fs::read_dir(config.join("renewal"))? {
        let path = entry?.path();
        let name = format!("{tag}-certbot-{}", file_name(&path));
        seeds.copy("renewal_conf", &name, &path)?;
        seeds.copy("renewal_conf_write", &name, &path)?;
    }
    for entry in std::fs::read_dir(config.join("live"))? {
        let live = entry?.path();
        if !live.is_dir() {
            continue;
        }
        let lineage = file_name(&live);
        for f in ["cert.pem", "chain.pem", "fullchain.pem"] {
            seeds.copy("cert", &format!("{tag}-{lineage}-{f}"), &live.join(f))?;
        }
        let leaf = pem_certs(&std::fs::read(live.join("cert.pem"))?)?;
        seeds.put("cert", &format!("{tag}-{lineage}-cert.der"), &leaf[0])?;
        seeds.copy(
            "private_key",
            &format!("{tag}-{lineage}-privkey.pem"),
            &live.join("privkey.pem"),
        )?;
        let key = pem::parse(std::fs::read(live.join("privkey.pem"))?)?;
        seeds.put(
            "private_key",
            &format!("{tag}-{lineage}-privkey.der"),
            key.contents(),
        )?;
    }
    for dir in walk(&config.join("accounts"))? {
        if !dir.join("private_key.json").is_file() {
            continue;
        }
        let mut data = std::fs::read(dir.join("private_key.json"))?;
        data.push(0);
        data.extend(std::fs::read(dir.join("regr.json"))?);
        data.push(0);
        data.extend(std::fs::read(dir.join("meta.json"))?);
        seeds.put("account_json", &format!("{tag}-certbot-account"), &data)?;
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

/// Every directory under `root`, depth first.
fn walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let mut subs: Vec<PathBuf> = std::fs::read_dir(&out[i])?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        out.extend(subs);
        i += 1;
    }
    Ok(out)
}

/// The ACME answers certbot logged (`Received response:`, status, headers, body): bodies to
/// `acme_json` (certificate chains to `cert`), `Retry-After` and `Link` values to `http_headers`.
fn certbot_log(seeds: &mut Seeds, certbot: &Certbot, tag: &str) -> Result<()> {
    // certbot rotates its log on every run: letsencrypt.log, .log.1, ...
    let mut log = String::new();
    for entry in std::fs::read_dir(certbot.logs_dir())? {
        log.push_str(&std::fs::read_to_string(entry?.path())?);
    }
    let mut n = 0;
    for entry in log_entries(&log) {
        let Some(reply) = entry.strip_prefix("Received response:\n") else {
            continue;
        };
        let (head, body) = reply.split_once("\n\n").unwrap_or((reply, ""));
        for header in head.lines().skip(1) {
            let Some((name, value)) = header.split_once(": ") else {
                continue;
            };
            if name.eq_ignore_ascii_case("retry-after") || name.eq_ignore_ascii_case("link") {
                let file = format!("{tag}-{}-{n:02}", name.to_ascii_lowercase());
                seeds.put("http_headers", &file, value.as_bytes())?;
            }
        }
        let body = body.trim_end_matches('\n');
        if body.starts_with('{') {
            seeds.put(
                "acme_json",
                &format!("{tag}-response-{n:02}.json"),
                body.as_bytes(),
            )?;
        } else if body.starts_with("-----BEGIN") {
            seeds.put("cert", &format!("{tag}-download-{n:02}.pem"), body.as_bytes())?;
        }
        n += 1;
    }
    if n == 0 {
        bail!("no `Received response` in certbot's log");
    }
    Ok(())
}

/// The messages of a certbot log: each starts `YYYY-MM-DD HH:MM:SS,mmm:LEVEL:logger:`.
fn log_entries(log: &str) -> Vec<String> {
    let starts_entry = |l: &str| {
        let b = l.as_bytes();
        b.len() > 24 && b[4] == b'-' && b[10] == b' ' && b[19] == b',' && b[23] == b':'
    };
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        if starts_entry(line) {
            // Drop the timestamp, level and logger.
            let msg = line.splitn(6, ':').nth(5).unwrap_or("");
            out.push(format!("{msg}\n"));
        } else if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

/// A request and its response, as relayed.
type Exchange = (Vec<u8>, Vec<u8>);

/// BIND's answers to dig and nsupdate, TSIG-signed and not, through a recording UDP relay. A
/// seed is the `dns_message` input: algorithm index, the time, the key's secret and the
/// request's MAC (each length-prefixed), then the response.
fn dns(seeds: &mut Seeds, algorithm: &str) -> Result<()> {
    let bind = Bind::start_with(BindOptions {
        zones: vec!["host1.example.test".into()],
        algorithm: algorithm.into(),
        ..BindOptions::default()
    })?;
    let relay = UdpSocket::bind("127.0.0.1:0")?;
    let relay_port = relay.local_addr()?.port();
    let upstream = bind.addr();
    let exchanges: Arc<Mutex<Vec<Exchange>>> = Arc::default();
    let log = exchanges.clone();
    relay.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let worker = std::thread::spawn(move || -> Result<()> {
        let up = UdpSocket::bind("127.0.0.1:0")?;
        up.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        let mut buf = vec![0u8; 65535];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, client)) = relay.recv_from(&mut buf) else {
                continue;
            };
            let request = buf[..n].to_vec();
            up.send_to(&request, upstream)?;
            let (m, _) = up.recv_from(&mut buf)?;
            relay.send_to(&buf[..m], client)?;
            log.lock().unwrap().push((request, buf[..m].to_vec()));
        }
        Ok(())
    });
    let key = bind.key_file();
    let port = relay_port.to_string();
    let dig = |args: &[&str]| {
        Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+notcp", "+tries=1", "+time=2"])
            .args(args)
            .output()
    };
    dig(&["example.test", "SOA"])?;
    dig(&["host1.example.test", "NS"])?;
    dig(&["ns1.example.test", "A"])?;
    dig(&["nothing.example.test", "TXT"])?;
    dig(&["-k", &key.display().to_string(), "host1.example.test", "SOA"])?;
    let script = format!(
        "server 127.0.0.1 {port}\nzone host1.example.test\n\
         update add _acme-challenge.host1.example.test. 60 IN TXT \"seed\"\nsend\n\
         update delete _acme-challenge.host1.example.test. TXT\nsend\n"
    );
    let mut nsupdate = Command::new("nsupdate")
        .arg("-k")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(nsupdate.stdin.as_mut().context("stdin")?, script.as_bytes())?;
    drop(nsupdate.stdin.take());
    nsupdate.wait()?;
    // A request signed with a key BIND does not know: a BADKEY answer.
    let wrong = bind.dir().join("wrong.key");
    std::fs::write(
        &wrong,
        format!("key \"wrong-key\" {{ algorithm {algorithm}; secret \"c2VjcmV0c2VjcmV0\"; }};\n"),
    )?;
    dig(&["-k", &wrong.display().to_string(), "host1.example.test", "SOA"])?;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().expect("relay thread")?;

    let alg_index: u8 = match algorithm {
        "hmac-md5" => 0,
        "hmac-sha256" => 3,
        other => bail!("no index for {other}"),
    };
    let secret = base64::engine::general_purpose::STANDARD.decode(bind.key_secret())?;
    let exchanges = exchanges.lock().unwrap();
    for (i, (request, response)) in exchanges.iter().enumerate() {
        let mac = hickory_proto::op::Message::from_vec(request)?
            .signature()
            .map(|s| s.data.mac.clone())
            .unwrap_or_default();
        let now = OffsetDateTime::now_utc().unix_timestamp() as u32;
        let mut data = vec![alg_index];
        data.extend(now.to_be_bytes());
        data.push(secret.len() as u8);
        data.extend(&secret);
        data.push(mac.len() as u8);
        data.extend(&mac);
        data.extend(response);
        seeds.put("dns_message", &format!("bind-{algorithm}-{i:02}"), &data)?;
    }
    if exchanges.len() < 5 {
        bail!("only {} DNS exchanges recorded", exchanges.len());
    }
    Ok(())
}

/// Files the other parsers read, as the programs that write them write them.
fn files(seeds: &mut Seeds) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    // cli.ini: Debian's, and the example of certbot's documentation.
    seeds.copy("cli_ini", "debian-cli.ini", Path::new("/etc/letsencrypt/cli.ini"))?;
    seeds.put(
        "cli_ini",
        "certbot-docs-cli.ini",
        b"# Because we are using logrotate for greater flexibility, disable the\n\
          # internal certbot logrotation.\nmax-log-backups = 0\nrsa-key-size = 4096\n\
          email = foo@example.com\ndomains = example.com, www.example.com\ntext = True\n\
          authenticator = webroot\nwebroot-path = /var/www/html\n",
    )?;
    // dns-rfc2136 credentials as the BIND harness writes them; dns-cloudflare's documented form.
    let bind = Bind::start(&["host1.example.test"])?;
    let ini = tmp.path().join("rfc2136.ini");
    bind.write_rfc2136_ini(&ini)?;
    seeds.copy("credentials_ini", "rfc2136.ini", &ini)?;
    seeds.put(
        "credentials_ini",
        "cloudflare.ini",
        b"# Cloudflare API token used by Certbot\ndns_cloudflare_api_token = 0123456789abcdef0123456789abcdef01234567\n",
    )?;
    // Keys in the other forms openssl writes: SEC1 and PKCS#1.
    for (name, args) in [
        (
            "openssl-sec1-p384.pem",
            &["ecparam", "-name", "secp384r1", "-genkey", "-noout"][..],
        ),
        (
            "openssl-pkcs1-rsa2048.pem",
            &["genrsa", "-traditional", "2048"][..],
        ),
    ] {
        let out = Command::new("openssl").args(args).output()?;
        if !out.status.success() {
            bail!("openssl {args:?} failed");
        }
        seeds.put("private_key", name, &out.stdout)?;
    }
    // An account as certfleet writes it (EC P-256 key).
    let store = certfleet_store::AccountStore::new(tmp.path().join("accounts"));
    let key = certfleet_core::PrivateKey::generate(certfleet_core::KeySpec::EcdsaP256)?;
    let acct = certfleet_store::Account::new(key, "https://ca.example/acct/1", OffsetDateTime::now_utc());
    let dir = store.save("https://ca.example/directory", &acct)?;
    let mut data = Vec::new();
    for f in ["private_key.json", "regr.json", "meta.json"] {
        if !data.is_empty() {
            data.push(0);
        }
        data.extend(std::fs::read(dir.join(f))?);
    }
    seeds.put("account_json", "certfleet-ec-account", &data)?;
    // Renewal state files as the renewer saves them: after failures, with an ARI window.
    let states = certfleet_renew::StateStore::open(tmp.path().join("state"))?;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let mut s = certfleet_renew::LineageState::new("example.com");
    s.record_failure(now, "http-01 for example.com: connection refused", None);
    s.record_failure(
        now,
        "rateLimited: too many certificates",
        Some(now + Duration::hours(3)),
    );
    let w = certfleet_renew::AriWindow::new(
        now + Duration::days(20),
        now + Duration::days(22),
        Some("https://ca.example/why".into()),
        now,
        Some(std::time::Duration::from_secs(21600)),
    );
    s.record_ari(now, &[1, 2, 3], w);
    states.save(&s)?;
    let mut ok = certfleet_renew::LineageState::new("ok.example.com");
    ok.record_success(now);
    states.save(&ok)?;
    for name in ["example.com", "ok.example.com"] {
        seeds.copy("renew_state", &format!("{name}.json"), &states.path_for(name)?)?;
    }
    // Retry-After in both forms (RFC 9110 section 10.2.3's examples).
    seeds.put(
        "http_headers",
        "rfc9110-retry-after-date",
        b"Fri, 31 Dec 1999 23:59:59 GMT",
    )?;
    seeds.put("http_headers", "rfc9110-retry-after-seconds", b"120")?;
    fleet(seeds)
}

/// The fleet API's bodies as the serde types write them, and an enrollment token.
fn fleet(seeds: &mut Seeds) -> Result<()> {
    use certfleet_fleet::proto::*;
    let mut put = |name: &str, v: serde_json::Value| seeds.put("fleet_api", name, v.to_string().as_bytes());
    put(
        "new-host.json",
        serde_json::to_value(NewHost { name: "web1".into() })?,
    )?;
    put(
        "new-certificate-dns.json",
        serde_json::to_value(NewCertificate {
            name: "www".into(),
            identifiers: vec!["www.example.com".into(), "bücher.example".into()],
            hosts: vec!["web1".into()],
            custody: Custody::Server,
            key_type: "rsa2048".into(),
            challenge: ChallengeSettings::Dns01 {
                provider: "rfc2136".into(),
                credentials: "/etc/certfleet/rfc2136.ini".into(),
                propagation_seconds: Some(30),
            },
            profile: Some("shortlived".into()),
            comment: Some("front ends".into()),
        })?,
    )?;
    put(
        "new-certificate-http.json",
        serde_json::json!({"name": "api", "identifiers": ["api.example.com"], "challenge": {"type": "http-01"}}),
    )?;
    put(
        "enroll-request.json",
        serde_json::to_value(EnrollRequest {
            secret: certfleet_fleet::token::new_secret(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n".into(),
            agent_version: "0.1.0".into(),
        })?,
    )?;
    put(
        "csr-upload.json",
        serde_json::to_value(CsrUpload {
            certificate: "www".into(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n".into(),
        })?,
    )?;
    put(
        "install-report.json",
        serde_json::to_value(InstallReport {
            certificate: "www".into(),
            state: InstallState::RolledBack,
            installed_serial: Some("01ab".into()),
            served_serial: Some("02cd".into()),
            endpoint: Some("127.0.0.1:443".into()),
            error: Some("nginx served another certificate".into()),
            agent_version: "0.1.0".into(),
        })?,
    )?;
    let token = certfleet_fleet::token::EnrollmentToken {
        url: "https://fleet.example.com:8443".into(),
        fingerprint: "ab".repeat(32),
        secret: certfleet_fleet::token::new_secret(),
    };
    seeds.put("fleet_api", "enrollment-token", token.encode().as_bytes())
}
