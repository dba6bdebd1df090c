//! JSON objects of RFC 8555 section 7.1, as the CA sends them.

use serde::{Deserialize, Serialize};

use crate::error::Problem;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentifierJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl From<&certfleet_core::Identifier> for IdentifierJson {
    fn from(id: &certfleet_core::Identifier) -> Self {
        Self {
            kind: id.kind().to_string(),
            value: id.value(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub contact: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInfo {
    pub status: OrderStatus,
    #[serde(default)]
    pub identifiers: Vec<IdentifierJson>,
    #[serde(default)]
    pub authorizations: Vec<String>,
    pub finalize: String,
    pub certificate: Option<String>,
    pub error: Option<Problem>,
    pub profile: Option<String>,
    pub expires: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizationStatus {
    Pending,
    Valid,
    Invalid,
    Deactivated,
    Expired,
    Revoked,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationInfo {
    pub identifier: IdentifierJson,
    pub status: AuthorizationStatus,
    #[serde(default)]
    pub challenges: Vec<ChallengeInfo>,
    #[serde(default)]
    pub wildcard: bool,
}

impl AuthorizationInfo {
    /// The name as it was ordered (`*.example.com` for a wildcard authorization).
    pub fn ordered_name(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.identifier.value)
        } else {
            self.identifier.value.clone()
        }
    }

    pub fn challenge(&self, kind: &str) -> Option<&ChallengeInfo> {
        self.challenges.iter().find(|c| c.kind == kind)
    }

    /// The first problem among failed challenges, which says why validation failed.
    pub fn failure(&self) -> Option<(&ChallengeInfo, &Problem)> {
        self.challenges
            .iter()
            .find_map(|c| c.error.as_ref().map(|e| (c, e)))
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeStatus {
    Pending,
    Processing,
    Valid,
    Invalid,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChallengeInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub token: String,
    pub status: ChallengeStatus,
    pub error: Option<Problem>,
}
