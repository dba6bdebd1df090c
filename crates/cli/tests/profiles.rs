//! ACME profiles against a second, independent CA: acme2certifier (Pebble 2.4 has no profiles).
//! certfleet runs inside the CA's private network namespace, so `--standalone` answers http-01
//! on the real port 80 there. This also proves the client is not tuned to Pebble.

mod common;
use common::tail_lines;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::SystemTime;

use certfleet_core::CertInfo;
use certfleet_testkit::Acme2Certifier;
use tempfile::TempDir;

/// Certificates ordered with the `shortlived` profile get this validity (in days; the openssl CA
/// handler has day granularity), the rest the default.
const SHORTLIVED_DAYS: u32 = 7;
const DEFAULT_DAYS: u32 = 30;

struct A2cEnv {
    tmp: TempDir,
    a2c: Acme2Certifier,
}

impl A2cEnv {
    fn start() -> Self {
        Self::with(Acme2Certifier::builder())
    }

    fn with(builder: certfleet_testkit::Acme2CertifierBuilder) -> Self {
        let a2c = builder
            .validity_days(DEFAULT_DAYS)
            .profile_validity_days("shortlived", SHORTLIVED_DAYS)
            .start()
            .unwrap();
        Self {
            tmp: tempfile::tempdir().unwrap(),
            a2c,
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.tmp.path().join("etc")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.a2c.command(env!("CARGO_BIN_EXE_certfleet"));
        c.args(args)
            .arg("--config-dir")
            .arg(self.config_dir())
            .arg("--work-dir")
            .arg(self.tmp.path().join("work"))
            .arg("--logs-dir")
            .arg(self.tmp.path().join("logs"))
            .arg("--server")
            .arg(self.a2c.directory_url())
            .arg("--ca-bundle")
            .arg(self.a2c.ca_bundle_path())
            .env_remove("CERTFLEET_CA_BUNDLE")
            .env_remove("REQUESTS_CA_BUNDLE");
        c
    }

    /// `certonly --standalone` on port 80 inside the namespace, where acme2certifier validates.
    fn certonly(&self, name: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "-d",
            name,
            "--agree-tos",
            "--register-unsafely-without-email",
            "-n",
        ];
        args.extend_from_slice(extra);
        self.cmd(&args).output().unwrap()
    }

    fn ok(&self, out: Output) -> Output {
        assert!(
            out.status.success(),
            "certfleet failed ({:?}):\nstdout: {}\nstderr: {}\n--- acme2certifier log tail ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail_lines(&self.a2c.log(), 40)
        );
        out
    }

    /// The lineage's leaf, after checking its chain with a real path validator.
    fn verified_leaf(&self, name: &str) -> CertInfo {
        let fullchain =
            std::fs::read(self.config_dir().join("live").join(name).join("fullchain.pem")).unwrap();
        assert_eq!(
            self.a2c
                .verify_chain(&fullchain, &[name], SystemTime::now())
                .unwrap(),
            0
        );
        let leaf = certfleet_testkit::pem_certs(&fullchain).unwrap().remove(0);
        CertInfo::from_der(&leaf).unwrap()
    }

    fn renewal_conf(&self, name: &str) -> String {
        std::fs::read_to_string(self.config_dir().join("renewal").join(format!("{name}.conf"))).unwrap()
    }

    /// Did acme2certifier see a newOrder request?
    fn orders_placed(&self) -> usize {
        self.a2c.log().matches("POST /acme/neworders").count()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lifetime_days(info: &CertInfo) -> i64 {
    // Rounded: the CA backdates notBefore by a few seconds to minutes.
    (info.lifetime().whole_hours() + 12) / 24
}

#[test]
fn preferred_profile_shortlived_gets_that_profiles_validity() {
    let env = A2cEnv::start();
    env.ok(env.certonly("short.example.test", &["--preferred-profile", "shortlived"]));
    let info = env.verified_leaf("short.example.test");
    assert_eq!(lifetime_days(&info), SHORTLIVED_DAYS as i64, "{info:?}");
    assert!(
        env.renewal_conf("short.example.test")
            .contains("preferred_profile = shortlived")
    );

    // The same CA without a profile: the default validity, so the profile really chose it.
    env.ok(env.certonly("classic.example.test", &[]));
    let info = env.verified_leaf("classic.example.test");
    assert_eq!(lifetime_days(&info), DEFAULT_DAYS as i64, "{info:?}");
}

#[test]
fn required_profile_not_offered_fails_before_ordering() {
    let env = A2cEnv::start();
    let out = env.certonly("req.example.test", &["--required-profile", "nonexistent"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nonexistent"), "{err}");
    assert!(
        err.contains("classic, shortlived"),
        "lists the offered profiles: {err}"
    );
    assert_eq!(env.orders_placed(), 0, "no order may be placed");
    assert!(
        !env.config_dir().join("accounts").exists(),
        "no account made for nothing"
    );
    assert!(!env.config_dir().join("live").exists(), "nothing saved");
    assert!(!env.config_dir().join("renewal").exists(), "nothing saved");
}

#[test]
fn preferred_profile_not_offered_falls_back_to_default_with_warning() {
    let env = A2cEnv::start();
    let out = env.ok(env.certonly("pref.example.test", &["--preferred-profile", "nonexistent"]));
    let err = stderr(&out);
    assert!(
        err.contains("nonexistent") && err.contains("default"),
        "warns about the fallback: {err}"
    );
    let info = env.verified_leaf("pref.example.test");
    assert_eq!(lifetime_days(&info), DEFAULT_DAYS as i64, "{info:?}");
}

/// The directory advertises `shortlived`, but the CA's order policy does not accept it: an
/// `invalidProfile` problem. acme2certifier's `[Order]` reads its profiles from the database when
/// `[CAhandler] profiles_sync` is on, while its directory keeps the configured list: the two
/// disagree exactly as a CA whose directory is stale after a profile was withdrawn.
#[test]
fn profile_rejected_by_ca_shows_its_detail_and_a_hint() {
    let env = A2cEnv::with(Acme2Certifier::builder().config("CAhandler", "profiles_sync", "True"));
    // Two names: with one, acme2certifier silently swaps any profile for it.
    restrict_order_profiles(&env.a2c, &["classic", "tlsserver"]);

    let out = env.certonly("bad.example.test", &["--required-profile", "shortlived"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("invalidProfile"), "names the problem type: {err}");
    assert!(err.contains("Invalid profile specified"), "CA's detail: {err}");
    assert!(
        err.contains("hint:") && err.contains("\"shortlived\"") && err.contains("classic, shortlived"),
        "hint names the profile and what the directory lists: {err}"
    );
    assert!(!env.config_dir().join("live").exists(), "nothing saved");

    // The profile the CA still accepts works on the same account.
    env.ok(env.certonly("good.example.test", &["--required-profile", "classic"]));
    env.verified_leaf("good.example.test");
}

/// Writes acme2certifier's synced profile list (housekeeping `profiles`) into its database.
fn restrict_order_profiles(a2c: &Acme2Certifier, names: &[&str]) {
    // One request makes acme2certifier create its database and tables.
    assert_eq!(a2c.get(&a2c.directory_url()).unwrap().0, 200);
    let profiles: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                serde_json::json!(format!("http://127.0.0.1/profiles/{n}")),
            )
        })
        .collect();
    let value = serde_json::json!({ "profiles": profiles }).to_string();
    let db = a2c.dir().join("db/acme_srv.db");
    let script = "import sqlite3, sys\n\
        c = sqlite3.connect(sys.argv[1])\n\
        c.execute(\"INSERT OR REPLACE INTO housekeeping (name, value) VALUES ('profiles', ?)\", (sys.argv[2],))\n\
        c.commit()\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .arg(&value)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
