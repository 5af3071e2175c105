//! `picloud logs`: an app's recent invocation records, or (`--follow`) its
//! live stream of Server-Sent Events, one record per event.

use reqwest::Method;
use serde_json::Value;

use super::api::{self, Api, app_path};
use super::{Failure, LogsArgs, output};

/// Prints the records, oldest first; with `--follow`, each run as it
/// finishes, until the stream ends or the command is interrupted.
pub async fn logs(args: LogsArgs, json: bool) -> Result<(), Failure> {
    let api = Api::from_login(true)?;
    if args.follow {
        return follow(&api, &args.app, args.script, json).await;
    }
    let query = api::query(&[
        ("script", args.script),
        ("status", args.status.map(|s| s.to_string())),
        ("since", args.since),
        ("limit", args.limit.map(|l| l.to_string())),
    ]);
    let records = api
        .get(&app_path(&args.app, &format!("/invocations{query}")))
        .await?;
    if json {
        output::json_pretty(&records);
        return Ok(());
    }
    let mut records = records.as_array().cloned().unwrap_or_default();
    records.reverse(); // the API answers newest first
    for r in &records {
        output::line(&output::record(r));
    }
    Ok(())
}

/// One Server-Sent Event: its `event` name and its `data` lines joined.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The event's name (`message` when it has none).
    pub name: String,
    /// Its data.
    pub data: String,
}

/// Splits complete events off the front of `buffer` (text with `\r`
/// removed), leaving an incomplete one in it. Comments (keep-alives) and
/// events without data are skipped.
pub fn take_events(buffer: &mut String) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut event = Event {
            name: "message".into(),
            data: String::new(),
        };
        let mut has_data = false;
        for line in block.lines() {
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => event.name = value.to_owned(),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {} // a comment (`: keep-alive`), `id`, `retry`
            }
        }
        if has_data {
            events.push(event);
        }
    }
    events
}

async fn follow(api: &Api, app: &str, script: Option<String>, json: bool) -> Result<(), Failure> {
    let query = api::query(&[("script", script)]);
    let request = api
        .request(Method::GET, &app_path(app, &format!("/logs/stream{query}")))
        .header(reqwest::header::ACCEPT, "text/event-stream");
    let mut response = api.send(request).await?;
    let status = response.status();
    if !status.is_success() {
        let body = api::read_json(response).await?;
        return Err(api::server_failure(status, &body));
    }
    eprintln!("picloud: following the logs of {app} (Ctrl-C to stop)");
    let mut pending = Vec::new();
    let mut buffer = String::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| Failure::error(format!("the log stream broke: {e}")))?;
        let Some(chunk) = chunk else {
            eprintln!("picloud: the log stream ended");
            return Ok(());
        };
        pending.extend_from_slice(&chunk);
        // Keep an incomplete UTF-8 sequence for the next chunk.
        let valid = match std::str::from_utf8(&pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&pending[..valid]).replace('\r', "");
        pending.drain(..valid);
        buffer.push_str(&text);
        for event in take_events(&mut buffer) {
            match event.name.as_str() {
                "invocation" => match serde_json::from_str::<Value>(&event.data) {
                    Ok(record) if json => output::json_line(&record),
                    Ok(record) => output::line(&output::record(&record)),
                    Err(_) => output::line(&event.data),
                },
                "lagged" => eprintln!(
                    "picloud: skipped {} runs (too slow a reader); `picloud logs {app}` lists them",
                    event.data
                ),
                _ => {}
            }
        }
    }
}
