//! The directory object (RFC 8555 section 7.1.1), with ARI and profiles extensions.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    pub revoke_cert: Option<String>,
    pub key_change: Option<String>,
    /// RFC 9773: present when the CA offers renewal information.
    pub renewal_info: Option<String>,
    #[serde(default)]
    pub meta: DirectoryMeta,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryMeta {
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    #[serde(default)]
    pub caa_identities: Vec<String>,
    #[serde(default)]
    pub external_account_required: bool,
    /// draft-ietf-acme-profiles: name -> human description.
    #[serde(default)]
    pub profiles: BTreeMap<String, String>,
}
