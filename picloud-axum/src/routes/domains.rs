//! `/admin/apps/{id_or_slug}/domains`: an app's custom domains (`AppEdit`
//! to change, `AppView` to list; core decides), and `/internal/tls-ask`,
//! Caddy's on-demand TLS check, answered from memory.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use picloud_core::ports::Domain;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

/// A custom domain of an app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DomainDto {
    /// The hostname, lowercase.
    pub hostname: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl From<Domain> for DomainDto {
    fn from(d: Domain) -> Self {
        Self {
            hostname: d.hostname.to_string(),
            created_at: d.created_at,
        }
    }
}

/// `POST …/domains`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// A hostname such as `shop.example.com`: 2 or more labels of `a-z`,
    /// `0-9` and `-`, at most 253 characters; no port, no IP address, no
    /// trailing dot. Stored lowercased.
    #[schema(example = "shop.example.com", max_length = 253)]
    pub hostname: String,
}

/// Serves the app on a hostname of its own (`AppEdit`): once added, a
/// request with that `Host` runs the app's scripts at `/{script}[/…]`.
#[utoipa::path(
    post, path = "/api/v1/admin/apps/{id_or_slug}/domains", tag = "domains",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    request_body = AddDomain,
    responses(
        (status = 201, description = "Added", body = DomainDto),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "The hostname belongs to an app already", body = ErrorBody),
        (status = 422, description = "Not a valid hostname", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn add_domain(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    Json(body): Json<AddDomain>,
) -> Result<(StatusCode, Json<DomainDto>), ApiError> {
    let domain = s.domains.add(&p, &app, &body.hostname).await?;
    Ok((StatusCode::CREATED, Json(domain.into())))
}

/// The app's custom domains, by name (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/domains", tag = "domains",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The domains", body = [DomainDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_domains(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> Result<Json<Vec<DomainDto>>, ApiError> {
    let domains = s.domains.list(&p, &app).await?;
    Ok(Json(domains.into_iter().map(Into::into).collect()))
}

/// Stops serving the app on a hostname (`AppEdit`); idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/domains/{hostname}", tag = "domains",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("hostname" = String, Path, description = "The hostname", example = "shop.example.com"),
    ),
    responses(
        (status = 204, description = "Removed, or was not the app's"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_domain(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, hostname)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.domains.remove(&p, &app, &hostname).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The query of `/internal/tls-ask`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TlsAsk {
    /// The name a TLS client asked for.
    pub domain: String,
}

/// Caddy's on-demand TLS `ask`: 200 for a registered custom domain, 404
/// otherwise, so certificates are issued only for the apps' domains (not
/// for any name that happens to reach the server). Answered from memory.
#[utoipa::path(
    get, path = "/internal/tls-ask", tag = "domains",
    params(TlsAsk),
    responses(
        (status = 200, description = "A registered domain: issue its certificate"),
        (status = 400, description = "No domain given", body = ErrorBody),
        (status = 404, description = "Not a registered domain", body = ErrorBody),
    )
)]
pub async fn tls_ask(
    State(s): State<ApiState>,
    query: Result<Query<TlsAsk>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    if s.domains.tls_ask(&q.domain) {
        Ok(Json(
            serde_json::json!({ "domain": q.domain.to_ascii_lowercase() }),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not a domain of this instance",
        ))
    }
}
