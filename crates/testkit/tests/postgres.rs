//! Self-tests: a throwaway PostgreSQL cluster starts, serves fresh databases, and goes away.

use std::process::Command;

use certfleet_testkit::{PgCluster, PgDatabase};

fn psql(url: &str, sql: &str) -> (bool, String) {
    let bindir = Command::new("pg_config").arg("--bindir").output().unwrap();
    let psql = std::path::Path::new(String::from_utf8_lossy(&bindir.stdout).trim()).join("psql");
    let out = Command::new(psql)
        .args(["-X", "-qtA", "-d", url, "-c", sql])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[test]
fn own_cluster_answers_and_stops_on_drop() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.url();
    assert_eq!(psql(&url, "SELECT 1 + 1"), (true, "2".to_owned()));
    drop(cluster);
    assert!(!psql(&url, "SELECT 1").0, "the cluster still answers after drop");
}

#[test]
fn fresh_databases_are_distinct_and_dropped() {
    let (a, b) = (PgDatabase::create().unwrap(), PgDatabase::create().unwrap());
    assert_ne!(a.name(), b.name());
    assert_eq!(
        psql(a.url(), "SELECT current_database()"),
        (true, a.name().to_owned())
    );
    let url = a.url().to_owned();
    drop(a);
    assert!(!psql(&url, "SELECT 1").0, "the database still exists after drop");
    assert!(psql(b.url(), "SELECT 1").0);
}
