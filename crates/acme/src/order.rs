//! Accounts, orders, authorizations, finalization, certificate download and revocation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::ari::RenewalInfo;
use crate::client::{AcmeClient, KeyId};
use crate::error::AcmeError;
use crate::jws::{AccountKey, Eab, b64};
use crate::poll::Backoff;
use crate::types::{
    AccountInfo, AuthorizationInfo, AuthorizationStatus, IdentifierJson, OrderInfo, OrderStatus,
};

/// What to send when creating (or finding) an account.
#[derive(Debug, Default, Clone)]
pub struct NewAccount {
    /// `mailto:` URIs (plain addresses are prefixed for you).
    pub contact: Vec<String>,
    pub terms_of_service_agreed: bool,
    /// Find the account for this key without creating one (RFC 8555 section 7.3.1).
    pub only_return_existing: bool,
    pub eab: Option<Eab>,
}

/// What to ask for in a new order.
#[derive(Debug, Default, Clone)]
pub struct NewOrder {
    pub identifiers: Vec<certfleet_core::Identifier>,
    /// draft-ietf-acme-profiles profile name.
    pub profile: Option<String>,
    /// RFC 9773 `replaces`: the CertID of the certificate this order renews.
    pub replaces: Option<String>,
}

/// One downloadable chain: the default one first, then alternates from `Link: rel="alternate"`.
#[derive(Debug, Clone)]
pub struct ChainOption {
    pub url: String,
    /// Leaf first, then intermediates, PEM.
    pub pem: String,
}

impl ChainOption {
    /// Issuer CN of the topmost certificate: what certbot's `--preferred-chain` matches.
    pub fn top_issuer_cn(&self) -> Option<String> {
        let ders = certfleet_core::cert::pem_certificates(&self.pem).ok()?;
        let top = certfleet_core::CertInfo::from_der(ders.last()?).ok()?;
        top.issuer_cn
    }

    /// Every issuer CN along the chain (certbot also accepts an intermediate's issuer).
    pub fn issuer_cns(&self) -> Vec<String> {
        certfleet_core::cert::pem_certificates(&self.pem)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| certfleet_core::CertInfo::from_der(d).ok()?.issuer_cn)
            .collect()
    }
}

/// RFC 5280 revocation reasons ACME accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    Unspecified = 0,
    KeyCompromise = 1,
    AffiliationChanged = 3,
    Superseded = 4,
    CessationOfOperation = 5,
}

impl std::str::FromStr for RevocationReason {
    type Err = String;
    /// certbot's names for `--reason`.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "unspecified" => Self::Unspecified,
            "keycompromise" | "keyCompromise" => Self::KeyCompromise,
            "affiliationchanged" | "affiliationChanged" => Self::AffiliationChanged,
            "superseded" => Self::Superseded,
            "cessationofoperation" | "cessationOfOperation" => Self::CessationOfOperation,
            other => {
                return Err(format!(
                    "unknown revocation reason {other:?} (use unspecified, keycompromise, affiliationchanged, superseded or cessationofoperation)"
                ));
            }
        })
    }
}

/// An account at one CA: the client, the key and the account URL (`kid`).
#[derive(Clone)]
pub struct Account {
    client: AcmeClient,
    key: Arc<AccountKey>,
    url: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Account({})", self.url)
    }
}

fn mailto(contact: &[String]) -> Vec<String> {
    contact
        .iter()
        .map(|c| {
            if c.contains(':') {
                c.clone()
            } else {
                format!("mailto:{c}")
            }
        })
        .collect()
}

impl Account {
    /// Create an account, or with `only_return_existing` find the one for this key.
    /// Returns the account, its state, and whether the CA created it just now.
    pub async fn register(
        client: &AcmeClient,
        key: AccountKey,
        req: &NewAccount,
    ) -> Result<(Self, AccountInfo, bool), AcmeError> {
        let url = client.directory().new_account.clone();
        let mut payload = json!({});
        if req.only_return_existing {
            payload["onlyReturnExisting"] = json!(true);
        } else {
            if !req.contact.is_empty() {
                payload["contact"] = json!(mailto(&req.contact));
            }
            if req.terms_of_service_agreed {
                payload["termsOfServiceAgreed"] = json!(true);
            }
            if let Some(eab) = &req.eab {
                payload["externalAccountBinding"] = eab.binding(&key.jwk(), &url);
            }
        }
        let reply = client.post(&url, &key, KeyId::Jwk, Some(&payload), None).await?;
        let created = reply.status.as_u16() == 201;
        let account_url = reply.location().ok_or_else(|| AcmeError::Protocol {
            url: url.clone(),
            what: "no Location header for the account".into(),
        })?;
        let info: AccountInfo = reply.json(&url).unwrap_or_default();
        Ok((
            Self {
                client: client.clone(),
                key: Arc::new(key),
                url: account_url,
            },
            info,
            created,
        ))
    }

    /// Use a known account URL without asking the CA (the usual case: it is on disk).
    pub fn from_parts(client: &AcmeClient, key: AccountKey, url: String) -> Self {
        Self {
            client: client.clone(),
            key: Arc::new(key),
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    pub fn client(&self) -> &AcmeClient {
        &self.client
    }

    async fn post(&self, url: &str, payload: Option<&Value>) -> Result<crate::client::Reply, AcmeError> {
        self.client
            .post(url, &self.key, KeyId::Kid(&self.url), payload, None)
            .await
    }

    pub async fn info(&self) -> Result<AccountInfo, AcmeError> {
        self.post(&self.url, None).await?.json(&self.url)
    }

    pub async fn update_contact(&self, contact: &[String]) -> Result<AccountInfo, AcmeError> {
        self.post(&self.url, Some(&json!({"contact": mailto(contact)})))
            .await?
            .json(&self.url)
    }

    pub async fn deactivate(&self) -> Result<AccountInfo, AcmeError> {
        self.post(&self.url, Some(&json!({"status": "deactivated"})))
            .await?
            .json(&self.url)
    }

    /// Account key rollover (RFC 8555 section 7.3.5). On success this handle uses the new key.
    pub async fn change_key(&mut self, new_key: AccountKey) -> Result<(), AcmeError> {
        let url = self
            .client
            .directory()
            .key_change
            .clone()
            .ok_or_else(|| AcmeError::Protocol {
                url: self.client.directory_url().to_string(),
                what: "the CA does not support key rollover (no keyChange in its directory)".into(),
            })?;
        let inner = new_key.jws(
            json!({"alg": new_key.alg(), "jwk": new_key.jwk(), "url": url}),
            Some(&json!({"account": self.url, "oldKey": self.key.jwk()})),
        )?;
        self.post(&url, Some(&inner)).await?;
        self.key = Arc::new(new_key);
        Ok(())
    }

    pub async fn new_order(&self, req: &NewOrder) -> Result<(String, OrderInfo), AcmeError> {
        let url = self.client.directory().new_order.clone();
        let ids: Vec<IdentifierJson> = req.identifiers.iter().map(IdentifierJson::from).collect();
        let mut payload = json!({"identifiers": ids});
        if let Some(p) = &req.profile {
            payload["profile"] = json!(p);
        }
        if let Some(r) = &req.replaces {
            payload["replaces"] = json!(r);
        }
        let reply = self.post(&url, Some(&payload)).await?;
        let order_url = reply.location().ok_or_else(|| AcmeError::Protocol {
            url: url.clone(),
            what: "no Location header for the order".into(),
        })?;
        Ok((order_url, reply.json(&url)?))
    }

    pub async fn order(&self, url: &str) -> Result<(OrderInfo, Option<Duration>), AcmeError> {
        let reply = self.post(url, None).await?;
        Ok((reply.json(url)?, reply.retry_after()))
    }

    pub async fn authorization(&self, url: &str) -> Result<AuthorizationInfo, AcmeError> {
        self.post(url, None).await?.json(url)
    }

    /// Tell the CA the challenge is ready to be validated.
    pub async fn respond(&self, challenge_url: &str) -> Result<(), AcmeError> {
        self.post(challenge_url, Some(&json!({}))).await.map(drop)
    }

    /// Poll an authorization until it is valid; an invalid one becomes `AuthorizationFailed`
    /// with the challenge's problem (what the CA saw).
    pub async fn wait_authorization(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<AuthorizationInfo, AcmeError> {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            let reply = self.post(url, None).await?;
            let authz: AuthorizationInfo = reply.json(url)?;
            match authz.status {
                AuthorizationStatus::Valid => return Ok(authz),
                AuthorizationStatus::Pending => {}
                _ => {
                    let (kind, problem) = match authz.failure() {
                        Some((c, p)) => (c.kind.clone(), p.clone()),
                        None => (
                            String::new(),
                            crate::Problem {
                                kind: "urn:ietf:params:acme:error:unauthorized".into(),
                                detail: format!("authorization is {:?}", authz.status),
                                status: None,
                                subproblems: vec![],
                                identifier: None,
                                instance: None,
                            },
                        ),
                    };
                    return Err(AcmeError::AuthorizationFailed {
                        identifier: authz.ordered_name(),
                        challenge: kind,
                        problem: Box::new(problem),
                    });
                }
            }
            if start.elapsed() > timeout {
                return Err(AcmeError::Timeout {
                    what: format!("validation of {}", authz.ordered_name()),
                    waited: timeout,
                    status: format!("{:?}", authz.status),
                });
            }
            tokio::time::sleep(backoff.next_delay(reply.retry_after())).await;
        }
    }

    /// Poll an order until its status is one of `want` (or invalid, an error).
    pub async fn wait_order(
        &self,
        url: &str,
        want: &[OrderStatus],
        timeout: Duration,
    ) -> Result<OrderInfo, AcmeError> {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            let (order, retry_after) = self.order(url).await?;
            if want.contains(&order.status) {
                return Ok(order);
            }
            if order.status == OrderStatus::Invalid {
                return Err(AcmeError::OrderInvalid(
                    order
                        .error
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "no reason given".into()),
                ));
            }
            if start.elapsed() > timeout {
                return Err(AcmeError::Timeout {
                    what: "the order".into(),
                    waited: timeout,
                    status: format!("{:?}", order.status),
                });
            }
            tokio::time::sleep(backoff.next_delay(retry_after)).await;
        }
    }

    /// Send the CSR and wait for the certificate URL.
    pub async fn finalize(
        &self,
        order_url: &str,
        finalize_url: &str,
        csr_der: &[u8],
        timeout: Duration,
    ) -> Result<OrderInfo, AcmeError> {
        let reply = self
            .post(finalize_url, Some(&json!({"csr": b64(csr_der)})))
            .await?;
        let order: OrderInfo = reply.json(finalize_url)?;
        if order.status == OrderStatus::Valid && order.certificate.is_some() {
            return Ok(order);
        }
        self.wait_order(order_url, &[OrderStatus::Valid], timeout).await
    }

    /// Download the certificate chain and, when `alternates` is set, every alternate chain.
    pub async fn download(&self, cert_url: &str, alternates: bool) -> Result<Vec<ChainOption>, AcmeError> {
        let reply = self.fetch_chain(cert_url).await?;
        let mut chains = vec![ChainOption {
            url: cert_url.to_string(),
            pem: String::from_utf8_lossy(&reply.body).into_owned(),
        }];
        if alternates {
            for url in reply.links("alternate") {
                let alt = self.fetch_chain(&url).await?;
                chains.push(ChainOption {
                    url,
                    pem: String::from_utf8_lossy(&alt.body).into_owned(),
                });
            }
        }
        Ok(chains)
    }

    async fn fetch_chain(&self, url: &str) -> Result<crate::client::Reply, AcmeError> {
        self.client
            .post(
                url,
                &self.key,
                KeyId::Kid(&self.url),
                None,
                Some("application/pem-certificate-chain"),
            )
            .await
    }

    /// Revoke a certificate this account holds (or is authorized for).
    pub async fn revoke(&self, cert_der: &[u8], reason: Option<RevocationReason>) -> Result<(), AcmeError> {
        let url = revoke_url(&self.client)?;
        self.post(&url, Some(&revoke_payload(cert_der, reason)))
            .await
            .map(drop)
    }

    /// RFC 9773: the CA's suggested renewal window for a certificate.
    pub async fn renewal_info(client: &AcmeClient, cert_id: &str) -> Result<Option<RenewalInfo>, AcmeError> {
        let Some(base) = client.directory().renewal_info.clone() else {
            return Ok(None);
        };
        let url = format!("{}/{}", base.trim_end_matches('/'), cert_id);
        let reply = client.get(&url).await?;
        RenewalInfo::from_json(&reply.body, reply.retry_after())
            .map(Some)
            .map_err(|what| AcmeError::Protocol { url, what })
    }
}

/// Revoke with the certificate's own private key (no account needed), RFC 8555 section 7.6.
pub async fn revoke_with_cert_key(
    client: &AcmeClient,
    cert_key: &AccountKey,
    cert_der: &[u8],
    reason: Option<RevocationReason>,
) -> Result<(), AcmeError> {
    let url = revoke_url(client)?;
    client
        .post(
            &url,
            cert_key,
            KeyId::Jwk,
            Some(&revoke_payload(cert_der, reason)),
            None,
        )
        .await
        .map(drop)
}

fn revoke_url(client: &AcmeClient) -> Result<String, AcmeError> {
    client
        .directory()
        .revoke_cert
        .clone()
        .ok_or_else(|| AcmeError::Protocol {
            url: client.directory_url().to_string(),
            what: "the CA does not support revocation (no revokeCert in its directory)".into(),
        })
}

fn revoke_payload(cert_der: &[u8], reason: Option<RevocationReason>) -> Value {
    let mut payload = json!({"certificate": b64(cert_der)});
    if let Some(r) = reason {
        payload["reason"] = json!(r as u8);
    }
    payload
}
