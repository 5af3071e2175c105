//! The client commands of the `picloud` binary: log in to any PiCloud
//! server, manage apps and scripts, invoke them, follow their logs, push and
//! pull a project directory (`picloud.toml`), and run a script locally with
//! `dev`.
//!
//! Exit codes: 0 on success, 1 on an error from the server or a script
//! (its message on stderr as `picloud: …`), 2 for a usage error.

pub mod api;
pub mod config;
pub mod dev;
pub mod logs;
pub mod output;
pub mod project;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use api::{Api, app_path, seg};

/// Why a client command failed, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 1 for an error from the server or a script, 2 for a usage error.
    pub code: u8,
    /// The message, printed as `picloud: {message}`.
    pub message: String,
}

impl Failure {
    /// An error (exit code 1).
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

/// The client commands (they talk HTTP to a server, except `dev`).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in to a server and store its token in the config file (mode 0600).
    Login(LoginArgs),
    /// Forget the stored login.
    Logout,
    /// List, create and delete apps.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Deploy a script file as a new version (the same source again is
    /// "unchanged": no new version).
    Deploy(DeployArgs),
    /// List scripts, show their versions, roll back, delete.
    #[command(subcommand)]
    Scripts(ScriptsCommand),
    /// Call a script's endpoint and print its response body.
    Invoke(InvokeArgs),
    /// Show an app's recent invocation records, or follow them live.
    Logs(LogsArgs),
    /// Apply a project directory (picloud.toml) to the server: only
    /// changed scripts get a new version.
    Push(PushArgs),
    /// Write an app's live scripts and a picloud.toml into a directory.
    Pull(PullArgs),
    /// Run a script locally in the same sandbox, with no server.
    Dev(dev::DevArgs),
}

/// `picloud login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// Store this API token (pc_…) instead of logging in with a password;
    /// it is checked against the server first.
    #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
    pub token: Option<String>,
    /// The username (asked for when absent).
    #[arg(long, short)]
    pub username: Option<String>,
    /// Read the password from the first line of standard input (also what
    /// happens when standard input is not a terminal).
    #[arg(long)]
    pub password_stdin: bool,
}

/// `picloud apps …`.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// The apps you can see.
    List,
    /// Create an app.
    Create {
        /// Its slug (its URLs: /run/SLUG/…).
        slug: String,
        /// Its display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete an app with all its scripts, versions and logs.
    Delete {
        /// The app's slug or id.
        app: String,
    },
}

/// `picloud deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The Rhai file, sent as its bytes.
    pub file: PathBuf,
    /// The app's slug.
    #[arg(long, short)]
    pub app: String,
    /// The script's name (default: the file's name without `.rhai`).
    #[arg(long, short)]
    pub name: Option<String>,
}

/// `picloud scripts …`.
#[derive(Debug, Subcommand)]
pub enum ScriptsCommand {
    /// An app's scripts with their live versions.
    List {
        /// The app's slug.
        app: String,
    },
    /// A script's versions.
    Versions {
        /// The app's slug.
        app: String,
        /// The script's name.
        name: String,
    },
    /// Make an older version live again.
    Rollback {
        /// The app's slug.
        app: String,
        /// The script's name.
        name: String,
        /// The version to make live.
        version: u32,
    },
    /// Print one version's source (default: the live one).
    Source {
        /// The app's slug.
        app: String,
        /// The script's name.
        name: String,
        /// The version (default: the live one).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete a script with every version and its logs.
    Delete {
        /// The app's slug.
        app: String,
        /// The script's name.
        name: String,
    },
}

/// `picloud invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The app's slug.
    pub app: String,
    /// The script's name.
    pub script: String,
    /// The request body; `@FILE` reads a file, `@-` standard input. Makes
    /// the default method POST.
    #[arg(long, short)]
    pub data: Option<String>,
    /// A request header, `NAME: VALUE` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The method (default GET, or POST with --data).
    #[arg(long, short = 'X')]
    pub method: Option<String>,
    /// The path after the script's name, with any query: `/items/7?full=1`.
    #[arg(long, default_value = "")]
    pub path: String,
    /// Send the stored token (for a private script).
    #[arg(long)]
    pub auth: bool,
}

/// `picloud logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app's slug.
    pub app: String,
    /// Only this script's runs.
    #[arg(long, short)]
    pub script: Option<String>,
    /// Keep printing runs as they finish (Server-Sent Events), until
    /// interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// How many recent records (1–100; default 20). Not with --follow.
    #[arg(long, short = 'n', conflicts_with = "follow")]
    pub limit: Option<u32>,
    /// Only runs that answered this status. Not with --follow.
    #[arg(long, conflicts_with = "follow")]
    pub status: Option<u16>,
    /// Only runs started at or after this time (RFC 3339). Not with --follow.
    #[arg(long, conflicts_with = "follow")]
    pub since: Option<String>,
}

/// `picloud push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The project directory, holding picloud.toml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// `picloud pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The app's slug.
    #[arg(long, short)]
    pub app: String,
    /// The directory to write (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Runs a client command; `json` prints raw JSON instead of tables.
pub async fn run(command: ClientCommand, json: bool) -> Result<(), Failure> {
    match command {
        ClientCommand::Login(args) => login(args).await,
        ClientCommand::Logout => {
            if config::remove()? {
                eprintln!("Logged out.");
            } else {
                eprintln!("Not logged in.");
            }
            Ok(())
        }
        ClientCommand::Apps(c) => apps(c, json).await,
        ClientCommand::Deploy(args) => deploy(args, json).await,
        ClientCommand::Scripts(c) => scripts(c, json).await,
        ClientCommand::Invoke(args) => invoke(args, json).await,
        ClientCommand::Logs(args) => logs::logs(args, json).await,
        ClientCommand::Push(args) => project::push(args, json).await,
        ClientCommand::Pull(args) => project::pull(args, json).await,
        ClientCommand::Dev(args) => dev::dev(args, json).await,
    }
}

/// One line of standard input, without its line ending.
fn read_line(prompt: Option<&str>) -> Result<String, Failure> {
    if let Some(prompt) = prompt {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::error(format!("reading standard input: {e}")))?;
    if n == 0 {
        return Err(Failure::usage("standard input ended before the answer"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn login(args: LoginArgs) -> Result<(), Failure> {
    let url = api::check_url(&args.url)?;
    let (token, username) = match args.token {
        Some(token) => {
            let api = Api::new(&url, Some(token.clone()))?;
            // Check it before storing it.
            api.get("/api/v1/admin/apps").await?;
            (token, None)
        }
        None => {
            let interactive = std::io::stdin().is_terminal();
            let username = match args.username {
                Some(u) => u,
                None => read_line(interactive.then_some("Username: "))?,
            };
            let password = if interactive && !args.password_stdin {
                rpassword::prompt_password("Password: ")
                    .map_err(|e| Failure::error(format!("reading the password: {e}")))?
            } else {
                read_line(None)?
            };
            let api = Api::new(&url, None)?;
            let body = api
                .send_json(
                    Method::POST,
                    "/api/v1/auth/login",
                    &json!({ "username": username, "password": password }),
                )
                .await?;
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::error("the server's login answer has no token"))?;
            (token.to_owned(), Some(username))
        }
    };
    let path = config::store(&config::Config {
        url: Some(url.clone()),
        token: Some(token),
        username: username.clone(),
    })?;
    match username {
        Some(user) => eprintln!(
            "Logged in to {url} as {user} (saved in {}).",
            path.display()
        ),
        None => eprintln!(
            "Logged in to {url} with a token (saved in {}).",
            path.display()
        ),
    }
    Ok(())
}

async fn apps(command: AppsCommand, json: bool) -> Result<(), Failure> {
    let api = Api::from_login(true)?;
    match command {
        AppsCommand::List => {
            let apps = api.get("/api/v1/admin/apps").await?;
            if json {
                output::json_pretty(&apps);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = apps
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    vec![
                        output::field(a, "slug"),
                        output::field(a, "name"),
                        output::field(a, "my_role"),
                        output::short_time(a, "created_at"),
                    ]
                })
                .collect();
            output::table(&["SLUG", "NAME", "ROLE", "CREATED"], &rows);
        }
        AppsCommand::Create { slug, name } => {
            let name = name.unwrap_or_else(|| slug.clone());
            let app = api
                .send_json(
                    Method::POST,
                    "/api/v1/admin/apps",
                    &json!({ "slug": slug, "name": name }),
                )
                .await?;
            if json {
                output::json_pretty(&app);
            } else {
                println!("Created app {}.", output::field(&app, "slug"));
            }
        }
        AppsCommand::Delete { app } => {
            api.delete(&app_path(&app, "")).await?;
            if json {
                output::json_line(&json!({ "deleted": app }));
            } else {
                println!("Deleted app {app}.");
            }
        }
    }
    Ok(())
}

/// The script name of `file`: its name without the `.rhai` extension.
fn script_name_of(file: &std::path::Path) -> Result<String, Failure> {
    file.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Failure::usage(format!("{}: no script name; pass --name", file.display())))
}

/// Reads a file, with its name in the error.
fn read_file(file: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(file).map_err(|e| Failure::error(format!("{}: {e}", file.display())))
}

/// What one deploy did.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    /// The server's answer (a `DeployDto`).
    pub body: Value,
    /// Whether the script was created by this deploy (201).
    pub created: bool,
}

impl DeployOutcome {
    /// Whether the source was the live version's already.
    pub fn unchanged(&self) -> bool {
        self.body.get("unchanged").and_then(Value::as_bool) == Some(true)
    }

    /// A sentence for a person: `hello: version 2 deployed`.
    pub fn describe(&self) -> String {
        let name = output::field(&self.body, "name");
        let live = output::field(&self.body, "live_version");
        if self.unchanged() {
            format!("{name}: unchanged (live version {live})")
        } else if self.created {
            format!("{name}: version {live} deployed (new script)")
        } else {
            format!("{name}: version {live} deployed")
        }
    }
}

/// `PUT`s `source` as `app`'s script `name`. A compile error's message
/// reads `FILE:LINE:COLUMN: compile error: …`.
pub async fn deploy_source(
    api: &Api,
    app: &str,
    name: &str,
    source: Vec<u8>,
    file: &std::path::Path,
) -> Result<DeployOutcome, Failure> {
    let request = api
        .request(
            Method::PUT,
            &app_path(app, &format!("/scripts/{}", seg(name))),
        )
        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(source);
    let response = api.send(request).await?;
    let status = response.status();
    let body = api::read_json(response).await?;
    if status.is_success() {
        return Ok(DeployOutcome {
            body,
            created: status == reqwest::StatusCode::CREATED,
        });
    }
    let line = body.get("line").and_then(Value::as_u64);
    match (status, line) {
        (reqwest::StatusCode::UNPROCESSABLE_ENTITY, Some(line)) => {
            let error = output::field(&body, "error");
            let at = match body.get("column").and_then(Value::as_u64) {
                Some(column) => format!("{line}:{column}"),
                None => line.to_string(),
            };
            Err(Failure::error(format!("{}:{at}: {error}", file.display())))
        }
        _ => {
            let failure = api::server_failure(status, &body);
            Err(Failure::error(format!(
                "{}: {}",
                file.display(),
                failure.message
            )))
        }
    }
}

async fn deploy(args: DeployArgs, json: bool) -> Result<(), Failure> {
    let name = match args.name {
        Some(n) => n,
        None => script_name_of(&args.file)?,
    };
    let source = read_file(&args.file)?;
    let api = Api::from_login(true)?;
    let outcome = deploy_source(&api, &args.app, &name, source, &args.file).await?;
    if json {
        output::json_pretty(&outcome.body);
    } else {
        println!("{}", outcome.describe());
    }
    Ok(())
}

async fn scripts(command: ScriptsCommand, json: bool) -> Result<(), Failure> {
    let api = Api::from_login(true)?;
    match command {
        ScriptsCommand::List { app } => {
            let list = api.get(&app_path(&app, "/scripts")).await?;
            if json {
                output::json_pretty(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        output::field(s, "name"),
                        output::field(s, "live_version"),
                        output::field(s, "latest_version"),
                        output::field(s, "visibility"),
                        output::short_time(s, "updated_at"),
                    ]
                })
                .collect();
            output::table(&["NAME", "LIVE", "LATEST", "VISIBILITY", "UPDATED"], &rows);
        }
        ScriptsCommand::Versions { app, name } => {
            let detail = api
                .get(&app_path(&app, &format!("/scripts/{}", seg(&name))))
                .await?;
            if json {
                output::json_pretty(&detail);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = detail
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| {
                    let live = v.get("live").and_then(Value::as_bool) == Some(true);
                    vec![
                        output::field(v, "version"),
                        output::field(v, "size_bytes"),
                        output::short_time(v, "created_at"),
                        if live { "live".into() } else { String::new() },
                    ]
                })
                .collect();
            output::table(&["VERSION", "BYTES", "CREATED", "LIVE"], &rows);
        }
        ScriptsCommand::Rollback { app, name, version } => {
            let script = api
                .send_json(
                    Method::POST,
                    &app_path(&app, &format!("/scripts/{}/rollback", seg(&name))),
                    &json!({ "version": version }),
                )
                .await?;
            if json {
                output::json_pretty(&script);
            } else {
                println!(
                    "{}: live version {}",
                    output::field(&script, "name"),
                    output::field(&script, "live_version")
                );
            }
        }
        ScriptsCommand::Source { app, name, version } => {
            let version = match version {
                Some(v) => v.to_string(),
                None => {
                    let detail = api
                        .get(&app_path(&app, &format!("/scripts/{}", seg(&name))))
                        .await?;
                    output::field(&detail, "live_version")
                }
            };
            let v = api
                .get(&app_path(
                    &app,
                    &format!("/scripts/{}/versions/{version}", seg(&name)),
                ))
                .await?;
            if json {
                output::json_pretty(&v);
            } else {
                let source = v.get("source").and_then(Value::as_str).unwrap_or_default();
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(source.as_bytes());
                let _ = out.flush();
            }
        }
        ScriptsCommand::Delete { app, name } => {
            api.delete(&app_path(&app, &format!("/scripts/{}", seg(&name))))
                .await?;
            if json {
                output::json_line(&json!({ "deleted": name }));
            } else {
                println!("Deleted script {name} of {app}.");
            }
        }
    }
    Ok(())
}

/// The body of `--data`: the text itself, `@FILE`'s bytes, or `@-` for
/// standard input.
fn data_bytes(data: &str) -> Result<Vec<u8>, Failure> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::error(format!("reading standard input: {e}")))?;
            Ok(bytes)
        }
        Some(file) => read_file(std::path::Path::new(file)),
        None => Ok(data.as_bytes().to_vec()),
    }
}

async fn invoke(args: InvokeArgs, json: bool) -> Result<(), Failure> {
    let api = Api::from_login(false)?;
    if args.auth && !api.has_token() {
        return Err(Failure::error(
            "--auth: no token: run `picloud login URL`, or set PICLOUD_TOKEN",
        ));
    }
    let method = args
        .method
        .as_deref()
        .unwrap_or(if args.data.is_some() { "POST" } else { "GET" })
        .to_ascii_uppercase();
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::usage(format!("--method {method}: not an HTTP method")))?;
    let mut path = format!("/run/{}/{}", seg(&args.app), seg(&args.script));
    if !args.path.is_empty() {
        if !args.path.starts_with(['/', '?']) {
            path.push('/');
        }
        path.push_str(&args.path);
    }
    let mut request = if args.auth {
        api.request(method, &path)
    } else {
        api.bare(method, &path)
    };
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            Failure::usage(format!("--header {header:?}: expected `NAME: VALUE`"))
        })?;
        let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Failure::usage(format!("--header {header:?}: a bad header name")))?;
        let value = reqwest::header::HeaderValue::from_str(value.trim())
            .map_err(|_| Failure::usage(format!("--header {header:?}: a bad header value")))?;
        request = request.header(name, value);
    }
    if let Some(data) = &args.data {
        request = request.body(data_bytes(data)?);
    }
    let response = api.send(request).await?;
    let status = response.status();
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure::error(format!("reading the answer: {e}")))?;
    if json {
        output::json_pretty(&json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }));
    } else {
        eprintln!("HTTP {status}");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&body);
        if !body.is_empty() && !body.ends_with(b"\n") && std::io::stdout().is_terminal() {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
    if status.is_client_error() || status.is_server_error() {
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        let mut failure = api::server_failure(status, &value);
        if value.get("error").is_none() {
            failure.message = format!("HTTP {status}");
        }
        return Err(failure);
    }
    Ok(())
}
