//! What the client commands print: aligned tables, invocation records, and
//! raw JSON for `--json`.

use std::io::Write;

use serde_json::Value;

/// Prints `value` as one line of JSON on stdout.
pub fn json_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Prints `value` as indented JSON on stdout.
pub fn json_pretty(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    println!("{text}");
}

/// A field of a JSON object as display text (`-` when absent or null).
pub fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An RFC 3339 time cut to the second (`2026-01-02T03:04:05Z`).
pub fn short_time(value: &Value, name: &str) -> String {
    let text = field(value, name);
    match (text.get(..19), text.ends_with('Z')) {
        (Some(head), true) => format!("{head}Z"),
        _ => text,
    }
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(headers.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// One invocation record as text: a summary line (time, script, version,
/// status, duration, method and path), then its log lines and its error,
/// indented.
pub fn record(r: &Value) -> String {
    let micros = r.get("duration_us").and_then(Value::as_u64).unwrap_or(0);
    let mut target = field(r, "path");
    if let Some(q) = r
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.is_empty())
    {
        target.push('?');
        target.push_str(q);
    }
    let mut text = format!(
        "{} {} v{} {} {:.1}ms {} {}",
        short_time(r, "at"),
        field(r, "script"),
        field(r, "version"),
        field(r, "status"),
        micros as f64 / 1000.0,
        field(r, "method"),
        target,
    );
    if let Some(logs) = r.get("logs").and_then(Value::as_array) {
        for line in logs {
            text.push_str("\n    | ");
            text.push_str(line.as_str().unwrap_or_default());
        }
    }
    if let Some(error) = r.get("error").and_then(Value::as_str) {
        text.push_str("\n    ! ");
        text.push_str(error);
        if let Some(line) = r.get("line").and_then(Value::as_u64) {
            text.push_str(&format!(" (line {line}"));
            if let Some(column) = r.get("column").and_then(Value::as_u64) {
                text.push_str(&format!(", column {column}"));
            }
            text.push(')');
        }
    }
    text
}

/// Prints `text` and a newline on stdout, then flushes (a follower reads
/// each record as it comes).
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
