//! Recursion over script data, with a depth cap.
//!
//! A script can nest arrays and maps as deep as its size limits allow
//! (10 000 levels of `a = [a]` fit in the default array limit). rhai's own
//! printing (`print`, `to_string`, `to_debug`, string interpolation) and
//! equality (`==`, `!=`, `in`, `contains`) of arrays and maps recurse
//! through its native-call machinery, a few KiB of native stack per level:
//! deep enough data would overflow the worker's stack and abort the whole
//! process. The sandbox replaces those functions for arrays and maps with
//! the ones here, which recurse on small frames and stop at
//! [`MAX_DATA_DEPTH`]: printing writes `[...]` / `#{...}` past it,
//! comparing fails with a runtime error.

use std::fmt::Write as _;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Map, NativeCallContext};

/// Deepest nesting that printing shows and that equality compares.
pub const MAX_DATA_DEPTH: usize = 64;

/// rhai's `to_debug` form of a value (`[1, "a", #{"k": ()}]`), elided past
/// [`MAX_DATA_DEPTH`].
pub(crate) fn debug_string(value: &Dynamic) -> String {
    let mut out = String::new();
    write_debug(&mut out, value, 0);
    out
}

fn write_debug(out: &mut String, value: &Dynamic, depth: usize) {
    if value.is_shared() {
        return write_debug(out, &value.flatten_clone(), depth);
    }
    if let Ok(array) = value.as_array_ref() {
        write_array(out, &array, depth);
    } else if let Ok(map) = value.as_map_ref() {
        write_map(out, &map, depth);
    } else {
        // A leaf: rhai's own Debug form, which does not recurse.
        let _ = write!(out, "{value:?}");
    }
}

fn write_array(out: &mut String, array: &Array, depth: usize) {
    if depth >= MAX_DATA_DEPTH {
        out.push_str("[...]");
        return;
    }
    out.push('[');
    for (i, item) in array.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_debug(out, item, depth + 1);
    }
    out.push(']');
}

fn write_map(out: &mut String, map: &Map, depth: usize) {
    if depth >= MAX_DATA_DEPTH {
        out.push_str("#{...}");
        return;
    }
    out.push_str("#{");
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{:?}: ", key.as_str());
        write_debug(out, item, depth + 1);
    }
    out.push('}');
}

/// `print`/`to_string`/`debug`/`to_debug` of an array.
pub(crate) fn array_to_string(array: &mut Array) -> ImmutableString {
    let mut out = String::new();
    write_array(&mut out, array, 0);
    out.into()
}

/// `print`/`to_string`/`debug`/`to_debug` of a map.
pub(crate) fn map_to_string(map: &mut Map) -> ImmutableString {
    let mut out = String::new();
    write_map(&mut out, map, 0);
    out.into()
}

/// `==` on two arrays, with rhai's semantics for the leaves (`1 == 1.0`,
/// values of types with no `==` are unequal).
pub(crate) fn arrays_equal(
    ctx: &NativeCallContext,
    a: &Array,
    b: &Array,
) -> Result<bool, Box<EvalAltResult>> {
    arrays_equal_at(ctx, a, b, 0)
}

/// `==` on two maps; see [`arrays_equal`].
pub(crate) fn maps_equal(
    ctx: &NativeCallContext,
    a: &Map,
    b: &Map,
) -> Result<bool, Box<EvalAltResult>> {
    maps_equal_at(ctx, a, b, 0)
}

fn too_deep() -> Box<EvalAltResult> {
    format!("values nested more than {MAX_DATA_DEPTH} levels deep cannot be compared").into()
}

fn arrays_equal_at(
    ctx: &NativeCallContext,
    a: &Array,
    b: &Array,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
    if depth >= MAX_DATA_DEPTH {
        return Err(too_deep());
    }
    if a.len() != b.len() {
        return Ok(false);
    }
    for (x, y) in a.iter().zip(b) {
        if !values_equal(ctx, x, y, depth + 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn maps_equal_at(
    ctx: &NativeCallContext,
    a: &Map,
    b: &Map,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
    if depth >= MAX_DATA_DEPTH {
        return Err(too_deep());
    }
    if a.len() != b.len() {
        return Ok(false);
    }
    for (key, x) in a {
        let Some(y) = b.get(key) else {
            return Ok(false);
        };
        if !values_equal(ctx, x, y, depth + 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn values_equal(
    ctx: &NativeCallContext,
    x: &Dynamic,
    y: &Dynamic,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
    if x.is_shared() || y.is_shared() {
        return values_equal(ctx, &x.flatten_clone(), &y.flatten_clone(), depth);
    }
    if let (Ok(a), Ok(b)) = (x.as_array_ref(), y.as_array_ref()) {
        return arrays_equal_at(ctx, &a, &b, depth);
    }
    if let (Ok(a), Ok(b)) = (x.as_map_ref(), y.as_map_ref()) {
        return maps_equal_at(ctx, &a, &b, depth);
    }
    if x.is_array() || x.is_map() || y.is_array() || y.is_map() {
        // A container against anything else.
        return Ok(false);
    }
    // Two leaves: rhai decides (numbers across types, strings, custom `==`).
    match ctx.call_native_fn_raw("==", true, &mut [&mut x.clone(), &mut y.clone()]) {
        Ok(result) => Ok(result.as_bool().unwrap_or(false)),
        Err(err) if matches!(*err, EvalAltResult::ErrorFunctionNotFound(..)) => Ok(false),
        Err(err) => Err(err),
    }
}
