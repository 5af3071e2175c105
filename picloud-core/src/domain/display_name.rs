//! Free-text display names.

/// Trims a free-text name (an app's or a token's) and checks it: 1 to `max`
/// characters, no control characters (a store need not keep NUL, and
/// PostgreSQL cannot). The error names the field: `what` is e.g. `"name"`.
pub fn validate_display_name<'a>(name: &'a str, what: &str, max: usize) -> Result<&'a str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(format!("{what} must be 1 to {max} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(name)
}
