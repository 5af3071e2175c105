//! `picloud push` and `picloud pull`: a project directory described by its
//! `picloud.toml`, applied to the server idempotently, and written back
//! from it.
//!
//! ```toml
//! app = "shop"            # the app's slug (created when missing)
//! name = "The shop"       # optional: its display name when created
//!
//! [scripts]               # script name = file, relative to the directory
//! hello = "scripts/hello.rhai"
//!
//! [limits]                # optional: PATCH …/limits with these fields
//! wall_clock_ms = 2000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::{Api, app_path, seg};
use super::{Failure, PullArgs, PushArgs, deploy_source, output};

/// The project file's name.
pub const PROJECT_FILE: &str = "picloud.toml";

/// A `picloud.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// The app's slug.
    pub app: String,
    /// The app's display name, used when push creates it (default: the slug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Script name → file, relative to the project directory.
    #[serde(default)]
    pub scripts: BTreeMap<String, PathBuf>,
    /// Limits to set (`PATCH …/limits`); the others keep their values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<toml::Table>,
}

/// Reads `dir/picloud.toml`.
pub fn load(dir: &Path) -> Result<Project, Failure> {
    let path = dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::error(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Failure::error(format!("{}: {e}", path.display())))
}

/// Whether the app exists (an error for anything but 404).
async fn app_exists(api: &Api, app: &str) -> Result<bool, Failure> {
    let response = api
        .send(api.request(Method::GET, &app_path(app, "")))
        .await?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(false);
    }
    let body = super::api::read_json(response).await?;
    if status.is_success() {
        Ok(true)
    } else {
        Err(super::api::server_failure(status, &body))
    }
}

/// Applies the project: creates the app if missing, sets `[limits]`,
/// deploys every script (the server keeps an identical source as
/// "unchanged": no new version). Every script is tried; any failure makes
/// the exit code 1.
pub async fn push(args: PushArgs, json: bool) -> Result<(), Failure> {
    let project = load(&args.dir)?;
    let api = Api::from_login(true)?;
    let app = project.app.as_str();
    let mut report = json!({ "app": app, "created_app": false, "scripts": [] });
    if !app_exists(&api, app).await? {
        let name = project.name.clone().unwrap_or_else(|| app.to_owned());
        api.send_json(
            Method::POST,
            "/api/v1/admin/apps",
            &json!({ "slug": app, "name": name }),
        )
        .await?;
        report["created_app"] = json!(true);
        if !json {
            println!("Created app {app}.");
        }
    }
    // Limits first: a deploy compiles under the app's limits.
    if let Some(limits) = &project.limits {
        let body = serde_json::to_value(limits).map_err(|e| Failure::error(e.to_string()))?;
        let now = api
            .send_json(Method::PATCH, &app_path(app, "/limits"), &body)
            .await
            .map_err(|f| Failure::error(format!("[limits]: {}", f.message)))?;
        report["limits"] = now;
        if !json {
            println!(
                "Limits set ({}).",
                limits.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut failed = Vec::new();
    for (name, file) in &project.scripts {
        let path = args.dir.join(file);
        let result = match std::fs::read(&path) {
            Ok(source) => deploy_source(&api, app, name, source, &path).await,
            Err(e) => Err(Failure::error(format!("{}: {e}", path.display()))),
        };
        match result {
            Ok(outcome) => {
                if !json {
                    println!("{}", outcome.describe());
                }
                report["scripts"]
                    .as_array_mut()
                    .expect("an array")
                    .push(json!({
                        "name": name,
                        "live_version": outcome.body.get("live_version"),
                        "unchanged": outcome.unchanged(),
                        "created": outcome.created,
                    }));
            }
            Err(f) => {
                eprintln!("picloud: {}", f.message);
                report["scripts"]
                    .as_array_mut()
                    .expect("an array")
                    .push(json!({ "name": name, "error": f.message }));
                failed.push(name.clone());
            }
        }
    }
    if json {
        output::json_pretty(&report);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::error(format!(
            "{} of {} scripts not deployed: {}",
            failed.len(),
            project.scripts.len(),
            failed.join(", ")
        )))
    }
}

/// The limits of `current` (the server's effective limits) that differ
/// from this build's defaults: pinning the defaults would keep them when
/// the server's change.
fn changed_limits(current: &Value) -> Result<Option<toml::Table>, Failure> {
    let defaults = serde_json::to_value(picloud::Limits::default())
        .map_err(|e| Failure::error(e.to_string()))?;
    let mut table = toml::Table::new();
    for (key, value) in current.as_object().into_iter().flatten() {
        if defaults.get(key) != Some(value) {
            let value = toml::Value::try_from(value)
                .map_err(|e| Failure::error(format!("limit {key}: {e}")))?;
            table.insert(key.clone(), value);
        }
    }
    Ok((!table.is_empty()).then_some(table))
}

/// Writes the app's live scripts to `DIR/scripts/NAME.rhai` and a
/// `picloud.toml` naming them (and the limits that differ from the
/// defaults): pushing it back makes no new version. Refuses a directory
/// whose `picloud.toml` names another app.
pub async fn pull(args: PullArgs, json: bool) -> Result<(), Failure> {
    let project_path = args.dir.join(PROJECT_FILE);
    if project_path.exists() {
        let existing = load(&args.dir)?;
        if existing.app != args.app {
            return Err(Failure::error(format!(
                "{} is the project of app {}, not {}: pull into another directory",
                project_path.display(),
                existing.app,
                args.app
            )));
        }
    }
    let api = Api::from_login(true)?;
    let app = api.get(&app_path(&args.app, "")).await?;
    let scripts = api.get(&app_path(&args.app, "/scripts")).await?;
    let limits = api.get(&app_path(&args.app, "/limits")).await?;
    let io = |path: &Path, e: std::io::Error| Failure::error(format!("{}: {e}", path.display()));
    let scripts_dir = args.dir.join("scripts");
    std::fs::create_dir_all(&scripts_dir).map_err(|e| io(&scripts_dir, e))?;
    let mut project = Project {
        app: args.app.clone(),
        name: app
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| *n != args.app)
            .map(str::to_owned),
        scripts: BTreeMap::new(),
        limits: changed_limits(&limits)?,
    };
    let mut written = Vec::new();
    for script in scripts.as_array().into_iter().flatten() {
        let name = output::field(script, "name");
        let live = output::field(script, "live_version");
        let version = api
            .get(&app_path(
                &args.app,
                &format!("/scripts/{}/versions/{live}", seg(&name)),
            ))
            .await?;
        let source = version
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let relative = PathBuf::from("scripts").join(format!("{name}.rhai"));
        let path = args.dir.join(&relative);
        std::fs::write(&path, source).map_err(|e| io(&path, e))?;
        if !json {
            println!("{name}: version {live} -> {}", path.display());
        }
        written.push(json!({ "name": name, "version": version.get("version"), "file": relative }));
        project.scripts.insert(name, relative);
    }
    let text = toml::to_string(&project).map_err(|e| Failure::error(e.to_string()))?;
    std::fs::write(&project_path, text).map_err(|e| io(&project_path, e))?;
    if json {
        output::json_pretty(&json!({
            "app": args.app,
            "project": project_path,
            "scripts": written,
        }));
    } else {
        println!("Wrote {}.", project_path.display());
    }
    Ok(())
}
