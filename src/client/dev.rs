//! `picloud dev`: run a script locally, with no server, in the same sandbox
//! and under the same default limits as a deployed one (compiled as a
//! deploy compiles it, with strict variables).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use picloud::executor::{Limits, RhaiExecutor, ScriptRequest, compile};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Failure, output};

/// `picloud dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The Rhai file.
    pub file: PathBuf,
    /// The request, as JSON: `{"method", "path", "query", "headers",
    /// "body"}`, every field optional (default: GET / with nothing else);
    /// `query` and `headers` are maps of strings, `body` a string (any other
    /// JSON value is sent as its JSON text). `@FILE` reads it from a file.
    #[arg(long, value_name = "JSON")]
    pub request: Option<String>,
}

/// The `--request` JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevRequest {
    /// The method (default `GET`).
    pub method: Option<String>,
    /// The path after the script's name (default `/`).
    pub path: Option<String>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers (names are lowercased).
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Option<Value>,
}

impl DevRequest {
    /// The request as the script sees it.
    pub fn into_script_request(self) -> ScriptRequest {
        let mut path = self.path.unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut request = ScriptRequest {
            method: self
                .method
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase(),
            path,
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body: match self.body {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
            },
            ..ScriptRequest::default()
        };
        request.set_query_pairs(self.query);
        request
    }
}

/// Where an error is: ` (line L, column C)`, or nothing.
fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

/// Compiles and runs the file once; prints the script's logs and its
/// response (status, headers, body), or its error (exit code 1).
pub async fn dev(args: DevArgs, json: bool) -> Result<(), Failure> {
    let source = std::fs::read(&args.file)
        .map_err(|e| Failure::error(format!("{}: {e}", args.file.display())))?;
    let source = String::from_utf8(source).map_err(|_| {
        Failure::error(format!(
            "{}: the script source must be UTF-8",
            args.file.display()
        ))
    })?;
    let request: DevRequest = match &args.request {
        None => DevRequest::default(),
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| Failure::usage(format!("--request {text}: {e}")))?,
                None => text.clone(),
            };
            serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("--request: not a request: {e}")))?
        }
    };
    let limits = Limits::default();
    let script = compile(&source, &limits).map_err(|e| {
        let place = match (e.line, e.column) {
            (Some(l), Some(c)) => format!(":{l}:{c}"),
            (Some(l), None) => format!(":{l}"),
            _ => String::new(),
        };
        Failure::error(format!(
            "{}{place}: compile error: {}",
            args.file.display(),
            e.message
        ))
    })?;
    let executor = RhaiExecutor::new(picloud::server::executor_config())
        .map_err(|e| Failure::error(format!("cannot start the executor: {e}")))?;
    let invocation = executor
        .execute("dev", &script, request.into_script_request(), &limits)
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    let duration_us = u64::try_from(invocation.duration.as_micros()).unwrap_or(u64::MAX);
    if json {
        let value = match &invocation.outcome {
            Ok(r) => {
                let mut headers = serde_json::Map::new();
                if let Some(ct) = &r.content_type {
                    headers.insert("content-type".into(), json!(ct));
                }
                for (k, v) in &r.headers {
                    headers.insert(k.clone(), json!(v));
                }
                json!({
                    "status": r.status,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&r.body),
                    "logs": invocation.logs,
                    "error": null,
                    "duration_us": duration_us,
                })
            }
            Err(e) => json!({
                "status": null,
                "logs": invocation.logs,
                "error": e.to_string(),
                "line": e.line(),
                "column": e.column(),
                "duration_us": duration_us,
            }),
        };
        output::json_pretty(&value);
    } else {
        let mut out = std::io::stdout().lock();
        if !invocation.logs.is_empty() {
            let _ = writeln!(out, "--- logs ---");
            for line in &invocation.logs {
                let _ = writeln!(out, "{line}");
            }
        }
        if let Ok(r) = &invocation.outcome {
            let _ = writeln!(
                out,
                "--- response ({:.1} ms) ---",
                duration_us as f64 / 1000.0
            );
            let _ = writeln!(out, "HTTP {}", r.status);
            if let Some(ct) = &r.content_type {
                let _ = writeln!(out, "content-type: {ct}");
            }
            for (k, v) in &r.headers {
                let _ = writeln!(out, "{k}: {v}");
            }
            let _ = writeln!(out);
            let _ = out.write_all(&r.body);
            if !r.body.is_empty() && !r.body.ends_with(b"\n") {
                let _ = writeln!(out);
            }
        }
        let _ = out.flush();
    }
    match invocation.outcome {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::error(format!(
            "{}: {e}{}",
            args.file.display(),
            at(e.line(), e.column())
        ))),
    }
}
