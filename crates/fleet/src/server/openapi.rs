//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes
//! and the wire types' `ToSchema` derives (so it cannot drift from the code), served without
//! authentication at [`OPENAPI_PATH`]: it describes the API, it holds nothing secret.

use axum::Json;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{alerts, api};
use crate::proto;

pub const OPENAPI_PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "certfleet fleet API",
        description = "What `certfleet fleet ...` (admin, bearer token), `certfleet agent` (TLS client \
certificate from the server's internal CA) and enrollment use. Timestamps are Unix seconds. Errors are \
ApiError bodies with a 4xx/5xx status."
    ),
    paths(
        api::add_host,
        api::list_hosts,
        api::remove_host,
        api::add_certificate,
        api::list_certificates,
        api::show_certificate,
        api::renew_certificate,
        api::enable_certificate,
        api::disable_certificate,
        api::import_certificate,
        api::assign,
        api::unassign,
        alerts::notify_test,
        api::enroll,
        api::agent_assignments,
        api::agent_certificate,
        api::agent_csr,
        api::agent_report,
    ),
    components(schemas(proto::ApiError)),
    modifiers(&Security),
    tags(
        (name = "hosts", description = "Admin: hosts and their enrollment"),
        (name = "certificates", description = "Admin: certificates, renewals, assignments"),
        (name = "notify", description = "Admin: alert channels"),
        (name = "agent", description = "Enrollment and the host agent"),
    )
)]
pub struct ApiDoc;

/// The two credential kinds: the admin token as a bearer token, the agent's client certificate.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (`admin.token` in the server's data dir on first start)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agent_certificate",
            SecurityScheme::MutualTls {
                description: Some("The TLS client certificate issued at enrollment".into()),
                extensions: None,
            },
        );
    }
}

/// `GET /api/openapi.json`.
pub async fn handler() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
