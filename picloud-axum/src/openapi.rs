//! The OpenAPI document, served at `/api/v1/openapi.json`.
//!
//! Handlers carry their own `#[utoipa::path]` description. On top of those,
//! every operation documents the errors any request can get from the
//! transport itself: 400 (malformed), 401 (on secured routes), 413 (body too
//! large), 415 (not JSON), 422 (a JSON body of the wrong shape) and 500.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::error::ErrorBody;
use crate::routes;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "PiCloud API", description = "Self-hosted serverless: apps, members, users and tokens."),
    paths(
        routes::auth::login,
        routes::apps::list_apps,
        routes::apps::create_app,
        routes::apps::get_app,
        routes::members::list_members,
        routes::members::grant_member,
        routes::members::patch_member,
        routes::members::remove_member,
        routes::users::list_users,
        routes::users::create_user,
        routes::users::patch_user,
        routes::tokens::create_token,
        routes::tokens::list_tokens,
        routes::tokens::revoke_token,
        routes::scripts::deploy_script,
        routes::scripts::list_scripts,
        routes::scripts::get_script,
        routes::scripts::delete_script,
        routes::scripts::get_version,
        routes::scripts::rollback_script,
        routes::scripts::list_invocations,
        routes::scripts::get_limits,
        routes::scripts::put_limits,
        routes::scripts::get_usage,
    ),
    components(schemas(
        ErrorBody,
        dto::AppMemberDto, dto::GrantMemberRequest, dto::PatchMemberRequest,
        dto::UserDto, dto::CreateUserRequest, dto::PatchUserRequest,
        dto::AppDto, dto::CreateAppRequest,
        dto::LoginRequest, dto::LoginResponse,
        dto::CreateTokenRequest, dto::TokenDto, dto::TokenCreatedDto,
        routes::scripts::ScriptDto, routes::scripts::ScriptDetailDto, routes::scripts::VersionDto,
        routes::scripts::VersionSourceDto, routes::scripts::RollbackRequest,
        routes::scripts::InvocationDto, routes::scripts::CompileErrorBody, picloud_core::executor::Limits,
        routes::scripts::UsageDto,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "apps", description = "Apps and the caller's role on them"),
        (name = "members", description = "Explicit app memberships"),
        (name = "users", description = "The user directory"),
        (name = "tokens", description = "The caller's API tokens"),
        (name = "scripts", description = "Scripts: deploy, versions, rollback, delete, invocations, limits, storage usage"),
    )
)]
struct ApiDoc;

/// The complete OpenAPI document of the HTTP API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = op.request_body.is_some();
            let mut common = vec![
                ("400", "Malformed request (bad JSON, bad id in the path)"),
                ("500", "Internal error (details are logged, never sent)"),
            ];
            if secured {
                common.push((
                    "401",
                    "Missing, invalid or revoked token, or deactivated user",
                ));
            }
            if has_body {
                common.push(("413", "Request body too large"));
                common.push(("415", "Body is not `application/json`"));
                common.push(("422", "Body has the wrong shape or breaks a rule"));
            }
            for (status, description) in common {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description));
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_are_documented_from_the_core_type() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let limits = &doc["components"]["schemas"]["Limits"];
        let wall = &limits["properties"]["wall_clock_ms"];
        assert!(wall["type"] == "integer", "{limits}");
        assert!(limits["properties"]["max_operations"].is_object());
        assert!(limits["properties"].get("wall_clock").is_none());
        // Every field may be omitted (it takes its default).
        assert!(limits.get("required").is_none(), "{limits}");
    }

    #[test]
    fn storage_routes_and_the_quota_refusal_are_documented() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let script = &doc["paths"]["/api/v1/admin/apps/{id_or_slug}/scripts/{name}"];
        assert!(script["delete"]["responses"]["204"].is_object(), "{script}");
        let usage = &doc["paths"]["/api/v1/admin/apps/{id_or_slug}/usage"];
        assert!(usage["get"]["responses"]["200"].is_object(), "{usage}");
        // A quota refusal is a plain {"error"} body: the deploy's 422 schema
        // must not require the compile error's line and column.
        let body = &doc["components"]["schemas"]["CompileErrorBody"];
        assert_eq!(body["required"], serde_json::json!(["error"]), "{body}");
        let version = &doc["components"]["schemas"]["VersionDto"];
        assert!(version["properties"]["size_bytes"].is_object(), "{version}");
        assert!(version["properties"].get("source").is_none(), "{version}");
    }
}
