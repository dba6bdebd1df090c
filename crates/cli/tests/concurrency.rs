//! Several certbot and certfleet runs on one tree at once: a run waits for the lock and says
//! which process holds it, `-n` fails at once naming the holder, and whatever the interleaving
//! every lineage ends complete and valid, with no duplicate (`NAME-0001`) lineages.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certfleet_testkit::Pebble;
use common::*;

/// certbot's own lock module holds the config dir's lock for `secs` seconds; returns the
/// child once the lock is held.
fn certbot_holds_lock(dir: &std::path::Path, secs: u32) -> std::process::Child {
    let script = format!(
        "import sys, time\n\
         from certbot._internal import lock\n\
         l = lock.lock_dir(sys.argv[1])\n\
         print('locked', flush=True)\n\
         time.sleep({secs})\n\
         l.release()\n"
    );
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    child
}

#[test]
fn a_run_waits_for_certbot_and_names_it_and_dash_n_fails_at_once() {
    let env = Env::new(Pebble::start().unwrap());
    let out = env.certonly_standalone(&["w.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut certbot = certbot_holds_lock(&env.config_dir(), 3);
    let pid = certbot.id();
    // -n: at once, exit 5, naming certbot's process.
    let t = Instant::now();
    let out = env.run(&["renew", "-n"]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("python3"),
        "{err}"
    );
    // Without -n: waits, says for whom, then runs once certbot lets go.
    let t = Instant::now();
    let out = env.run(&["renew", "--force-renewal"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("waiting for pid {pid}")), "{err}");
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(stdout(&out).contains("1 renewed"), "{}", stdout(&out));
    certbot.wait().unwrap();
}

#[test]
fn concurrent_certonly_and_renew_runs_leave_a_consistent_tree() {
    let env = Env::new(Pebble::start().unwrap());
    let first = env.certonly_standalone(&["c0.example.test"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let port = env.pebble.http_port().to_string();
    let mut children = Vec::new();
    for i in 1..=3 {
        let name = format!("c{i}.example.test");
        children.push((
            format!("certonly {name}"),
            // Without -n (which fails at once): these wait for each other.
            env.cmd(&[
                "certonly",
                "--standalone",
                "--http-01-address",
                "127.0.0.1",
                "--http-01-port",
                &port,
                "--agree-tos",
                "-m",
                "admin@example.test",
                "-d",
                &name,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        ));
        children.push((
            format!("renew #{i}"),
            env.cmd(&[
                "renew",
                "--force-renewal",
                "--standalone",
                "--http-01-address",
                "127.0.0.1",
                "--http-01-port",
                &port,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        ));
    }
    let mut waited = 0;
    for (what, child) in children {
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        waited += usize::from(err.contains("waiting for pid"));
        assert!(out.status.success(), "{what}: {:?}\n{err}", out.status);
    }
    assert!(waited > 0, "no run had to wait: the test did not race");
    let live: Vec<String> = std::fs::read_dir(env.config_dir().join("live"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README")
        .collect();
    assert!(
        live.iter().all(|n| !n.contains("-0")),
        "duplicate lineages: {live:?}"
    );
    let out = env.run_ok(&["certificates", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["status"], "VALID", "{row}");
        let name = row["name"].as_str().unwrap();
        env.verify_lineage(name, &[name]);
    }
}
