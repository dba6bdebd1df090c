//! tls-alpn-01 end to end: Pebble's VA connects to the solver (its `tlsPort`), negotiates
//! `acme-tls/1` and checks the acmeIdentifier certificate, for a DNS name and an IP address
//! (RFC 8738: reverse-DNS SNI); then the certificate is issued. Driven with certfleet-acme
//! directly; the CLI wiring is tested in crates/cli.

use std::time::{Duration, SystemTime};

use certfleet_acme::{Account, AccountKey, AcmeClient, ClientOptions, NewAccount, NewOrder, OrderStatus};
use certfleet_core::{Identifier, KeySpec, PrivateKey};
use certfleet_solvers::tlsalpn01::TlsAlpn01;
use certfleet_solvers::{ChallengeTask, Solver};
use certfleet_testkit::Pebble;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_validates_tls_alpn_01_for_name_and_ip() {
    let solver = TlsAlpn01::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let pebble = Pebble::builder()
        .tls_port(solver.local_addr().port())
        .start()
        .unwrap();
    let client = AcmeClient::connect(
        &pebble.directory_url(),
        &ClientOptions {
            ca_bundle: Some(pebble.ca_bundle_path().to_path_buf()),
            timeout: Some(TIMEOUT),
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

    let ids = vec![
        Identifier::dns("alpn.example.test").unwrap(),
        Identifier::dns("www.alpn.example.test").unwrap(),
        Identifier::ip("127.0.0.1").unwrap(),
    ];
    solver.preflight(&ids).await.unwrap();
    let (order_url, order) = account
        .new_order(&NewOrder {
            identifiers: ids.clone(),
            ..NewOrder::default()
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    let mut challenges = Vec::new();
    for authz_url in &order.authorizations {
        let authz = account.authorization(authz_url).await.unwrap();
        let ch = authz
            .challenge("tls-alpn-01")
            .expect("tls-alpn-01 offered")
            .clone();
        let identifier = if authz.identifier.kind == "ip" {
            Identifier::ip(&authz.identifier.value).unwrap()
        } else {
            Identifier::dns(&authz.identifier.value).unwrap()
        };
        tasks.push(ChallengeTask {
            identifier,
            token: ch.token.clone(),
            key_authorization: account.key().key_authorization(&ch.token),
        });
        challenges.push((authz_url.clone(), ch.url));
    }
    solver.present(&tasks).await.unwrap();
    for (_, ch) in &challenges {
        account.respond(ch).await.unwrap();
    }
    for (authz_url, _) in &challenges {
        if let Err(e) = account.wait_authorization(authz_url, TIMEOUT).await {
            panic!("{e}\n--- pebble log ---\n{}", pebble.log());
        }
    }
    solver.cleanup(&tasks).await.unwrap();

    let order = account
        .wait_order(&order_url, &[OrderStatus::Ready], TIMEOUT)
        .await
        .unwrap();
    let key = PrivateKey::generate(KeySpec::EcdsaP256).unwrap();
    let order = account
        .finalize(&order_url, &order.finalize, &key.csr_der(&ids).unwrap(), TIMEOUT)
        .await
        .unwrap();
    let chains = account
        .download(order.certificate.as_deref().unwrap(), false)
        .await
        .unwrap();
    pebble
        .verify_chain(
            chains[0].pem.as_bytes(),
            &["alpn.example.test", "www.alpn.example.test", "127.0.0.1"],
            SystemTime::now(),
        )
        .unwrap();
}
