//! The protocol crate against real CAs: Pebble for RFC 8555 (accounts, key rollover, EAB, key
//! types, IP identifiers, revocation) and acme2certifier for ARI (RFC 9773), which Pebble lacks.
//! http-01 answers come from a tiny responder in this file, so only `certfleet-acme` is under test.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use certfleet_acme::{
    Account, AccountKey, AcmeClient, AcmeError, ClientOptions, Eab, NewAccount, NewOrder, OrderStatus,
    ProblemKind, RevocationReason, cert_id, revoke_with_cert_key,
};
use certfleet_core::{CertInfo, Identifier, KeySpec, PrivateKey};
use certfleet_testkit::{Acme2Certifier, Pebble};

const TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(pebble: &Pebble) -> AcmeClient {
    let opts = ClientOptions {
        ca_bundle: Some(pebble.ca_bundle_path().to_path_buf()),
        timeout: None,
    };
    AcmeClient::connect(&pebble.directory_url(), &opts).await.unwrap()
}

fn new_account(contact: &[&str]) -> NewAccount {
    NewAccount {
        contact: contact.iter().map(|c| c.to_string()).collect(),
        terms_of_service_agreed: true,
        ..Default::default()
    }
}

/// Same private key, second handle (AccountKey is not Clone: it owns a signer).
fn twin(key: &AccountKey) -> AccountKey {
    AccountKey::new(PrivateKey::from_pem(&key.private_key().to_pem()).unwrap()).unwrap()
}

fn problem_kind(e: &AcmeError) -> ProblemKind {
    e.problem()
        .unwrap_or_else(|| panic!("expected a problem document, got {e}"))
        .kind()
}

/// Answers `GET /.well-known/acme-challenge/<token>` with the key authorization, on a plain
/// blocking listener (one request per connection, as the CA's VA sends them).
struct Http01 {
    tokens: Arc<Mutex<Vec<(String, String)>>>,
}

impl Http01 {
    fn serve(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let tokens: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let t = tokens.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Drain headers.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("");
                let token = path.rsplit('/').next().unwrap_or("");
                let body = t
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(tok, _)| tok == token)
                    .map(|(_, ka)| ka.clone());
                let resp = match body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = (&stream).write_all(resp.as_bytes());
            }
        });
        Self { tokens }
    }
}

/// A whole issuance over http-01: returns the certificate key and the full chain PEM.
async fn issue(account: &Account, http: &Http01, ids: Vec<Identifier>) -> (PrivateKey, String) {
    let (order_url, order) = account
        .new_order(&NewOrder {
            identifiers: ids.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Pending);
    for authz_url in &order.authorizations {
        let authz = account.authorization(authz_url).await.unwrap();
        let ch = authz.challenge("http-01").expect("http-01 offered");
        let ka = account.key().key_authorization(&ch.token);
        http.tokens.lock().unwrap().push((ch.token.clone(), ka));
        account.respond(&ch.url).await.unwrap();
        account.wait_authorization(authz_url, TIMEOUT).await.unwrap();
    }
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
    (key, chains[0].pem.clone())
}

fn leaf(fullchain: &str) -> CertInfo {
    CertInfo::from_der(&certfleet_core::cert::pem_certificates(fullchain).unwrap()[0]).unwrap()
}

#[test]
fn account_create_lookup_update_rollover_deactivate() {
    let pebble = Pebble::start().unwrap();
    runtime().block_on(async {
        let client = connect(&pebble).await;
        let key = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
        let old_key = twin(&key);

        let (mut account, info, created) = Account::register(&client, key, &new_account(&["a@example.test"]))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(info.status, "valid");
        assert_eq!(info.contact, ["mailto:a@example.test"]);

        // onlyReturnExisting finds the same account and creates nothing.
        let lookup = NewAccount {
            only_return_existing: true,
            ..Default::default()
        };
        let (found, _, created) = Account::register(&client, twin(account.key()), &lookup)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(found.url(), account.url());

        // ... and an unknown key gets accountDoesNotExist.
        let stranger = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
        let err = Account::register(&client, stranger, &lookup).await.unwrap_err();
        assert_eq!(problem_kind(&err), ProblemKind::AccountDoesNotExist, "{err}");

        let info = account
            .update_contact(&["b@example.test".into(), "mailto:c@example.test".into()])
            .await
            .unwrap();
        assert_eq!(info.contact, ["mailto:b@example.test", "mailto:c@example.test"]);
        assert_eq!(account.info().await.unwrap().contact, info.contact);

        // Key rollover: the new key works, the old one no longer does.
        let new_key = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
        let new_thumbprint = new_key.thumbprint();
        account.change_key(new_key).await.unwrap();
        assert_eq!(account.key().thumbprint(), new_thumbprint);
        assert_eq!(account.info().await.unwrap().status, "valid");
        let stale = Account::from_parts(&client, old_key, account.url().to_string());
        let err = stale.info().await.unwrap_err();
        assert!(err.problem().is_some(), "old key refused with a problem: {err}");
        let (found, _, _) = Account::register(&client, twin(account.key()), &lookup)
            .await
            .unwrap();
        assert_eq!(found.url(), account.url(), "the new key finds the same account");

        let info = account.deactivate().await.unwrap();
        assert_eq!(info.status, "deactivated");
        let err = account
            .new_order(&NewOrder {
                identifiers: vec![Identifier::dns("gone.example.test").unwrap()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(problem_kind(&err), ProblemKind::Unauthorized, "{err}");
    });
}

#[test]
fn eab_required_then_accepted() {
    let pebble = Pebble::builder().eab(true).start().unwrap();
    runtime().block_on(async {
        let client = connect(&pebble).await;
        assert!(client.directory().meta.external_account_required);

        let err = Account::register(
            &client,
            AccountKey::generate(KeySpec::EcdsaP256).unwrap(),
            &new_account(&[]),
        )
        .await
        .unwrap_err();
        assert_eq!(problem_kind(&err), ProblemKind::ExternalAccountRequired, "{err}");

        let (kid, hmac) = &pebble.eab_keys()[0];
        // A wrong MAC key is refused...
        let wrong = NewAccount {
            eab: Some(Eab::new(kid, "c2VjcmV0LWJ1dC13cm9uZy1rZXktZm9yLXRoaXMta2lk").unwrap()),
            ..new_account(&[])
        };
        let err = Account::register(&client, AccountKey::generate(KeySpec::EcdsaP256).unwrap(), &wrong)
            .await
            .unwrap_err();
        assert!(err.problem().is_some(), "{err}");

        // ... the right one binds (HS256 over the account JWK).
        let req = NewAccount {
            eab: Some(Eab::new(kid, hmac).unwrap()),
            ..new_account(&[])
        };
        let (account, info, created) =
            Account::register(&client, AccountKey::generate(KeySpec::EcdsaP256).unwrap(), &req)
                .await
                .unwrap();
        assert!(created);
        assert_eq!(info.status, "valid");
        assert!(account.info().await.is_ok());
    });
}

/// RS256 (certbot's RSA accounts) and ES384 sign every kind of request of a whole issuance.
#[test]
fn rs256_and_es384_account_keys_issue() {
    let pebble = Pebble::start().unwrap();
    let http = Http01::serve(SocketAddr::from(([127, 0, 0, 1], pebble.http_port())));
    runtime().block_on(async {
        let client = connect(&pebble).await;
        for (spec, alg) in [(KeySpec::Rsa(2048), "RS256"), (KeySpec::EcdsaP384, "ES384")] {
            let key = AccountKey::generate(spec).unwrap();
            assert_eq!(key.alg(), alg);
            let (account, _, created) = Account::register(&client, key, &new_account(&[])).await.unwrap();
            assert!(created, "{alg}");
            let name = format!("{}.example.test", alg.to_lowercase());
            let (_, chain) = issue(&account, &http, vec![Identifier::dns(&name).unwrap()]).await;
            pebble
                .verify_chain(chain.as_bytes(), &[&name], SystemTime::now())
                .unwrap();
        }
    });
}

/// RFC 8738: an IP identifier validated over http-01 at that address; the leaf has an IP SAN.
#[test]
fn ip_identifier_order() {
    let pebble = Pebble::start().unwrap();
    let http = Http01::serve(SocketAddr::from(([127, 0, 0, 1], pebble.http_port())));
    runtime().block_on(async {
        let client = connect(&pebble).await;
        let key = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
        let (account, _, _) = Account::register(&client, key, &new_account(&[])).await.unwrap();
        let ip = Identifier::ip("127.0.0.1").unwrap();
        let (order_url, order) = account
            .new_order(&NewOrder {
                identifiers: vec![ip.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(order.identifiers[0].kind, "ip");
        let authz = account.authorization(&order.authorizations[0]).await.unwrap();
        assert_eq!(authz.identifier.kind, "ip");
        assert_eq!(authz.identifier.value, "127.0.0.1");
        assert!(
            authz.challenge("dns-01").is_none(),
            "no dns-01 for IPs (RFC 8738 section 7)"
        );
        drop(order_url);
        let (_, chain) = issue(&account, &http, vec![ip]).await;
        pebble
            .verify_chain(chain.as_bytes(), &["127.0.0.1"], SystemTime::now())
            .unwrap();
    });
}

/// RFC 8555 section 7.6: the certificate's own key revokes it, no account involved.
#[test]
fn revoke_with_certificate_key() {
    let pebble = Pebble::start().unwrap();
    let http = Http01::serve(SocketAddr::from(([127, 0, 0, 1], pebble.http_port())));
    runtime().block_on(async {
        let client = connect(&pebble).await;
        let key = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
        let (account, _, _) = Account::register(&client, key, &new_account(&[])).await.unwrap();
        let (cert_key, chain) = issue(
            &account,
            &http,
            vec![Identifier::dns("rev.example.test").unwrap()],
        )
        .await;
        let info = leaf(&chain);
        assert_eq!(pebble.cert_status(&info.serial_hex()).unwrap()["Status"], "Valid");

        let signer = AccountKey::new(cert_key).unwrap();
        revoke_with_cert_key(&client, &signer, &info.der, Some(RevocationReason::KeyCompromise))
            .await
            .unwrap();
        let status = pebble.cert_status(&info.serial_hex()).unwrap();
        assert_eq!(status["Status"], "Revoked", "{status}");

        let err = revoke_with_cert_key(&client, &signer, &info.der, None)
            .await
            .unwrap_err();
        assert_eq!(problem_kind(&err), ProblemKind::AlreadyRevoked, "{err}");
    });
}

/// RFC 9773 against acme2certifier: the suggested window (its policy: from 85% of the lifetime
/// to expiry) and the Retry-After.
#[test]
fn renewal_info_from_acme2certifier() {
    let a2c = Acme2Certifier::builder()
        .validity_days(20)
        .retry_after_timeout(4321)
        .start()
        .unwrap();
    let opts = ClientOptions {
        ca_bundle: Some(a2c.ca_bundle_path().to_path_buf()),
        timeout: None,
    };
    let url = a2c.directory_url();
    let (info, chain) = a2c
        .in_netns(|| {
            // acme2certifier validates http-01 on port 80, inside its namespace.
            let http = Http01::serve(SocketAddr::from(([127, 0, 0, 1], 80)));
            runtime().block_on(async {
                let client = AcmeClient::connect(&url, &opts).await.unwrap();
                assert!(client.directory().renewal_info.is_some());
                let key = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
                let (account, _, _) = Account::register(&client, key, &new_account(&[])).await.unwrap();
                let (_, chain) = issue(
                    &account,
                    &http,
                    vec![Identifier::dns("ari.example.test").unwrap()],
                )
                .await;
                let cert = leaf(&chain);
                let id = cert_id(cert.authority_key_id.as_deref().expect("AKI"), &cert.serial);
                let info = Account::renewal_info(&client, &id).await.unwrap();
                (info, chain)
            })
        })
        .unwrap();
    let info = info.expect("the directory has renewalInfo");
    a2c.verify_chain(chain.as_bytes(), &["ari.example.test"], SystemTime::now())
        .unwrap();
    let cert = leaf(&chain);
    let near = |a: time::OffsetDateTime, b: time::OffsetDateTime| (a - b).abs() < time::Duration::minutes(10);
    assert!(near(info.window_end, cert.not_after), "{info:?} vs {cert:?}");
    let expected_start = cert.not_before + cert.lifetime() * 0.85;
    assert!(
        near(info.window_start, expected_start),
        "{info:?}, want start near {expected_start}"
    );
    assert_eq!(info.retry_after, Some(Duration::from_secs(4321)), "{info:?}");
}

/// A certificate the CA does not know: a problem document, not a parse error.
#[test]
fn renewal_info_unknown_certificate() {
    let a2c = Acme2Certifier::start().unwrap();
    let opts = ClientOptions {
        ca_bundle: Some(a2c.ca_bundle_path().to_path_buf()),
        timeout: None,
    };
    let url = a2c.directory_url();
    let result = a2c
        .in_netns(|| {
            runtime().block_on(async {
                let client = AcmeClient::connect(&url, &opts).await.unwrap();
                Account::renewal_info(&client, &cert_id(&[1; 20], &[0x01, 0x02])).await
            })
        })
        .unwrap();
    let err = result.unwrap_err();
    // acme2certifier answers 400 malformed ("failed to get renewal information").
    let problem = err
        .problem()
        .unwrap_or_else(|| panic!("a problem document: {err}"));
    assert_eq!(problem.status, Some(400), "{problem}");
}
