//! Standard functions whose result can be far larger than their input,
//! replaced by versions that check the result's size *before* they build it.
//!
//! rhai checks a native function's result against the size limits after the
//! call returns, and the sandbox's wall clock and memory meter run between
//! operations: inside one native call nothing can stop an allocation. So a
//! single call that multiplies its input would allocate gigabytes before
//! any check saw it:
//!
//! - `replace`: a 4 KiB string with every byte replaced by a 1 MiB one is
//!   4 GiB;
//! - `split` / `split_rev` / `to_chars`: one array slot and one string per
//!   character, about 64 bytes for each byte of a 64 MiB string;
//! - `parse_json`: `[{},{},…]` is dozens of bytes per input byte;
//! - printing (`print`, `to_string`, `debug`, `to_debug`, interpolation) and
//!   `to_json`: a value can hold the same string many times (rhai shares
//!   strings), and printing writes each copy out.
//!
//! Each replacement computes the result's size first (one linear pass, no
//! allocation) and fails with the same "data too large" error rhai's own
//! checks raise, so the run ends in a clear `LimitExceeded` error. The
//! semantics are otherwise rhai's.

use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position,
};

use super::request::json_text;
use super::values::{self, DataSizes};

/// What a size check raises; `what` names the limit the way rhai's own
/// errors do, so that [`ExecError::from_eval`](super::ExecError) classifies
/// both alike.
pub(crate) fn too_large(what: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.into(), Position::NONE).into()
}

/// Checks sizes against the engine's string, array and map limits.
pub(crate) fn check_sizes(engine: &Engine, sizes: DataSizes) -> Result<(), Box<EvalAltResult>> {
    if sizes.strings > limit(engine.max_string_size()) {
        return Err(too_large("Length of string"));
    }
    if sizes.arrays > limit(engine.max_array_size()) {
        return Err(too_large("Size of array"));
    }
    if sizes.maps > limit(engine.max_map_size()) {
        return Err(too_large("Size of object map"));
    }
    Ok(())
}

/// rhai's convention: a limit of zero is no limit.
fn limit(max: usize) -> usize {
    if max == 0 { usize::MAX } else { max }
}

type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// Fails unless an array of `parts` elements fits the array limit.
fn check_parts(ctx: &NativeCallContext, parts: usize) -> Fallible<()> {
    if parts > limit(ctx.engine().max_array_size()) {
        return Err(too_large("Size of array"));
    }
    Ok(())
}

/// How many pieces `split(delimiter)` makes of `string`, at most
/// `segments` (the standard library's rules: an empty delimiter splits
/// between characters, with an empty piece at either end).
fn pieces(string: &str, delimiter: &str, segments: usize) -> usize {
    string
        .matches(delimiter)
        .take(segments.saturating_sub(1))
        .count()
        + 1
}

/// `segments` as the standard library reads it.
fn segments_of(segments: i64) -> usize {
    usize::try_from(segments).unwrap_or(usize::MAX)
}

/// `string.replace(find, substitute)`, refused when the result would be
/// longer than the string limit.
fn replace(
    ctx: &NativeCallContext,
    string: &mut ImmutableString,
    find: &str,
    substitute: &str,
) -> Fallible<()> {
    if string.is_empty() {
        return Ok(());
    }
    if substitute.len() > find.len() {
        let count = string.matches(find).count();
        let grows = count.saturating_mul(substitute.len() - find.len());
        if string.len().saturating_add(grows) > limit(ctx.engine().max_string_size()) {
            return Err(too_large("Length of string"));
        }
    }
    *string = string.replace(find, substitute).into();
    Ok(())
}

/// `string.split(delimiter[, segments])` and `split_rev`, refused when the
/// array would be longer than the array limit.
fn split(
    ctx: &NativeCallContext,
    string: &ImmutableString,
    delimiter: &str,
    segments: usize,
    reverse: bool,
) -> Fallible<Array> {
    if segments <= 1 || string.is_empty() || (!delimiter.is_empty() && !string.contains(delimiter))
    {
        return Ok(vec![string.clone().into()]);
    }
    check_parts(ctx, pieces(string, delimiter, segments))?;
    Ok(match (reverse, segments) {
        (false, usize::MAX) => string.split(delimiter).map(Into::into).collect(),
        (false, n) => string.splitn(n, delimiter).map(Into::into).collect(),
        (true, usize::MAX) => string.rsplit(delimiter).map(Into::into).collect(),
        (true, n) => string.rsplitn(n, delimiter).map(Into::into).collect(),
    })
}

/// Upper bound of the values `text` holds as JSON: every value but the
/// first follows a `,` or opens a container, counted outside strings.
fn json_values_at_most(text: &str) -> usize {
    let (mut count, mut in_string, mut escaped) = (1_usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// `parse_json(text)`: strict JSON (the standard version evaluates the text
/// as a Rhai expression), refused when it holds more values than the array
/// and map limits allow together.
fn parse_json(ctx: &NativeCallContext, text: &str) -> Fallible<Dynamic> {
    let engine = ctx.engine();
    let room = limit(engine.max_array_size()).saturating_add(limit(engine.max_map_size()));
    if json_values_at_most(text) > room.saturating_add(1) {
        return Err(too_large("Size of array"));
    }
    serde_json::from_str::<Dynamic>(text).map_err(|e| format!("invalid JSON: {e}").into())
}

/// Fails unless printing a value of `sizes` stays within the limits: the
/// text holds every string of the value, as often as the value holds it.
fn check_printable(ctx: &NativeCallContext, sizes: DataSizes) -> Fallible<()> {
    check_sizes(ctx.engine(), sizes)
}

/// Registers the bounded functions on `engine`; functions registered on the
/// engine are found before the standard package's.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, sub: &str| {
            replace(&ctx, s, find, sub)
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, sub: char| {
            replace(&ctx, s, find, sub.encode_utf8(&mut [0; 4]))
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: char, sub: &str| {
            replace(&ctx, s, find.encode_utf8(&mut [0; 4]), sub)
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: char, sub: char| {
            replace(
                &ctx,
                s,
                find.encode_utf8(&mut [0; 4]),
                sub.encode_utf8(&mut [0; 4]),
            )
        },
    );
    for (name, reverse) in [("split", false), ("split_rev", true)] {
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, s: &mut ImmutableString, d: &str| {
                split(&ctx, s, d, usize::MAX, reverse)
            },
        );
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, s: &mut ImmutableString, d: &str, n: i64| {
                split(&ctx, s, d, segments_of(n), reverse)
            },
        );
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, s: &mut ImmutableString, d: char| {
                split(&ctx, s, d.encode_utf8(&mut [0; 4]), usize::MAX, reverse)
            },
        );
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, s: &mut ImmutableString, d: char, n: i64| {
                split(&ctx, s, d.encode_utf8(&mut [0; 4]), segments_of(n), reverse)
            },
        );
    }
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, s: &mut ImmutableString| -> Fallible<Array> {
            if s.is_empty() {
                return Ok(vec![s.clone().into()]);
            }
            check_parts(&ctx, s.split_whitespace().count())?;
            Ok(s.split_whitespace().map(Into::into).collect())
        },
    );
    engine.register_fn(
        "to_chars",
        |ctx: NativeCallContext, s: &mut ImmutableString| -> Fallible<Array> {
            check_parts(&ctx, s.chars().count())?;
            Ok(s.chars().map(Into::into).collect())
        },
    );
    engine.register_fn(
        "to_blob",
        |ctx: NativeCallContext, s: &mut ImmutableString| -> Fallible<Blob> {
            check_parts(&ctx, s.len())?;
            Ok(s.as_bytes().to_vec())
        },
    );
    engine.register_fn("parse_json", |ctx: NativeCallContext, text: &str| {
        parse_json(&ctx, text)
    });
    // Printing and comparing arrays and maps recurse once per level of
    // nesting; rhai's versions use a few KiB of native stack per level,
    // these (see `values`) stop at a fixed depth, and check the size first.
    for name in ["print", "to_string", "debug", "to_debug"] {
        engine.register_fn(
            name,
            |ctx: NativeCallContext, a: &mut Array| -> Fallible<ImmutableString> {
                check_printable(&ctx, values::array_sizes(a))?;
                Ok(values::array_to_string(a))
            },
        );
        engine.register_fn(
            name,
            |ctx: NativeCallContext, m: &mut Map| -> Fallible<ImmutableString> {
                check_printable(&ctx, values::map_sizes(m))?;
                Ok(values::map_to_string(m))
            },
        );
    }
    engine.register_fn(
        "to_json",
        |ctx: NativeCallContext, map: &mut Map| -> Fallible<String> {
            check_printable(&ctx, values::map_sizes(map))?;
            json_text(&Dynamic::from_map(map.clone())).map_err(Into::into)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::{json_values_at_most, pieces};

    #[test]
    fn pieces_match_the_standard_split() {
        for (s, d) in [
            ("a,b,,c", ","),
            ("abc", ""),
            ("", ","),
            ("aaaa", "aa"),
            ("x", "y"),
        ] {
            assert_eq!(
                pieces(s, d, usize::MAX),
                s.split(d).count(),
                "{s:?} by {d:?}"
            );
            for n in 1..6 {
                assert_eq!(
                    pieces(s, d, n),
                    s.splitn(n, d).count(),
                    "{s:?} by {d:?} n={n}"
                );
            }
        }
    }

    #[test]
    fn json_values_are_bounded_from_above() {
        assert_eq!(json_values_at_most("1"), 1);
        assert_eq!(json_values_at_most("[1,2,3]"), 4);
        assert_eq!(json_values_at_most(r#"{"a,[{":[],"b":"\",{"}"#), 3);
        assert_eq!(json_values_at_most(&"[{},".repeat(10)), 31);
    }
}
