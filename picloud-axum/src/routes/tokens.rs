//! `/admin/tokens`: the caller's own API tokens. The secret is returned once,
//! at creation; only its hash is stored.

use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use crate::ApiState;
use crate::dto::{CreateTokenRequest, TokenCreatedDto, TokenDto};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

/// Issues a token for the caller, optionally limited to one app and a role.
#[utoipa::path(
    post, path = "/api/v1/admin/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Issued; the secret is shown once", body = TokenCreatedDto),
        (status = 403, description = "Scoped tokens cannot issue tokens, or no role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "Invalid name, max_role without app, or expires_in out of range", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_token(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Json(req): Json<CreateTokenRequest>,
) -> Result<(StatusCode, Json<TokenCreatedDto>), ApiError> {
    let issued = s
        .auth
        .issue_token(
            &p,
            &req.name,
            req.app.as_deref(),
            req.max_role,
            req.expires_in.map(std::time::Duration::from_secs),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreatedDto {
            token: issued.token,
            record: issued.record.into(),
        }),
    ))
}

/// The caller's tokens, newest first (no secrets).
#[utoipa::path(
    get, path = "/api/v1/admin/tokens", tag = "tokens",
    responses((status = 200, description = "The caller's tokens", body = [TokenDto])),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(s): State<ApiState>,
    Caller(p): Caller,
) -> Result<Json<Vec<TokenDto>>, ApiError> {
    let tokens = s.auth.list_tokens(&p).await?;
    Ok(Json(tokens.into_iter().map(Into::into).collect()))
}

/// Revokes one of the caller's tokens. Idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/tokens/{id}", tag = "tokens",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked (or never existed)")),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    s.auth.revoke_token(&p, id.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}
