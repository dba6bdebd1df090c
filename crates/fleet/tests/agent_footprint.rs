//! Figures for the agent's local half: time of a full install (write, `nginx -t`, reload,
//! verify by handshake) against a real nginx, and the memory the process needs for it. One
//! test alone in its binary, so the memory figure is this test's.

#[path = "agentkit/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use certfleet_fleet::proto::InstallState;
use certfleet_testkit::{Nginx, self_signed_pem};
use common::{TestCa, agent, new_key, toml_array, world_dir};

const ROUNDS: usize = 15;

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "current_thread")]
async fn install_time_and_memory_against_nginx() {
    let dir = world_dir();
    let (cert, key) = self_signed_pem(&["placeholder.example.test"]).unwrap();
    let (fullchain, keyfile) = (dir.path().join("fullchain.pem"), dir.path().join("key.pem"));
    std::fs::write(&fullchain, cert).unwrap();
    std::fs::write(&keyfile, key).unwrap();
    let nginx = Nginx::builder().https(&fullchain, &keyfile).start().unwrap();
    let toml = format!(
        "state_dir = \"{}/state\"\n[[install]]\ncertificate = \"www\"\nfullchain = \"{}\"\nkey = \"{}\"\n\
         config_test_command = {}\nreload_command = {}\nverify = \"127.0.0.1:{}\"\n",
        dir.path().display(),
        fullchain.display(),
        keyfile.display(),
        toml_array(&nginx.config_test_command()),
        toml_array(&nginx.reload_command()),
        nginx.https_port().unwrap()
    );
    let agent = agent(dir.path(), &toml);
    let ca = TestCa::new();
    let key = new_key();
    let deliveries: Vec<_> = (0..ROUNDS)
        .map(|_| ca.deliver("www", &["www.example.test"], &key))
        .collect();
    let (_, rss_before) = memory_kib();

    let mut full = Vec::new();
    let mut unchanged = Vec::new();
    for d in &deliveries {
        let t = Instant::now();
        let o = agent.install(d, Some(&key)).await.remove(0);
        full.push(t.elapsed());
        assert_eq!(o.state, InstallState::Verified, "{o:?}");
        let t = Instant::now();
        let o = agent.install(d, Some(&key)).await.remove(0);
        unchanged.push(t.elapsed());
        assert!(!o.reloaded);
    }
    let (hwm, rss_after) = memory_kib();
    println!(
        "FIGURE {ROUNDS} renewals into nginx: install+test+reload+verify median {:?} (max {:?}); \
         unchanged delivery median {:?}; test process peak RSS {} KiB, RSS {} KiB before / {} KiB after",
        median(full.clone()),
        full.iter().max().unwrap(),
        median(unchanged),
        hwm,
        rss_before,
        rss_after
    );
}
