//! How fast the renewal loop finds due certificates among many, and how fast `/metrics` answers:
//! fills a fresh fleet database with N certificates (default 100,000) and times
//! `FleetDb::due_certificates`, `FleetDb::fleet_stats` (the scrape-time queries) and the whole
//! `/metrics` body (queries and encoding) on SQLite and on PostgreSQL. Run through
//! `bench/fleet_db.sh` (release build).
//!
//!   fleet_db_bench [N] [RUNS] [sqlite|postgres|both]
//!
//! PostgreSQL is `DATABASE_URL` when set (a fresh database is created there and dropped), else
//! a throwaway cluster (fsync off: only the fill is faster for it, not the queries).
//!
//! The rows look like a real fleet: full PEMs (~3.6 KB a row), renewals spread evenly over 60
//! days, 1% disabled, 2% leased by another node; 1,000 hosts, each certificate assigned to one
//! of them with a `verified` install report (N install reports).

use std::time::{Duration, Instant};

use certfleet_fleet::db::{Backend, FleetDb};
use certfleet_fleet::server::metrics::Metrics;
use certfleet_testkit::PgDatabase;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const NOW: i64 = 1_800_000_000;
const SPREAD: i64 = 60 * 24 * 3600;
/// Rows per INSERT statement (11 parameters each: far below both backends' limits).
const BATCH: usize = 500;
const LIMIT: u32 = 100;
const HOSTS: usize = 1_000;
/// Scrapes timed per backend (each reads the whole fleet).
const SCRAPES: usize = 11;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let runs: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(51);
    let which = args.get(2).map(String::as_str).unwrap_or("both");
    println!("fleet_db_bench: {n} certificates, median of {runs} `due_certificates(now, {LIMIT})` queries\n");
    println!(
        "{:<10} {:>9} {:>14} {:>22} {:>22} {:>16} {:>26}",
        "backend", "fill", "due now", "due in 30 days", "claim_due+release", "fleet_stats", "/metrics (body)"
    );
    if which != "postgres" {
        let dir = tempfile::tempdir()?;
        let target = dir.path().display().to_string();
        run("sqlite", &target, n, runs).await?;
    }
    if which != "sqlite" {
        let pg = tokio::task::spawn_blocking(PgDatabase::create).await??;
        run("postgres", pg.url(), n, runs).await?;
    }
    Ok(())
}

async fn run(label: &str, target: &str, n: usize, runs: usize) -> Result<()> {
    let db = FleetDb::open(target).await?;
    let started = Instant::now();
    fill(&db, n).await?;
    let fill = started.elapsed();

    let due_now = time_queries(runs, || db.due_certificates(NOW, LIMIT)).await?;
    let due_later = time_queries(runs, || db.due_certificates(NOW + SPREAD / 2, LIMIT)).await?;
    // Claim a batch and give it back, as one renewal pass does.
    let mut claims = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let got = db.claim_due("bench", NOW, NOW + 600, LIMIT).await?;
        for c in &got {
            db.release_lease(&c.name, "bench").await?;
        }
        claims.push((t.elapsed(), got.len()));
    }
    // /metrics: the scrape-time queries alone, then the whole body as the handler makes it.
    let stats = time_queries(SCRAPES, || async {
        let s = db.fleet_stats(NOW).await?;
        Ok(s.expiry)
    })
    .await?;
    let metrics = Metrics::default();
    let mut scrapes = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        let body = metrics.render(&db, NOW).await?;
        scrapes.push((t.elapsed(), body.lines().count()));
        size = body.len();
    }
    println!(
        "{label:<10} {:>8.1}s {:>14} {:>22} {:>22} {:>16} {:>26}",
        fill.as_secs_f64(),
        summary(due_now),
        summary(due_later),
        summary(claims),
        summary(stats).split(" (").next().unwrap_or_default(),
        format!(
            "{} {:.1} MB",
            summary(scrapes).replace(" rows)", " lines,"),
            size as f64 / 1e6
        )
    );
    db.close().await;
    Ok(())
}

/// Median duration and the row count of a timed series.
fn summary(mut v: Vec<(Duration, usize)>) -> String {
    v.sort();
    let (median, rows) = v[v.len() / 2];
    format!("{:.2} ms ({rows} rows)", median.as_secs_f64() * 1000.0)
}

async fn time_queries<F, Fut, T>(runs: usize, mut q: F) -> Result<Vec<(Duration, usize)>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Vec<T>, certfleet_fleet::db::DbError>>,
{
    q().await?; // warm the statement cache and the page cache
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let rows = q().await?.len();
        out.push((t.elapsed(), rows));
    }
    Ok(out)
}

/// N certificate rows in one transaction, `BATCH` rows per statement, over a second pool on
/// the same database (the public API adds one certificate per transaction).
async fn fill(db: &FleetDb, n: usize) -> Result<()> {
    let url = match db.backend() {
        Backend::Sqlite => format!("sqlite://{}", db.target()),
        Backend::Postgres => db.target().to_owned(),
    };
    let pool = sqlx::AnyPool::connect(&url).await?;
    let cert_pem = pem_block(1_900);
    let chain_pem = pem_block(1_600);
    let mut tx = pool.begin().await?;
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut sql = String::from(
            "INSERT INTO certificates (name, identifiers, enabled, key_type, challenge, custody, created_at, \
             version, cert_pem, chain_pem, serial, not_before, not_after, issuer, key_sha256, issued_at, \
             next_attempt, next_attempt_reason, lease_owner, lease_until) VALUES ",
        );
        for (row, _) in (start..end).enumerate() {
            let p = row * 11;
            if row > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, 'ecdsa-p256', '{{\"type\":\"http-01\"}}', 'agent', {NOW}, 1, ${}, ${}, ${}, \
                 {NOW}, ${}, 'Bench CA', ${}, {NOW}, ${}, 'two thirds of the lifetime', ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8,
                p + 9,
                p + 10,
                p + 11
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in start..end {
            let i64i = i as i64;
            // A fixed pseudo-random spread: about 1 in 1,440 renewals is due per hour.
            let next = NOW - 3600 + (i64i * 7_919_287) % SPREAD;
            let leased = i % 50 == 1;
            q = q
                .bind(format!("cert-{i:06}"))
                .bind(format!("[\"host-{i}.example.com\"]"))
                .bind(i64::from(i % 100 != 0))
                .bind(cert_pem.clone())
                .bind(chain_pem.clone())
                .bind(format!("{i:032x}"))
                .bind(next + SPREAD / 2)
                .bind(format!("{i:064x}"))
                .bind(next)
                .bind(leased.then_some("other-node"))
                .bind(leased.then_some(NOW + 600));
        }
        q.execute(&mut *tx).await?;
    }
    // Hosts 1..=HOSTS (fresh database: ids follow), each certificate on one, served as issued.
    for start in (0..HOSTS).step_by(BATCH) {
        let values: Vec<String> = (start..(start + BATCH).min(HOSTS))
            .map(|h| format!("('host-{h:04}', {NOW}, {NOW}, '0.1.0')"))
            .collect();
        let sql = format!(
            "INSERT INTO hosts (name, created_at, last_seen, agent_version) VALUES {}",
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
        "INSERT INTO install_reports (certificate_id, host_id, state, installed_serial, served_serial, reported_at) \
         SELECT a.certificate_id, a.host_id, 'verified', c.serial, c.serial, {NOW} \
         FROM assignments a JOIN certificates c ON c.id = a.certificate_id"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

/// A PEM-shaped string of about `len` bytes.
fn pem_block(len: usize) -> String {
    let body: String = (0..len / 65)
        .map(|i| format!("{}\n", char::from(b'A' + (i % 26) as u8).to_string().repeat(64)))
        .collect();
    format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
}
