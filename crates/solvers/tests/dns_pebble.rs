//! dns-01 end to end: Pebble's VA validates, through a real BIND, the TXT records the
//! RFC 2136 solver put there (apex + wildcard at one name, a second sub-zone, and a CNAME
//! delegation), then issues the certificate. Driven with certfleet-acme directly; the CLI
//! wiring is tested separately.

use std::time::{Duration, SystemTime};

use certfleet_acme::{Account, AccountKey, AcmeClient, ClientOptions, NewAccount, NewOrder};
use certfleet_core::{Identifier, KeySpec, PrivateKey};
use certfleet_solvers::dns::{Dns01Config, Dns01Solver, ProviderConfig};
use certfleet_solvers::{ChallengeTask, Solver};
use certfleet_testkit::bind::Bind;
use certfleet_testkit::pebble::Pebble;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_wildcard_apex_alias_and_second_zone_via_rfc2136() {
    let bind = Bind::start(&["host1.example.test", "host2.example.test"]).unwrap();
    let pebble = Pebble::builder()
        .dns_server(bind.addr())
        .env("PEBBLE_VA_NOSLEEP", "1")
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("rfc2136.ini");
    bind.write_rfc2136_ini(&ini).unwrap();
    let mut cfg = Dns01Config::new(ProviderConfig::Rfc2136 { credentials: ini });
    cfg.resolver = Some(bind.addr());
    cfg.propagation_timeout = Duration::from_secs(20);
    cfg.state_dir = Some(dir.path().to_path_buf());
    let solver = Dns01Solver::from_config(&cfg).unwrap();

    let client = AcmeClient::connect(
        &pebble.directory_url(),
        &ClientOptions {
            ca_bundle: Some(pebble.ca_bundle_path().to_path_buf()),
            timeout: Some(Duration::from_secs(30)),
        },
    )
    .await
    .unwrap();
    let (account, _, _) = Account::register(
        &client,
        AccountKey::generate(KeySpec::EcdsaP256).unwrap(),
        &NewAccount {
            terms_of_service_agreed: true,
            ..NewAccount::default()
        },
    )
    .await
    .unwrap();

    let names = [
        "host1.example.test",
        "*.host1.example.test",
        "alias.example.test",
        "www.host2.example.test",
    ];
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::dns(n).unwrap()).collect();
    solver.preflight(&identifiers).await.unwrap();
    let (order_url, order) = account
        .new_order(&NewOrder {
            identifiers: identifiers.clone(),
            ..NewOrder::default()
        })
        .await
        .unwrap();

    let mut tasks = Vec::new();
    let mut challenges = Vec::new();
    for authz_url in &order.authorizations {
        let authz = account.authorization(authz_url).await.unwrap();
        let ch = authz.challenge("dns-01").expect("dns-01 offered").clone();
        tasks.push(ChallengeTask {
            identifier: Identifier::dns(&authz.ordered_name()).unwrap(),
            token: ch.token.clone(),
            key_authorization: account.key().key_authorization(&ch.token),
        });
        challenges.push((authz_url.clone(), ch.url));
    }

    solver.present(&tasks).await.unwrap();
    for (_, ch_url) in &challenges {
        account.respond(ch_url).await.unwrap();
    }
    let mut outcome = Ok(());
    for (authz_url, _) in &challenges {
        if let Err(e) = account
            .wait_authorization(authz_url, Duration::from_secs(30))
            .await
        {
            outcome = Err(e);
        }
    }
    solver.cleanup(&tasks).await.unwrap();
    outcome.unwrap_or_else(|e| panic!("validation failed: {e}\n{}", pebble.log()));

    for n in [
        "_acme-challenge.host1.example.test",
        "_acme-challenge.www.host2.example.test",
    ] {
        assert!(bind.txt(n).is_empty(), "{n} left behind");
    }

    let key = PrivateKey::generate(KeySpec::EcdsaP256).unwrap();
    let done = account
        .finalize(
            &order_url,
            &order.finalize,
            &key.csr_der(&identifiers).unwrap(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let chains = account
        .download(done.certificate.as_deref().unwrap(), false)
        .await
        .unwrap();
    pebble
        // A name under the wildcard stands in for it (webpki checks concrete names).
        .verify_chain(
            chains[0].pem.as_bytes(),
            &[
                "host1.example.test",
                "any.host1.example.test",
                "alias.example.test",
                "www.host2.example.test",
            ],
            SystemTime::now(),
        )
        .unwrap();
}
