//! How fast the dashboard answers with a big fleet: fills a fresh SQLite database with N
//! certificates (default 100,000; full-size PEMs, 1,000 hosts, an install report per
//! certificate, some failing, expiring and expired ones, a watch finding for every 100th),
//! serves the real router over the real TLS listener on loopback, logs in, and times the first
//! byte (response head) and the whole body of each page over one kept-alive connection.
//! Run through `bench/dashboard.sh`.
//!
//!   dashboard_bench [N] [RUNS]     (defaults 100000 21)

use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_core::FixedClock;
use certfleet_fleet::db::FleetDb;
use certfleet_fleet::pki::{InternalCa, ServerIdentity};
use certfleet_fleet::server::{AppState, api};
use certfleet_fleet::token::hash_secret;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const HOSTS: usize = 1_000;
const BATCH: usize = 500;
const TOKEN: &str = "cfa1_bench";

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let runs: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(21);
    let dir = tempfile::tempdir()?;
    let db = FleetDb::open(&dir.path().display().to_string()).await?;
    // DASHBOARD_BENCH_DB=FILE: also leave a copy of the filled database there, to look at
    // query plans with sqlite3.
    let keep = std::env::var_os("DASHBOARD_BENCH_DB");
    let t = Instant::now();
    fill(&db, n).await?;
    println!(
        "dashboard_bench: {n} certificates, {HOSTS} hosts (SQLite), filled in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    db.put_admin_token(&hash_secret(TOKEN), "bench", NOW).await?;
    if let Some(path) = keep {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM INTO '{}'",
            std::path::Path::new(&path)
                .display()
                .to_string()
                .replace('\'', "''")
        )))
        .execute(&sqlx::AnyPool::connect(&format!("sqlite://{}", db.target())).await?)
        .await?;
    }

    let now = time::OffsetDateTime::from_unix_timestamp(NOW)?;
    let ca = InternalCa::generate(now)?;
    let (identity, _) = ServerIdentity::load_or_create(dir.path(), &["127.0.0.1".to_string()], now)?;
    let tls = certfleet_fleet::tls::server_config(&identity, &ca)?;
    let state = AppState::for_tests(db.clone(), Arc::new(FixedClock::new(now)), ca);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(certfleet_fleet::tls::serve_tls(
        listener,
        tls,
        api::app(state),
        std::future::pending(),
    ));
    let base = format!("https://{addr}");
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let session = login(&http, &base).await?;

    println!(
        "\n{:<44} {:>16} {:>16} {:>10}",
        "page", "first byte (med)", "first byte (max)", "body"
    );
    let pages = [
        "/".to_string(),
        "/certificates".to_string(),
        format!("/certificates?after=cert-{:06}", n / 2),
        "/certificates?state=failing".to_string(),
        "/certificates?state=expired".to_string(),
        "/certificates?q=host-4242.example".to_string(),
        "/certificates/cert-000042".to_string(),
        "/hosts".to_string(),
        "/hosts/host-0042".to_string(),
    ];
    for page in &pages {
        let mut firsts = Vec::with_capacity(runs);
        let mut size = 0;
        // One warm-up (statement cache, page cache), then the timed runs.
        for i in 0..=runs {
            let t = Instant::now();
            let resp = http
                .get(format!("{base}{page}"))
                .header("cookie", format!("__Host-certfleet-session={session}"))
                .send()
                .await?;
            let first = t.elapsed();
            if !resp.status().is_success() {
                return Err(format!("{page}: {}", resp.status()).into());
            }
            size = resp.bytes().await?.len();
            if i > 0 {
                firsts.push(first);
            }
        }
        firsts.sort();
        println!(
            "{page:<44} {:>13.1} ms {:>13.1} ms {:>7} kB",
            ms(firsts[firsts.len() / 2]),
            ms(*firsts.last().unwrap_or(&Duration::ZERO)),
            size / 1000
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Through the login form, as a browser does.
async fn login(http: &reqwest::Client, base: &str) -> Result<String> {
    let form = http.get(format!("{base}/login")).send().await?;
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next()?.strip_prefix("__Host-certfleet-login="))
        .ok_or("no login cookie")?
        .to_string();
    let body = form.text().await?;
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no CSRF field")?
        .to_string();
    let resp = http
        .post(format!("{base}/login"))
        .header("cookie", format!("__Host-certfleet-login={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("secret", TOKEN), ("csrf", csrf.as_str())])
                .finish(),
        )
        .send()
        .await?;
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next()?.strip_prefix("__Host-certfleet-session="))
        .ok_or("login failed")?
        .to_string();
    Ok(session)
}

/// N certificates in one transaction over a second pool (the public API adds one at a time).
async fn fill(db: &FleetDb, n: usize) -> Result<()> {
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.target())).await?;
    let cert_pem = pem_block(1_900);
    let chain_pem = pem_block(1_600);
    let mut tx = pool.begin().await?;
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut sql = String::from(
            "INSERT INTO certificates (name, identifiers, enabled, key_type, challenge, custody, created_at, \
             version, cert_pem, chain_pem, serial, not_before, not_after, issuer, key_sha256, issued_at, \
             next_attempt, next_attempt_reason, consecutive_failures, last_error) VALUES ",
        );
        for row in 0..end - start {
            let p = row * 10;
            if row > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, 1, 'ecdsa-p256', '{{\"type\":\"http-01\"}}', 'agent', {NOW}, 1, ${}, ${}, ${}, ${}, ${}, \
                 'Bench CA', '0', {NOW}, ${}, 'one third of its lifetime left', ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8,
                p + 9,
                p + 10
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in start..end {
            let i64i = i as i64;
            // Issued over the last 60 days (90-day certificates), 1 in 500 expired, 1 in 200 failing.
            let not_before = if i % 500 == 7 {
                NOW - 95 * DAY
            } else {
                NOW - (i64i * 7_919) % (60 * DAY)
            };
            let failing = i % 200 == 3;
            q = q
                .bind(format!("cert-{i:06}"))
                .bind(format!("[\"host-{i}.example.com\"]"))
                .bind(cert_pem.clone())
                .bind(chain_pem.clone())
                .bind(format!("{i:032x}"))
                .bind(not_before)
                .bind(not_before + 90 * DAY)
                .bind(not_before + 60 * DAY)
                .bind(i64::from(failing) * 2)
                .bind(failing.then_some(
                    "the CA refused the order: rateLimited (too many certificates for this domain)",
                ));
        }
        q.execute(&mut *tx).await?;
    }
    for start in (0..HOSTS).step_by(BATCH) {
        let values: Vec<String> = (start..(start + BATCH).min(HOSTS))
            .map(|h| {
                format!(
                    "('host-{h:04}', {NOW}, {NOW}, {}, '0.1.0')",
                    NOW - (h as i64 % 7) * 3600
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO hosts (name, created_at, enrolled_at, last_seen, agent_version) VALUES {}",
            values.join(",")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO assignments (certificate_id, host_id, assigned_at) \
         SELECT id, ((id - 1) % {HOSTS}) + 1, {NOW} FROM certificates"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO install_reports (certificate_id, host_id, state, installed_serial, served_serial, endpoint, reported_at) \
         SELECT a.certificate_id, a.host_id, 'verified', c.serial, c.serial, '10.0.' || (a.host_id / 250) || '.' || (a.host_id % 250) || ':443', {NOW} \
         FROM assignments a JOIN certificates c ON c.id = a.certificate_id"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO served_checks (certificate_id, endpoint, source, state, detail, served_not_after, chain_len, checked_at) \
         SELECT id, 'host-' || id || '.example.com:443', 'admin', CASE WHEN id % 300 = 0 THEN 'incomplete-chain' ELSE 'ok' END, \
         'bench', not_after, 2, {NOW} FROM certificates WHERE id % 100 = 0"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

fn pem_block(len: usize) -> String {
    let body: String = (0..len / 65)
        .map(|i| format!("{}\n", char::from(b'A' + (i % 26) as u8).to_string().repeat(64)))
        .collect();
    format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
}
