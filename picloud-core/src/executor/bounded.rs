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
//!   strings), and printing writes each copy out;
//! - comparing, searching and sorting (`==`, `!=`, `in`, `contains`,
//!   `index_of`, `dedup`, `sort`, `order`): each copy of a shared string is
//!   compared byte by byte.
//!
//! The sandbox's variable scan catches a container that outgrows the limits
//! through index assignment (`a[i] = s`, which rhai checks element by
//! element) within about a millisecond; these checks close the window
//! before it for every function that reads a container whole. (`switch`
//! on such a container hashes it whole, and is the one reader left to that
//! window.)
//!
//! `sort`, `order` and `dedup` with a comparer stop at the comparer's first
//! error (rhai's versions ignore it and keep sorting, so a run past its
//! wall clock went on calling the comparer).
//!
//! Each replacement computes the result's size first (one linear pass, no
//! allocation) and fails with the same "data too large" error rhai's own
//! checks raise, so the run ends in a clear `LimitExceeded` error. The
//! semantics are otherwise rhai's.

use std::cmp::Ordering;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext,
    Position,
};

use super::request::{ANSWER_TOO_LARGE, json_text_at_most};
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
pub(crate) fn parse_json(ctx: &NativeCallContext, text: &str) -> Fallible<Dynamic> {
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

/// Fails unless comparing against every element of `array` stays within the
/// string limit (each comparison reads the strings it compares).
fn check_comparable(ctx: &NativeCallContext, array: &Array) -> Fallible<()> {
    check_sizes(ctx.engine(), values::array_sizes(array))
}

/// [`check_comparable`] for a map.
fn check_comparable_map(ctx: &NativeCallContext, map: &Map) -> Fallible<()> {
    check_sizes(ctx.engine(), values::map_sizes(map))
}

/// The ordering a comparer's answer stands for (rhai's rules: a number's
/// sign, `true` for "less"; anything else orders by type).
fn ordering_of(answer: &Dynamic, x: &Dynamic, y: &Dynamic) -> Ordering {
    match answer
        .as_int()
        .or_else(|_| answer.as_bool().map(|b| if b { -1 } else { 1 }))
    {
        Ok(n) => n.cmp(&0),
        Err(_) => x.type_id().cmp(&y.type_id()),
    }
}

/// Sorts `array` with `compare`, stopping at its first error; a comparer
/// that is not a total order (the sort panics) is the script's error.
fn sort_with(
    array: &mut Array,
    mut compare: impl FnMut(&Dynamic, &Dynamic) -> Fallible<Ordering>,
) -> Fallible<()> {
    if array.len() <= 1 {
        return Ok(());
    }
    let mut failed = None;
    let sorted = catch_unwind(AssertUnwindSafe(|| {
        array.sort_by(|x, y| {
            if failed.is_some() {
                return Ordering::Equal;
            }
            compare(x, y).unwrap_or_else(|err| {
                failed = Some(err);
                Ordering::Equal
            })
        });
    }));
    if let Some(err) = failed {
        return Err(err);
    }
    sorted.map_err(|_| "error in comparer for sorting: it is not a total order".into())
}

/// `array.sort(comparer)`.
fn sort_by(ctx: &NativeCallContext, array: &mut Array, comparer: &FnPtr) -> Fallible<()> {
    sort_with(array, |x, y| {
        let answer = comparer.call_raw(ctx, None, [x.clone(), y.clone()])?;
        Ok(ordering_of(&answer, x, y))
    })
}

/// `array.sort()` / `sort_desc()`: every element of one type (numbers,
/// characters, strings, booleans or `()`), as rhai's.
fn sort_builtin(ctx: &NativeCallContext, array: &mut Array, descending: bool) -> Fallible<()> {
    check_comparable(ctx, array)?;
    let Some(first) = array.first() else {
        return Ok(());
    };
    let type_id = first.type_id();
    if array.iter().any(|a| a.type_id() != type_id) {
        return Err(EvalAltResult::ErrorFunctionNotFound(
            "elements of different types cannot be sorted".into(),
            Position::NONE,
        )
        .into());
    }
    let order = |o: Ordering| if descending { o.reverse() } else { o };
    let key = |a: &Dynamic, b: &Dynamic| -> Option<Ordering> {
        if let (Ok(a), Ok(b)) = (a.as_int(), b.as_int()) {
            return Some(a.cmp(&b));
        }
        if let (Ok(a), Ok(b)) = (a.as_float(), b.as_float()) {
            return Some(a.partial_cmp(&b).unwrap_or(Ordering::Equal));
        }
        if let (Ok(a), Ok(b)) = (a.as_char(), b.as_char()) {
            return Some(a.cmp(&b));
        }
        if let (Ok(a), Ok(b)) = (a.as_immutable_string_ref(), b.as_immutable_string_ref()) {
            return Some(a.as_str().cmp(b.as_str()));
        }
        if let (Ok(a), Ok(b)) = (a.as_bool(), b.as_bool()) {
            return Some(a.cmp(&b));
        }
        (a.is_unit() && b.is_unit()).then_some(Ordering::Equal)
    };
    if array.len() > 1 && key(&array[0], &array[0]).is_none() {
        return Err(EvalAltResult::ErrorFunctionNotFound(
            format!("elements of {} cannot be sorted", array[0].type_name()),
            Position::NONE,
        )
        .into());
    }
    sort_with(array, |a, b| {
        Ok(order(key(a, b).unwrap_or(Ordering::Equal)))
    })
}

/// `==` on two leaves or containers, with rhai's semantics.
fn equal(ctx: &NativeCallContext, x: &Dynamic, y: &Dynamic) -> Fallible<bool> {
    values::values_equal(ctx, x, y, 0)
}

/// Where `value` is in `array`, from `start` (rhai's rules: negative counts
/// from the end; out of range is "not found").
fn index_of(ctx: &NativeCallContext, array: &Array, value: &Dynamic, start: i64) -> Fallible<i64> {
    check_comparable(ctx, array)?;
    let len = i64::try_from(array.len()).unwrap_or(i64::MAX);
    let start = if start < 0 {
        len.saturating_add(start).max(0)
    } else if start >= len {
        return Ok(-1);
    } else {
        start
    };
    for (i, item) in array.iter().enumerate().skip(start as usize) {
        if equal(ctx, item, value)? {
            return Ok(i64::try_from(i).unwrap_or(i64::MAX));
        }
    }
    Ok(-1)
}

/// Registers printing (`print`, `to_string`, `debug`, `to_debug`, which
/// string interpolation and `+` use) of arrays, maps and strings.
///
/// rhai prints a value with its own unbounded code when these fail, so
/// they never fail: past the limits they call `stop` (which must end the
/// run at its next operation, and fail it if none comes) and return the
/// text cut short.
pub(crate) fn register_printing(
    engine: &mut Engine,
    stop: impl Fn() + Clone + Send + Sync + 'static,
) {
    for name in ["print", "to_string", "debug", "to_debug"] {
        let on_overflow = stop.clone();
        engine.register_fn(name, move |ctx: NativeCallContext, a: &mut Array| {
            let max = limit(ctx.engine().max_string_size());
            let fits = check_printable(&ctx, values::array_sizes(a)).is_ok();
            let (text, whole) = values::array_to_string(a, if fits { max } else { 0 });
            if !whole {
                on_overflow();
                // rhai re-checks the argument after the call and, when it
                // fails, prints it with its own unbounded code: the run is
                // stopped, so empty it.
                a.clear();
            }
            text
        });
        let on_overflow = stop.clone();
        engine.register_fn(name, move |ctx: NativeCallContext, m: &mut Map| {
            let max = limit(ctx.engine().max_string_size());
            let fits = check_printable(&ctx, values::map_sizes(m)).is_ok();
            let (text, whole) = values::map_to_string(m, if fits { max } else { 0 });
            if !whole {
                on_overflow();
                m.clear();
            }
            text
        });
    }
    // A string's debug form escapes it (up to six bytes for one).
    for name in ["debug", "to_debug"] {
        let on_overflow = stop.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, s: &mut ImmutableString| {
                if values::quoted_len(s) > limit(ctx.engine().max_string_size()) {
                    on_overflow();
                    return ImmutableString::from("\"…\"");
                }
                ImmutableString::from(format!("{:?}", s.as_str()))
            },
        );
    }
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
    // Comparing reads the strings of one side at most.
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Array, b: Array| {
        check_comparable(&ctx, a)?;
        values::arrays_equal(&ctx, a, &b)
    });
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Array, b: Array| {
        check_comparable(&ctx, a)?;
        values::arrays_equal(&ctx, a, &b).map(|eq| !eq)
    });
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Map, b: Map| {
        check_comparable_map(&ctx, a)?;
        values::maps_equal(&ctx, a, &b)
    });
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Map, b: Map| {
        check_comparable_map(&ctx, a)?;
        values::maps_equal(&ctx, a, &b).map(|eq| !eq)
    });
    engine.register_fn(
        "contains",
        |ctx: NativeCallContext, a: &mut Array, value: Dynamic| -> Fallible<bool> {
            Ok(index_of(&ctx, a, &value, 0)? >= 0)
        },
    );
    engine.register_fn(
        "index_of",
        |ctx: NativeCallContext, a: &mut Array, value: Dynamic| index_of(&ctx, a, &value, 0),
    );
    engine.register_fn(
        "index_of",
        |ctx: NativeCallContext, a: &mut Array, value: Dynamic, start: i64| {
            index_of(&ctx, a, &value, start)
        },
    );
    engine.register_fn(
        "dedup",
        |ctx: NativeCallContext, a: &mut Array| -> Fallible<()> {
            check_comparable(&ctx, a)?;
            let mut failed = None;
            a.dedup_by(|x, y| {
                failed.is_none()
                    && equal(&ctx, y, x).unwrap_or_else(|err| {
                        failed = Some(err);
                        false
                    })
            });
            failed.map_or(Ok(()), Err)
        },
    );
    engine.register_fn(
        "dedup",
        |ctx: NativeCallContext, a: &mut Array, comparer: FnPtr| -> Fallible<()> {
            let mut failed = None;
            a.dedup_by(|x, y| {
                if failed.is_some() {
                    return false;
                }
                match comparer.call_raw(&ctx, None, [y.clone(), x.clone()]) {
                    Ok(answer) => answer.as_bool().unwrap_or(false),
                    Err(err) => {
                        failed = Some(err);
                        false
                    }
                }
            });
            failed.map_or(Ok(()), Err)
        },
    );
    engine.register_fn(
        "sort",
        |ctx: NativeCallContext, a: &mut Array, comparer: FnPtr| sort_by(&ctx, a, &comparer),
    );
    engine.register_fn(
        "order",
        |ctx: NativeCallContext, a: &mut Array, comparer: FnPtr| -> Fallible<Array> {
            let mut sorted = a.clone();
            sort_by(&ctx, &mut sorted, &comparer)?;
            Ok(sorted)
        },
    );
    for (name, descending) in [("sort", false), ("sort_desc", true)] {
        engine.register_fn(name, move |ctx: NativeCallContext, a: &mut Array| {
            sort_builtin(&ctx, a, descending)
        });
    }
    for (name, descending) in [("order", false), ("order_desc", true)] {
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, a: &mut Array| -> Fallible<Array> {
                let mut sorted = a.clone();
                sort_builtin(&ctx, &mut sorted, descending)?;
                Ok(sorted)
            },
        );
    }
    engine.register_fn(
        "to_json",
        |ctx: NativeCallContext, map: &mut Map| -> Fallible<String> {
            check_printable(&ctx, values::map_sizes(map))?;
            // Escapes can make the text six times its strings: capped
            // while it is written.
            json_text_at_most(
                &Dynamic::from_map(map.clone()),
                limit(ctx.engine().max_string_size()),
            )
            .map_err(|e| {
                if e.starts_with(ANSWER_TOO_LARGE) {
                    too_large("Length of string")
                } else {
                    e.into()
                }
            })
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
        assert_eq!(json_values_at_most(r#"{"a,[{":[],"b":"\",{"}"#), 4);
        assert_eq!(json_values_at_most(&"[{},".repeat(10)), 31);
    }
}
