//! The stored login: `$XDG_CONFIG_HOME/picloud/config.toml` (or
//! `~/.config/picloud/config.toml`), mode 0600, and the `PICLOUD_URL` and
//! `PICLOUD_TOKEN` variables that override it.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Failure;

/// The variable that names the server, over the stored login.
pub const URL_VAR: &str = "PICLOUD_URL";
/// The variable that holds the API token, over the stored login.
pub const TOKEN_VAR: &str = "PICLOUD_TOKEN";

/// What `picloud login` stores.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: Option<String>,
    /// A bearer token for it (`pc_…`).
    pub token: Option<String>,
    /// Who logged in, when known (for messages only).
    pub username: Option<String>,
}

/// The config file's path: `$XDG_CONFIG_HOME/picloud/config.toml`, else
/// `$HOME/.config/picloud/config.toml`.
pub fn path() -> Result<PathBuf, Failure> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = match non_empty("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => match non_empty("HOME") {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(Failure::error(
                    "cannot find the config directory: neither XDG_CONFIG_HOME nor HOME is set",
                ));
            }
        },
    };
    Ok(base.join("picloud").join("config.toml"))
}

/// The stored login, or an empty one when there is no config file.
pub fn load() -> Result<Config, Failure> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| Failure::error(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(Failure::error(format!("{}: {e}", path.display()))),
    }
}

/// Writes `config` to the config file (mode 0600, its directory 0700),
/// replacing it atomically. Returns the path.
pub fn store(config: &Config) -> Result<PathBuf, Failure> {
    let path = path()?;
    let io = |e: std::io::Error| Failure::error(format!("{}: {e}", path.display()));
    let dir = path.parent().expect("the config path has a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)?;
    let text = toml::to_string(config).map_err(|e| Failure::error(e.to_string()))?;
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    // A file left by an earlier run keeps its mode on open: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Removes the stored login. True when there was one.
pub fn remove() -> Result<bool, Failure> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::error(format!("{}: {e}", path.display()))),
    }
}

/// The server and token a command uses: `PICLOUD_URL` over the stored
/// URL, `PICLOUD_TOKEN` over the stored token. The stored token goes only
/// to the stored server: with `PICLOUD_URL` naming another one, only
/// `PICLOUD_TOKEN` is sent.
pub fn resolve() -> Result<(String, Option<String>), Failure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let stored = load()?;
    let env_url = var(URL_VAR);
    let url = match (&env_url, &stored.url) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => {
            return Err(Failure::error(format!(
                "no server: run `picloud login URL` first, or set {URL_VAR}"
            )));
        }
    };
    let same_server = stored
        .url
        .as_deref()
        .is_some_and(|s| trim_url(s) == trim_url(&url));
    let token = var(TOKEN_VAR).or(if same_server { stored.token } else { None });
    Ok((url, token))
}

/// `url` without trailing slashes, for comparing servers.
pub fn trim_url(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}
