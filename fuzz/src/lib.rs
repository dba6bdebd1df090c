//! The bodies of certfleet's fuzz targets, one function per target taking the raw input.
//! `fuzz_targets/*.rs` hand them to libFuzzer; `tests/corpus.rs` replays every committed input
//! through them as an ordinary test. Each function feeds the input to the parser the way the
//! program does, then uses what came out (accessors, round trips, the renewal decision), and
//! asserts the invariants that must hold for any input. A panic, a timeout or an oversized
//! allocation is a bug in certfleet, not in the target.

use std::path::Path;

use certfleet_core::{CertInfo, FixedClock, Identifier, KeySpec, PrivateKey};
use certfleet_renew::{AriWindow, CertFacts, Decision, LineageState, RenewBefore, RenewalInput, decide};
use certfleet_store::renewal_conf::{RenewalConf, Section, Value};
use time::{Duration, OffsetDateTime, macros::datetime};

/// The one "now" of every target, so a crash reproduces on any day.
pub const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

/// A target's body: takes any input, panics on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay and `scripts/fuzz.sh`'s list.
pub const TARGETS: &[(&str, Target)] = &[
    ("renewal_conf", renewal_conf),
    ("renewal_conf_write", renewal_conf_write),
    ("cli_ini", cli_ini),
    ("credentials_ini", credentials_ini),
    ("cert", cert),
    ("private_key", private_key),
    ("account_json", account_json),
    ("acme_json", acme_json),
    ("http_headers", http_headers),
    ("dns_message", dns_message),
    ("fleet_api", fleet_api),
    ("renew_state", renew_state),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

// ---- configobj (renewal/NAME.conf) ----

/// A conf's values without its comments and layout: what must survive a write and a read.
#[derive(Debug, PartialEq)]
enum Tree {
    Scalar(String, Value),
    Section(String, Vec<Tree>),
}

fn tree(s: &Section) -> Vec<Tree> {
    let mut out: Vec<Tree> = s.iter().map(|(k, v)| Tree::Scalar(k.into(), v.clone())).collect();
    for name in s.section_names() {
        let sub = s.section(name).expect("listed section exists");
        out.push(Tree::Section(name.into(), tree(sub)));
    }
    out
}

fn parse_conf(text: &str) -> Result<RenewalConf, String> {
    RenewalConf::parse(text, Path::new("fuzz.conf")).map_err(|e| e.to_string())
}

/// `write` then `read` gives the same values, and writing again gives the same text.
fn assert_conf_round_trip(conf: &RenewalConf) {
    let Ok(written) = conf.to_text() else { return };
    let back =
        parse_conf(&written).unwrap_or_else(|e| panic!("what we wrote does not read back: {e}\n{written}"));
    assert_eq!(
        tree(back.root()),
        tree(conf.root()),
        "values changed in a round trip:\n{written}"
    );
    // Text settles after the second write, up to blank lines at the end and carriage returns
    // at the end of comment lines. The first two are configobj's ways, kept to write what it
    // writes: the reader keeps the first indentation it sees and the writer puts it before
    // inline comments but indents only nested sections, so a read of an indented top-level
    // line may write inline comments one way first and the other way from then on; and each
    // write ends the file with one newline fewer when it ends with blank comment lines. The
    // reader strips one `\r` before each `\n` where configobj strips them all, so a comment
    // ending in `\r\r` loses one per write (left to the configobj reader's own fixes).
    let again = back.to_text().expect("a conf we read back writes");
    let third = parse_conf(&again)
        .and_then(|c| c.to_text().map_err(|e| e.to_string()))
        .expect("a conf we wrote twice reads and writes");
    let settled = |t: &str| -> Vec<String> {
        let mut lines: Vec<String> = t.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    };
    assert_eq!(settled(&third), settled(&again), "writing does not settle");
}

/// Every typed getter the renewer uses, and what it does with their values.
fn use_conf(conf: &RenewalConf) {
    for v in [
        conf.version(),
        conf.archive_dir(),
        conf.cert(),
        conf.privkey(),
        conf.chain(),
        conf.fullchain(),
    ] {
        let _ = v.map(str::len);
    }
    if let Ok(rb) = RenewBefore::parse(conf.renew_before_expiry()) {
        for t in [
            NOW,
            datetime!(0000-01-01 0:00 UTC),
            datetime!(9999-12-31 23:59:59 UTC),
        ] {
            let _ = rb.before(t);
        }
    }
    let _ = (
        conf.account(),
        conf.authenticator(),
        conf.installer(),
        conf.preferred_chain(),
    );
    if let Some(server) = conf.server() {
        let _ = certfleet_store::accounts::server_path(server);
    }
    if let (Some(kt), Ok(size)) = (conf.key_type(), conf.rsa_key_size()) {
        let _ = KeySpec::from_certbot(kt, conf.elliptic_curve(), size);
    }
    for (domain, _) in conf.webroot_map() {
        let _ = Identifier::dns(&domain);
    }
    let _ = (conf.webroot_path(), conf.pref_challs());
    let _ = (conf.pre_hook(), conf.post_hook(), conf.renew_hook());
    let _ = (conf.manual_auth_hook(), conf.manual_cleanup_hook());
    let _ = (
        conf.reuse_key(),
        conf.must_staple(),
        conf.allow_subset_of_names(),
        conf.autorenew(),
    );
}

/// Read any text as a renewal conf; what reads must survive write + read, and every getter works.
pub fn renewal_conf(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(conf) = parse_conf(text) else { return };
    use_conf(&conf);
    assert_conf_round_trip(&conf);
    // What `certbot renew` does to a conf it keeps: new version line, then write it.
    let mut updated = conf.clone();
    updated.prepare_for_write();
    assert_conf_round_trip(&updated);
}

#[derive(Debug, arbitrary::Arbitrary)]
struct ConfEdits {
    root: Vec<(String, ArbValue)>,
    params: Vec<(String, ArbValue)>,
    webroot_map: Vec<(String, String)>,
    comment: Vec<String>,
}

#[derive(Debug, arbitrary::Arbitrary)]
enum ArbValue {
    Str(String),
    List(Vec<String>),
}

impl From<ArbValue> for Value {
    fn from(v: ArbValue) -> Self {
        match v {
            ArbValue::Str(s) => Value::Str(s),
            ArbValue::List(l) => Value::List(l),
        }
    }
}

/// Write a conf with any keys and values, as the CLI sets them: it must either refuse to write
/// or read back with the same values.
pub fn renewal_conf_write(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(edits) = <ConfEdits as arbitrary::Arbitrary>::arbitrary(&mut u) else {
        return;
    };
    let mut conf = RenewalConf::new();
    // Comments come from lines of a file (the reader) or our own one-line texts.
    conf.set_initial_comment(
        edits
            .comment
            .iter()
            .flat_map(|c| c.lines())
            .map(String::from)
            .collect(),
    );
    for (k, v) in edits.root {
        conf.set(&k, v);
    }
    for (k, v) in edits.params {
        conf.set_param(&k, v);
    }
    if !edits.webroot_map.is_empty() {
        conf.set_webroot_map(&edits.webroot_map);
    }
    assert_conf_round_trip(&conf);
}

// ---- ini files ----

/// certbot's `cli.ini`.
pub fn cli_ini(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(ini) = certfleet_store::CliIni::parse(text, Path::new("cli.ini")) else {
        return;
    };
    for (k, v) in &ini.entries {
        assert!(!k.is_empty() && !k.contains(char::is_whitespace), "bad key {k:?}");
        assert_eq!(
            ini.get(k),
            Some(v.as_str()),
            "a key given twice keeps its last value"
        );
    }
}

/// A dns plugin's credentials file.
pub fn credentials_ini(data: &[u8]) {
    use certfleet_solvers::dns::credentials::CredentialsFile;
    let Some(text) = text(data) else { return };
    let Ok(f) = CredentialsFile::parse(Path::new("creds.ini"), text) else {
        return;
    };
    for key in [
        "dns_rfc2136_server",
        "dns_rfc2136_name",
        "dns_rfc2136_secret",
        "dns_cloudflare_api_token",
    ] {
        let _ = (f.get(key), f.line_of(key));
    }
    if let Some(alg) = f.get("dns_rfc2136_algorithm") {
        let _ = certfleet_solvers::dns::TsigAlgorithm::parse(alg.expose());
    }
    let _ = f
        .require("dns_rfc2136_port", "port")
        .map(|p| p.expose().parse::<u16>());
}

// ---- certificates and keys ----

/// What the renewer does with a certificate from disk: read it, then decide on it.
fn use_cert(info: &CertInfo) {
    let _ = (info.serial_hex(), info.lifetime(), info.is_expired_at(NOW));
    let again =
        CertInfo::from_pem(&certfleet_core::cert::der_to_pem(&info.der)).expect("our own PEM reads back");
    assert_eq!(&again, info);
    let facts = CertFacts::from_cert(info);
    let d =
        decide(&RenewalInput::new(&facts), &FixedClock::new(NOW)).expect("no renew_before_expiry, no error");
    let _ = d.to_string();
    let _ = certfleet_renew::names_mismatch(&info.names, &["example.com".to_string()]);
}

/// A certificate as DER, or a PEM chain (fullchain.pem, a CA's download).
pub fn cert(data: &[u8]) {
    if let Ok(info) = CertInfo::from_der(data) {
        use_cert(&info);
    }
    let Some(text) = text(data) else { return };
    if let Ok(ders) = certfleet_core::cert::pem_certificates(text) {
        for der in &ders {
            if let Ok(info) = CertInfo::from_der(der) {
                use_cert(&info);
            }
        }
        let chain = certfleet_acme::ChainOption {
            url: String::new(),
            pem: text.to_string(),
        };
        let _ = (chain.top_issuer_cn(), chain.issuer_cns());
    }
}

/// What is done with a key read from disk: its public parts, JWK, account id, ACME signer.
fn use_key(key: &PrivateKey) {
    let back = PrivateKey::from_pem(&key.to_pem()).expect("our own PEM reads back");
    assert_eq!((back.spec(), back.pkcs8_der()), (key.spec(), key.pkcs8_der()));
    let spki = key.public_key_spki_der();
    let _ = key.public_key_raw();
    let jwk = certfleet_store::jwk::key_to_jwk_json(key).expect("a loaded key exports as JWK");
    let jwk: serde_json::Value = serde_json::from_str(&jwk).expect("our JWK is JSON");
    let from_jwk = certfleet_store::jwk::key_from_jwk(&jwk).expect("our JWK reads back");
    assert_eq!(from_jwk.public_key_spki_der(), spki);
    assert_eq!(
        certfleet_store::jwk::account_id(&from_jwk),
        certfleet_store::jwk::account_id(key)
    );
    if let Ok(ak) = certfleet_acme::AccountKey::new(key.clone()) {
        let _ = (ak.jwk(), ak.thumbprint(), ak.alg());
    }
}

/// A private key as PKCS#8 DER, or PEM (PKCS#8, SEC1 or PKCS#1).
pub fn private_key(data: &[u8]) {
    if let Ok(key) = PrivateKey::from_pkcs8_der(data) {
        use_key(&key);
    }
    if let Some(text) = text(data) {
        match PrivateKey::from_pem(text) {
            Ok(key) => {
                use_key(&key);
                // The cheap check `renew` runs on every lineage agrees with the full parse.
                let spki = key.public_key_spki_der();
                assert!(matches!(certfleet_core::key_belongs_to(text, &spki), Ok(true)));
            }
            Err(_) => {
                let other = PrivateKey::generate(certfleet_core::KeySpec::EcdsaP256).expect("keygen");
                let _ = certfleet_core::key_belongs_to(text, &other.public_key_spki_der());
            }
        }
    }
}

/// An account directory: `private_key.json`, `regr.json` and `meta.json`, separated by NUL
/// bytes (a missing part is `{}`).
pub fn account_json(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0).map(|p| {
        if p.is_empty() {
            Ok(serde_json::json!({}))
        } else {
            serde_json::from_slice::<serde_json::Value>(p)
        }
    });
    let mut next = || parts.next().unwrap_or_else(|| Ok(serde_json::json!({})));
    let (Ok(key), Ok(regr), Ok(meta)) = (next(), next(), next()) else {
        return;
    };
    let dir = Path::new("/accounts/example/directory/0123");
    let Ok(acct) = certfleet_store::accounts::account_from_json(dir, "0123", &regr, &key, &meta) else {
        return;
    };
    assert_eq!(acct.id, certfleet_store::jwk::account_id(&acct.key));
    let _ = (acct.uri(), certfleet_store::jwk::key_to_jwk_json(&acct.key));
}

// ---- ACME ----

/// Any ACME answer body: tried as each object the client reads (directory, account, order,
/// authorization, challenge, problem, renewalInfo), then used as the client uses it.
pub fn acme_json(data: &[u8]) {
    use certfleet_acme::*;
    if let Ok(d) = serde_json::from_slice::<Directory>(data) {
        let _ = (d.meta.profiles.len(), d.renewal_info.is_some());
    }
    let _ = serde_json::from_slice::<AccountInfo>(data);
    if let Ok(o) = serde_json::from_slice::<OrderInfo>(data) {
        let _ = o.error.map(|p| p.to_string());
    }
    if let Ok(a) = serde_json::from_slice::<AuthorizationInfo>(data) {
        let _ = (a.ordered_name(), a.challenge("http-01").map(|c| c.status));
        let _ = a.failure().map(|(c, p)| format!("{} {p}", c.kind));
    }
    if let Ok(p) = serde_json::from_slice::<Problem>(data) {
        let _ = (p.kind(), p.short_type(), p.to_string());
    }
    if let Ok(info) = RenewalInfo::from_json(data, Some(std::time::Duration::from_secs(3600))) {
        use_ari(&info);
    }
}

/// A 90-day certificate 60 days into its life.
fn two_thirds_through() -> CertFacts {
    CertFacts {
        not_before: NOW - Duration::days(60),
        not_after: NOW + Duration::days(30),
        serial: vec![1, 2, 3],
        conf_mismatch: None,
        live_broken: None,
    }
}

/// What the renewer does with a renewalInfo answer: keep the window, then decide on it.
fn use_ari(info: &certfleet_acme::RenewalInfo) {
    let w = AriWindow::new(
        info.window_start,
        info.window_end,
        info.explanation_url.clone(),
        NOW,
        info.retry_after,
    );
    let facts = two_thirds_through();
    let mut state = LineageState::new("fuzz");
    state.record_ari(NOW, &facts.serial, w.clone());
    for next_run in [None, Some(NOW + Duration::hours(12))] {
        let input = RenewalInput {
            ari: Some(&w),
            state: Some(&state),
            next_run,
            ..RenewalInput::new(&facts)
        };
        let d = decide(&input, &FixedClock::new(NOW)).expect("no renew_before_expiry, no error");
        let _ = d.to_string();
        assert!(d.wake_at(NOW).is_some_and(|w| w >= NOW), "autorenew is on: {d}");
    }
}

/// A header value: `Retry-After` (both parsers) and `Link` (one value per line).
pub fn http_headers(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Some(d) = certfleet_acme::parse_retry_after(text) {
        // Callers add it to the current time (backoff, ARI poll): that must not overflow.
        let d = Duration::try_from(d).expect("a Retry-After delay fits a time::Duration");
        assert!(
            OffsetDateTime::now_utc().checked_add(d).is_some(),
            "Retry-After {d} overflows"
        );
        let info = certfleet_acme::RenewalInfo {
            window_start: NOW,
            window_end: NOW + Duration::days(1),
            explanation_url: None,
            retry_after: Some(d.unsigned_abs()),
        };
        use_ari(&info);
    }
    if let Some(t) = certfleet_renew::parse_retry_after(text, NOW) {
        let mut state = LineageState::new("fuzz");
        state.record_failure(NOW, "rateLimited", Some(t));
        let until = state.backoff_until(NOW).expect("a failure backs off");
        assert!(until > NOW && until >= t);
    }
    for rel in ["alternate", "index", "up"] {
        for target in certfleet_acme::parse_links(text.lines(), rel) {
            assert!(!target.contains(','), "one Link target per comma-separated entry");
        }
    }
}

// ---- DNS ----

/// `[n][n bytes]` from the front of `data`.
fn take_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    (rest.len() >= usize::from(n)).then(|| rest.split_at(usize::from(n)))
}

/// A DNS response to a TSIG-signed request, and the same bytes as an unsigned answer. Input:
/// the algorithm (index in certbot's list; 6 and up: unsigned), the time (4 bytes), the key's
/// secret and the request's MAC (each prefixed with its length), then the response.
pub fn dns_message(data: &[u8]) {
    let _ = dns_message_checked(data);
}

/// [`dns_message`]'s check of the signed answer: `None` when the input is too short or names
/// no algorithm.
pub fn dns_message_checked(data: &[u8]) -> Option<Result<(), String>> {
    use base64::Engine as _;
    use certfleet_solvers::dns::{Secret, TsigAlgorithm, parse_response};
    let (&alg, rest) = data.split_first()?;
    let (now, rest) = rest.split_first_chunk::<4>()?;
    let (secret, rest) = take_prefixed(rest)?;
    let (mac, response) = take_prefixed(rest)?;
    let now = u64::from(u32::from_be_bytes(*now));
    let _ = parse_response(response, None, &[], now);
    let alg = match alg {
        0 => TsigAlgorithm::HmacMd5,
        1 => TsigAlgorithm::HmacSha1,
        2 => TsigAlgorithm::HmacSha224,
        3 => TsigAlgorithm::HmacSha256,
        4 => TsigAlgorithm::HmacSha384,
        5 => TsigAlgorithm::HmacSha512,
        _ => return None,
    };
    let secret = Secret::new(base64::engine::general_purpose::STANDARD.encode(secret));
    Some(parse_response(response, Some(("certfleet-key", alg, &secret)), mac, now).map(drop))
}

// ---- fleet API ----

fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let json = serde_json::to_value(&v).expect("a request body serializes");
    let back: T = serde_json::from_value(json.clone()).expect("what we serialize reads back");
    assert_eq!(serde_json::to_value(&back).expect("serializes"), json);
}

/// The fleet API's request bodies (and the answers an agent reads), and enrollment tokens.
pub fn fleet_api(data: &[u8]) {
    use certfleet_fleet::proto::*;
    round_trips::<NewHost>(data);
    round_trips::<EnrollRequest>(data);
    round_trips::<CsrUpload>(data);
    round_trips::<InstallReport>(data);
    round_trips::<Assignment>(data);
    round_trips::<Delivery>(data);
    round_trips::<EnrollResponse>(data);
    round_trips::<ApiError>(data);
    round_trips::<NewCertificate>(data);
    if let Ok(c) = serde_json::from_slice::<NewCertificate>(data) {
        for id in &c.identifiers {
            if let Ok(Identifier::Dns(d)) = Identifier::dns(id) {
                assert_eq!(
                    Identifier::dns(&d),
                    Ok(Identifier::Dns(d.clone())),
                    "normalising is idempotent"
                );
            }
        }
    }
    let Some(text) = text(data) else { return };
    if let Ok(t) = certfleet_fleet::token::EnrollmentToken::decode(text) {
        assert_eq!(
            certfleet_fleet::token::EnrollmentToken::decode(&t.encode()),
            Ok(t)
        );
    }
}

// ---- renewal state ----

/// A lineage's renewal state file, then every decision and update made with it.
pub fn renew_state(data: &[u8]) {
    let Ok(mut state) = serde_json::from_slice::<LineageState>(data) else {
        return;
    };
    let json = serde_json::to_string(&state).expect("a loaded state saves");
    let back: LineageState = serde_json::from_str(&json).expect("a saved state loads");
    assert_eq!(back, state);
    let facts = two_thirds_through();
    let ari = state.ari_for(&facts.serial).map(|a| a.window.clone());
    for force in [false, true] {
        let input = RenewalInput {
            state: Some(&state),
            ari: ari.as_ref(),
            force,
            ..RenewalInput::new(&facts)
        };
        let d = decide(&input, &FixedClock::new(NOW)).expect("no renew_before_expiry, no error");
        let _ = d.to_string();
        if let Decision::InBackoff { retry_at, .. } = d {
            assert!(retry_at > NOW, "backoff in the past");
        }
        let _ = certfleet_renew::next_wakeup(NOW, [(&d, Some(&state))]);
    }
    let _ = (state.ari_poll_due(NOW, &facts.serial), state.backoff_until(NOW));
    state.record_failure(NOW, "again", None);
    assert!(state.backoff_until(NOW).is_some_and(|t| t > NOW));
    let _ = serde_json::to_string(&state).expect("saves");
}
