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

/// Whether the process is alive.
#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Object)),
)]
#[allow(dead_code)]
fn healthz() {}

/// Whether the server can serve: the store is reachable and the live
/// scripts are compiled.
#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "Warming up, or the store is unreachable", body = ErrorBody),
    ),
)]
#[allow(dead_code)]
fn readyz() {}

/// What a script endpoint answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum RunResponses {
    /// The script's answer (any status and content type it chose).
    #[response(status = 200)]
    Answer,
    /// The script returned nothing.
    #[response(status = 204)]
    Nothing,
    /// No such app or script.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A body that is not UTF-8.
    #[response(status = 400)]
    NotText(ErrorBody),
    /// A private script, called without a valid PiCloud token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// A private script, called with a token that lacks `AppView` on its app.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Body over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Script error: `error`, and `line` when known.
    #[response(status = 500)]
    ScriptError(ErrorBody),
    /// The pool is full: retry after `Retry-After`.
    #[response(status = 503)]
    Busy(ErrorBody),
    /// The script ran out of time (wall clock or operations).
    #[response(status = 504)]
    OutOfTime(ErrorBody),
}

/// Calls a script: no token needed, unless the script is private (then a
/// bearer token holding `AppView` on the app). The request (method, path,
/// query, headers, body) is the script's `request`; its value is the
/// answer: a string is 200 `text/plain`, `response(status, body[,
/// headers])` sets all three, unit is 204, anything else is 200 JSON.
#[utoipa::path(
    method(get, post, put, patch, delete), path = "/run/{app}/{script}", tag = "run",
    params(
        ("app" = String, Path, description = "App slug", example = "demo"),
        ("script" = String, Path, description = "Script name", example = "hello"),
    ),
    request_body(content = String, content_type = "*/*", description = "Any body, at most 1 MiB of UTF-8"),
    responses(RunResponses),
)]
#[allow(dead_code)]
fn run() {}

/// Calls a script with a path of its own: `request.path` is `/{rest}`.
#[utoipa::path(
    method(get, post, put, patch, delete), path = "/run/{app}/{script}/{rest}", tag = "run",
    params(
        ("app" = String, Path, description = "App slug", example = "demo"),
        ("script" = String, Path, description = "Script name", example = "hello"),
        ("rest" = String, Path, description = "The rest of the path, the script's `request.path`", example = "users/1"),
    ),
    request_body(content = String, content_type = "*/*", description = "Any body, at most 1 MiB of UTF-8"),
    responses(RunResponses),
)]
#[allow(dead_code)]
fn run_rest() {}

/// What `/async` answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum AsyncResponses {
    /// Stored: `{"job_id", "status": "queued"}`, with a `Location` at the job.
    #[response(status = 202)]
    Queued(#[to_schema] AsyncQueued),
    /// No such app or script.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A body that is not UTF-8.
    #[response(status = 400)]
    NotText(ErrorBody),
    /// A private script, called without a valid PiCloud token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// A private script, called with a token that lacks `AppView` on its app.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Body over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A bad `Idempotency-Key` or `picloud-max-attempts`.
    #[response(status = 422)]
    BadHeader(ErrorBody),
    /// The app's queue is full: retry after `Retry-After`; nothing stored.
    #[response(status = 429)]
    Full(ErrorBody),
}

/// `/async`'s answer.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
struct AsyncQueued {
    /// The job.
    job_id: uuid::Uuid,
    /// `queued`.
    status: String,
}

/// Stores the request as a job of the script and answers 202 once it is
/// durable; the job runs the script's live version, retried with backoff on
/// failure. Headers: `Idempotency-Key` (1–200 printable characters: the same
/// key on the same script within 24 h gives the first job), and
/// `picloud-max-attempts` (1–20, default 3).
#[utoipa::path(
    method(get, post, put, patch, delete), path = "/async/{app}/{script}", tag = "run",
    params(
        ("app" = String, Path, description = "App slug", example = "demo"),
        ("script" = String, Path, description = "Script name", example = "hello"),
        ("Idempotency-Key" = Option<String>, Header, description = "Deduplicates within 24 h"),
        ("picloud-max-attempts" = Option<u32>, Header, description = "Attempts, 1 to 20"),
    ),
    request_body(content = String, content_type = "*/*", description = "Any body, at most 1 MiB of UTF-8"),
    responses(AsyncResponses),
)]
#[allow(dead_code)]
fn run_async() {}

/// `/async` with a path of its own: `request.path` is `/{rest}`.
#[utoipa::path(
    method(get, post, put, patch, delete), path = "/async/{app}/{script}/{rest}", tag = "run",
    params(
        ("app" = String, Path, description = "App slug", example = "demo"),
        ("script" = String, Path, description = "Script name", example = "hello"),
        ("rest" = String, Path, description = "The rest of the path, the script's `request.path`", example = "users/1"),
        ("Idempotency-Key" = Option<String>, Header, description = "Deduplicates within 24 h"),
        ("picloud-max-attempts" = Option<u32>, Header, description = "Attempts, 1 to 20"),
    ),
    request_body(content = String, content_type = "*/*", description = "Any body, at most 1 MiB of UTF-8"),
    responses(AsyncResponses),
)]
#[allow(dead_code)]
fn run_async_rest() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "PiCloud API", description = "Self-hosted serverless: apps, members, users, tokens, scripts and their endpoints."),
    paths(
        healthz,
        readyz,
        run,
        run_rest,
        run_async,
        run_async_rest,
        routes::auth::sign_in,
        routes::auth::session,
        routes::auth::sign_out,
        routes::domains::add_domain,
        routes::domains::list_domains,
        routes::domains::delete_domain,
        routes::domains::tls_ask,
        routes::state::put_env,
        routes::state::list_env,
        routes::state::get_env,
        routes::state::delete_env,
        routes::state::list_kv,
        routes::state::get_kv,
        routes::state::put_kv,
        routes::state::delete_kv,
        routes::events::list_jobs,
        routes::events::get_job,
        routes::events::retry_job,
        routes::events::cancel_job,
        routes::events::delete_job,
        routes::events::put_schedule,
        routes::events::list_schedules,
        routes::events::get_schedule,
        routes::events::delete_schedule,
        routes::events::put_subscription,
        routes::events::list_subscriptions,
        routes::events::delete_subscription,
        routes::auth::login,
        routes::auth::change_password,
        routes::apps::list_apps,
        routes::apps::create_app,
        routes::apps::get_app,
        routes::apps::patch_app,
        routes::apps::delete_app,
        routes::apps::get_settings,
        routes::apps::patch_settings,
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
        routes::scripts::patch_script,
        routes::scripts::get_version,
        routes::scripts::rollback_script,
        routes::scripts::list_invocations,
        routes::scripts::list_app_invocations,
        routes::logs::stream_logs,
        routes::scripts::get_limits,
        routes::scripts::put_limits,
        routes::scripts::patch_limits,
        routes::scripts::get_usage,
        routes::cluster::get_cluster,
    ),
    components(schemas(
        ErrorBody,
        dto::AppMemberDto, dto::GrantMemberRequest, dto::PatchMemberRequest,
        dto::UserDto, dto::CreateUserRequest, dto::PatchUserRequest,
        dto::AppDto, dto::CreateAppRequest, dto::PatchAppRequest,
        routes::apps::AppSettingsDto, routes::apps::PatchSettingsRequest, picloud_core::domain::PublicErrors,
        dto::LoginRequest, dto::LoginResponse, dto::ChangePasswordRequest,
        dto::CreateTokenRequest, dto::TokenDto, dto::TokenCreatedDto,
        routes::scripts::ScriptDto, routes::scripts::DeployDto, routes::scripts::ScriptDetailDto, routes::scripts::VersionDto,
        routes::scripts::VersionSourceDto, routes::scripts::RollbackRequest,
        routes::scripts::InvocationDto, routes::scripts::CompileErrorBody, picloud_core::executor::Limits,
        routes::scripts::UsageDto, routes::scripts::PatchScriptRequest, picloud_core::domain::Visibility,
        routes::domains::DomainDto, routes::domains::AddDomain, crate::dto::SessionResponse,
        routes::state::EnvVarDto, routes::state::PutEnvVar, routes::state::KvEntryDto,
        routes::state::PutKv, routes::state::KvPageDto, routes::state::KvUsageDto,
        routes::events::JobDto, routes::events::AttemptDto, routes::events::JobResultDto,
        routes::events::StoredRequestDto, routes::events::PutSchedule, routes::events::ScheduleDto,
        routes::events::PutSubscription, routes::events::SubscriptionDto, AsyncQueued,
        routes::cluster::ClusterDto, routes::cluster::NodeDto, routes::cluster::NodeStatsDto, routes::cluster::QueueDto,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "apps", description = "Apps and the caller's role on them"),
        (name = "members", description = "Explicit app memberships"),
        (name = "users", description = "The user directory"),
        (name = "tokens", description = "The caller's API tokens"),
        (name = "scripts", description = "Scripts: deploy, versions, rollback, delete, invocations, limits, storage usage"),
        (name = "run", description = "The public script endpoints: /run answers, /async queues"),
        (name = "events", description = "Jobs (async requests, cron ticks, events), schedules and subscriptions"),
        (name = "domains", description = "Custom domains, and Caddy's on-demand TLS check"),
        (name = "state", description = "An app's environment variables, secrets and KV state"),
        (name = "probes", description = "Liveness and readiness"),
        (name = "cluster", description = "The nodes of the cluster and the job queue"),
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
    for (path, item) in doc.paths.paths.iter_mut() {
        // A script endpoint takes any body as it is: JSON rules do not apply.
        let json_api = path.starts_with("/api/");
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
            if has_body && json_api {
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
    use serde_json::Value;

    /// Every `{name}` of every path template is a declared path parameter,
    /// and every declared path parameter is in the template (a query
    /// parameter declared `in: path` breaks generated clients).
    #[test]
    fn path_parameters_match_their_templates() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(
            paths.contains_key("/run/{app}/{script}"),
            "{:?}",
            paths.keys()
        );
        assert!(paths.contains_key("/healthz") && paths.contains_key("/readyz"));
        for (template, item) in paths {
            let in_template: std::collections::BTreeSet<&str> = template
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let declared: std::collections::BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, in_template, "{method} {template}");
            }
        }
    }

    /// Whether `value` is of the JSON Schema `schema` as far as its type,
    /// enum and bounds say (what `default`s use).
    fn conforms(value: &Value, schema: &Value) -> bool {
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let typed = types.is_empty()
            || types.iter().any(|t| match *t {
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                "null" => value.is_null(),
                _ => false,
            });
        let listed = schema["enum"]
            .as_array()
            .is_none_or(|options| options.contains(value));
        let above = schema["minimum"]
            .as_f64()
            .is_none_or(|min| value.as_f64().is_none_or(|v| v >= min));
        let below = schema["maximum"]
            .as_f64()
            .is_none_or(|max| value.as_f64().is_none_or(|v| v <= max));
        typed && listed && above && below
    }

    fn check_defaults(at: &str, node: &Value, bad: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(default) = map.get("default")
                    && !conforms(default, node)
                {
                    bad.push(format!("{at}: default {default} vs {node}"));
                }
                for (key, child) in map {
                    check_defaults(&format!("{at}/{key}"), child, bad);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    check_defaults(&format!("{at}/{i}"), child, bad);
                }
            }
            _ => {}
        }
    }

    /// Every `default` in the document is a value of its own schema (the
    /// wall clock's was serde's `{"secs":1,"nanos":0}` for an integer).
    #[test]
    fn every_default_validates_against_its_schema() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let mut bad = Vec::new();
        check_defaults("", &doc, &mut bad);
        assert!(bad.is_empty(), "{bad:#?}");
        let wall = &doc["components"]["schemas"]["Limits"]["properties"]["wall_clock_ms"];
        assert_eq!(wall["default"], 1000, "{wall}");
        // The checker itself catches the old mistake.
        let mut caught = Vec::new();
        check_defaults(
            "",
            &serde_json::json!({"type": "integer", "default": {"secs": 1, "nanos": 0}}),
            &mut caught,
        );
        assert_eq!(caught.len(), 1);
    }

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
