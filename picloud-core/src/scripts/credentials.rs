//! Removing PiCloud's own credentials from a request before a script sees it.

use std::collections::BTreeMap;

use crate::stores::Stores;

/// The name of the dashboard's session cookie. Like a bearer token, it is
/// a credential PiCloud accepts, and no script ever sees it.
pub const SESSION_COOKIE: &str = "picloud_session";

/// Removes from a request every credential PiCloud accepts, before a script
/// (any editor's code) sees it:
///
/// - any header with a word in PiCloud's token form (`pc_…`), whatever its
///   name (a client may send its token as `X-Api-Key`);
/// - an `Authorization`, `Proxy-Authorization` or other credential-named
///   header (its name says `auth`, `token` or `key`) with a word the token
///   store knows, like the bootstrap token. At most
///   [`MAX_CREDENTIAL_LOOKUPS`] words are looked up per request; a header
///   with more words than that left to check is removed unchecked;
/// - the session cookie.
///
/// A bearer token PiCloud does not know stays: it is the script's own
/// business.
pub(crate) async fn strip_credentials(stores: &Stores, headers: &mut BTreeMap<String, String>) {
    let words = |value: &str| -> Vec<String> {
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    headers.retain(|_, value| !contains_token_form(value));
    let credential_named =
        |name: &str| name.contains("auth") || name.contains("token") || name.contains("key");
    let names: Vec<String> = headers
        .keys()
        .filter(|name| credential_named(name))
        .cloned()
        .collect();
    let mut lookups = 0_usize;
    for name in names {
        let Some(value) = headers.get(&name) else {
            continue;
        };
        for word in words(value) {
            if lookups == MAX_CREDENTIAL_LOOKUPS {
                headers.remove(&name);
                break;
            }
            lookups += 1;
            if is_picloud_token(stores, &word).await {
                headers.remove(&name);
                break;
            }
        }
    }
    if let Some(cookie) = headers.get_mut("cookie") {
        let kept: Vec<&str> = cookie
            .split([';', ','])
            .map(str::trim)
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                !pair.is_empty() && name != SESSION_COOKIE
            })
            .collect();
        if kept.is_empty() {
            headers.remove("cookie");
        } else {
            *cookie = kept.join("; ");
        }
    }
}

/// How many words of credential-named headers one request may have looked
/// up in the token store: each is a store round trip, and anyone may call
/// `/run`.
pub const MAX_CREDENTIAL_LOOKUPS: usize = 8;

/// Whether `value` holds PiCloud's token form anywhere, whatever delimits
/// or encodes around it (`session=pc_…`, `"pc_…"`, `a%3Dpc_…`, `xpc_…`):
/// the prefix followed by at least [`TOKEN_FORM_MIN_DIGITS`] hex digits
/// (a token has 64; `npc_id` is not one).
fn contains_token_form(value: &str) -> bool {
    value.match_indices(TOKEN_FORM).any(|(at, prefix)| {
        value[at + prefix.len()..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count()
            >= TOKEN_FORM_MIN_DIGITS
    })
}

/// How many hex digits after `pc_` make a header value hold a token (or
/// enough of one to matter).
const TOKEN_FORM_MIN_DIGITS: usize = 16;

/// Whether `word` has the form of PiCloud's own tokens.
fn has_token_form(word: &str) -> bool {
    word.starts_with(TOKEN_FORM)
}

#[cfg(feature = "auth")]
const TOKEN_FORM: &str = crate::auth::TOKEN_PREFIX;
/// Without the `auth` feature PiCloud accepts no tokens of its own; the
/// `pc_` form is withheld all the same, in case an embedder issues them.
#[cfg(not(feature = "auth"))]
const TOKEN_FORM: &str = "pc_";

/// Whether PiCloud would accept `token` (or might: a store that cannot be
/// asked counts as yes, so a credential is never passed on by accident).
#[cfg(feature = "auth")]
async fn is_picloud_token(stores: &Stores, token: &str) -> bool {
    if has_token_form(token) {
        return true;
    }
    !matches!(
        stores
            .tokens
            .find_by_hash(&crate::auth::hash_token(token))
            .await,
        Ok(None)
    )
}

/// Without the `auth` feature there is no token store to ask.
#[cfg(not(feature = "auth"))]
async fn is_picloud_token(_stores: &Stores, token: &str) -> bool {
    has_token_form(token)
}
