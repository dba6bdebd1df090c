//! How long one round of the served-certificate watch takes for N endpoints (default 1,000)
//! on loopback: N real TLS listeners (tokio-rustls), each serving its own certificate from a
//! root -> intermediate -> leaf test CA (every 10th without the intermediate: the cert.pem
//! trap), N certificates in a fresh SQLite database, one watched endpoint each. Times
//! `Watch::round` (handshakes, chain checks, storing the findings) and checks the findings.
//! Run through `bench/watch.sh` (it raises the open-files limit: N listeners are N sockets).
//!
//!   watch_bench [N] [ROUNDS]     (defaults 1000 5)

use std::sync::Arc;
use std::time::Instant;

use certfleet_core::SystemClock;
use certfleet_fleet::db::{CertificateSettings, Commit, FleetDb, IssuedCert};
use certfleet_fleet::proto::{ChallengeSettings, Custody};
use certfleet_fleet::server::watch::{Watch, WatchConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(1_000);
    let rounds: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let root = CertifiedIssuer::self_signed(ca_params("watch bench root"), KeyPair::generate()?)?;
    let inter =
        CertifiedIssuer::signed_by(ca_params("watch bench intermediate"), KeyPair::generate()?, &root)?;
    let dir = tempfile::tempdir()?;
    let db = FleetDb::open(&dir.path().display().to_string()).await?;
    let now = time::OffsetDateTime::now_utc();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let t = Instant::now();
    for i in 0..n {
        let name = format!("site-{i:04}");
        let dns = format!("{name}.bench.test");
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![dns.clone()])?;
        p.distinguished_name.push(DnType::CommonName, dns.as_str());
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(89);
        let leaf = p.signed_by(&key, &inter)?;
        let mut chain = vec![CertificateDer::from(leaf.der().to_vec())];
        if i % 10 != 0 {
            chain.push(CertificateDer::from(inter.der().to_vec()));
        }
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The watch closes after the handshake; nothing to serve.
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });

        let settings = CertificateSettings {
            identifiers: vec![dns.clone()],
            custody: Custody::Server,
            key_type: "ecdsa-p256".into(),
            challenge: ChallengeSettings::Http01,
            profile: None,
            comment: None,
            acme_server: None,
            acme_account: None,
        };
        db.create_certificate(&name, &settings, &[], now.unix_timestamp())
            .await?;
        let cert_pem = leaf.pem();
        let issued = IssuedCert {
            cert_pem,
            chain_pem: inter.pem(),
            serial: format!("{i:x}"),
            not_before: (now - time::Duration::days(1)).unix_timestamp(),
            not_after: (now + time::Duration::days(89)).unix_timestamp(),
            issuer: "watch bench intermediate".into(),
            key_sha256: "0".repeat(64),
            issued_at: now.unix_timestamp(),
        };
        let c = Commit {
            cert: &issued,
            key_blob: None,
            lease_owner: None,
            csr_id: None,
            next_attempt: issued.not_after - 30 * 86_400,
            next_attempt_reason: "bench",
            actor: "bench",
            imported: false,
        };
        db.commit_issued(&name, &c).await?;
        db.add_watch_endpoint(
            &name,
            &format!("127.0.0.1:{port}"),
            Some(&dns),
            now.unix_timestamp(),
        )
        .await?;
    }
    println!(
        "watch_bench: {n} endpoints on loopback (every 10th without its intermediate), set up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let cfg = WatchConfig {
        extra_roots: vec![root.der().to_vec()],
        ..WatchConfig::default()
    };
    println!(
        "concurrency {}, timeout {:?} per endpoint\n",
        cfg.concurrency, cfg.timeout
    );
    let w = Watch::new(db.clone(), Arc::new(SystemClock), cfg);
    let mut times = Vec::new();
    for r in 0..rounds {
        let round = w.round().await?;
        let counts: Vec<String> = round
            .by_state
            .iter()
            .filter(|(_, c)| *c > 0)
            .map(|(s, c)| format!("{c} {s}"))
            .collect();
        println!(
            "round {}: {} endpoints in {:.2} s ({})",
            r + 1,
            round.checked,
            round.elapsed.as_secs_f64(),
            counts.join(", ")
        );
        let ok = round.by_state.iter().find(|(s, _)| *s == "ok").map(|x| x.1);
        let trap = round
            .by_state
            .iter()
            .find(|(s, _)| *s == "incomplete-chain")
            .map(|x| x.1);
        if round.checked != n || ok != Some(n - n.div_ceil(10)) || trap != Some(n.div_ceil(10)) {
            return Err(format!("unexpected findings: {counts:?}").into());
        }
        times.push(round.elapsed);
    }
    times.sort();
    println!(
        "\nmedian {:.2} s, max {:.2} s for {n} endpoints (target: under 10 s)",
        times[times.len() / 2].as_secs_f64(),
        times.last().map(|d| d.as_secs_f64()).unwrap_or_default()
    );
    Ok(())
}
