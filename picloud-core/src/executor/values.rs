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
/// [`MAX_DATA_DEPTH`], and cut (ending in `…`) past `max` bytes.
pub(crate) fn debug_string(value: &Dynamic, max: usize) -> String {
    let mut out = String::new();
    if !write_debug(&mut out, value, 0, max) || out.len() > max {
        out.truncate(out.floor_char_boundary(max));
        out.push('…');
    }
    out
}

/// Writes `value`; `false` once `out` holds more than `max` bytes (the
/// text is then incomplete). A leaf is written whole, so `out` may end up
/// to one leaf's escaped form past `max`.
fn write_debug(out: &mut String, value: &Dynamic, depth: usize, max: usize) -> bool {
    if out.len() > max {
        return false;
    }
    if let Ok(array) = value.as_array_ref() {
        write_array(out, &array, depth, max)
    } else if let Ok(map) = value.as_map_ref() {
        write_map(out, &map, depth, max)
    } else {
        // A leaf: rhai's own Debug form, which does not recurse. A string
        // escapes to up to six bytes per byte: sized before it is written.
        if let Ok(text) = value.as_immutable_string_ref()
            && out.len().saturating_add(quoted_len(&text)) > max
        {
            return false;
        }
        let _ = write!(out, "{value:?}");
        out.len() <= max
    }
}

fn write_array(out: &mut String, array: &Array, depth: usize, max: usize) -> bool {
    if depth >= MAX_DATA_DEPTH {
        out.push_str("[...]");
        return out.len() <= max;
    }
    out.push('[');
    for (i, item) in array.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if !write_debug(out, item, depth + 1, max) {
            return false;
        }
    }
    out.push(']');
    out.len() <= max
}

fn write_map(out: &mut String, map: &Map, depth: usize, max: usize) -> bool {
    if depth >= MAX_DATA_DEPTH {
        out.push_str("#{...}");
        return out.len() <= max;
    }
    out.push_str("#{");
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if out.len().saturating_add(quoted_len(key)) > max {
            return false;
        }
        let _ = write!(out, "{:?}: ", key.as_str());
        if !write_debug(out, item, depth + 1, max) {
            return false;
        }
    }
    out.push('}');
    out.len() <= max
}

/// The length of `text`'s debug form (`"…"` with escapes), at most: each
/// character as `char::escape_debug` writes it (which also escapes `'`).
pub(crate) fn quoted_len(text: &str) -> usize {
    text.chars().map(|c| c.escape_debug().len()).sum::<usize>() + 2
}

/// `print`/`to_string`/`debug`/`to_debug` of an array: the text, and
/// whether it is whole (else it was cut past `max` bytes and ends in `…`).
pub(crate) fn array_to_string(array: &Array, max: usize) -> (ImmutableString, bool) {
    let mut out = String::new();
    let whole = write_array(&mut out, array, 0, max);
    finish_text(out, whole, max)
}

/// `print`/`to_string`/`debug`/`to_debug` of a map; see [`array_to_string`].
pub(crate) fn map_to_string(map: &Map, max: usize) -> (ImmutableString, bool) {
    let mut out = String::new();
    let whole = write_map(&mut out, map, 0, max);
    finish_text(out, whole, max)
}

fn finish_text(mut out: String, whole: bool, max: usize) -> (ImmutableString, bool) {
    if whole && out.len() <= max {
        return (out.into(), true);
    }
    out.truncate(out.floor_char_boundary(max.min(1024)));
    out.push('…');
    (out.into(), false)
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

/// `==` on two values of any kind (see [`arrays_equal`]), `depth` levels
/// down.
pub(crate) fn values_equal(
    ctx: &NativeCallContext,
    x: &Dynamic,
    y: &Dynamic,
    depth: usize,
) -> Result<bool, Box<EvalAltResult>> {
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

/// Bytes the sandbox charges for one value slot (a `Dynamic`).
const SLOT_BYTES: usize = 16;
/// Bytes the sandbox charges for one map entry, beyond its key and value.
const ENTRY_BYTES: usize = 48;

/// What a value holds, as the sandbox's size limits count it.
///
/// rhai's own accounting (`calc_data_sizes`) counts arrays, BLOBs, maps
/// and strings, and nothing inside other values: a function pointer's
/// name and curried arguments, a `response(...)` value's body, map keys.
/// This walk counts all of them, so a value cannot hide data from the
/// limits by wrapping it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataSizes {
    /// Array elements and BLOB bytes, nested arrays counted in full (as
    /// rhai counts them against `max_array_len`).
    pub arrays: usize,
    /// Map entries, nested maps counted in full.
    pub maps: usize,
    /// String bytes, map keys and function names included.
    pub strings: usize,
    /// The estimated bytes of memory the value holds.
    pub memory: usize,
}

impl DataSizes {
    /// Adds `other` to these sizes.
    pub(crate) fn add(&mut self, other: DataSizes) {
        self.arrays += other.arrays;
        self.maps += other.maps;
        self.strings += other.strings;
        self.memory += other.memory;
    }

    /// These sizes less an allowance (each field saturating at zero).
    pub fn less(self, allowance: DataSizes) -> DataSizes {
        DataSizes {
            arrays: self.arrays.saturating_sub(allowance.arrays),
            maps: self.maps.saturating_sub(allowance.maps),
            strings: self.strings.saturating_sub(allowance.strings),
            memory: self.memory.saturating_sub(allowance.memory),
        }
    }
}

/// The sizes of `value` and everything inside it.
///
/// It recurses once per level of nesting, on a small frame; nesting is
/// bounded by the array and map limits (a level is at least one element).
pub(crate) fn data_sizes(value: &Dynamic) -> DataSizes {
    let mut sizes = DataSizes::default();
    add_sizes(&mut sizes, value);
    sizes
}

/// The sizes of an array's elements (as [`data_sizes`] of the array, less
/// the array's own slot).
pub(crate) fn array_sizes(array: &Array) -> DataSizes {
    let mut sizes = DataSizes {
        arrays: array.len(),
        ..DataSizes::default()
    };
    for item in array {
        add_sizes(&mut sizes, item);
    }
    sizes
}

/// The sizes of a map's entries (as [`data_sizes`] of the map, less the
/// map's own slot).
pub(crate) fn map_sizes(map: &Map) -> DataSizes {
    let mut sizes = DataSizes {
        maps: map.len(),
        ..DataSizes::default()
    };
    for (key, item) in map {
        sizes.strings += key.len();
        sizes.memory += key.len() + ENTRY_BYTES;
        add_sizes(&mut sizes, item);
    }
    sizes
}

fn add_sizes(sizes: &mut DataSizes, value: &Dynamic) {
    sizes.memory += SLOT_BYTES;
    if value.is_int() || value.is_float() || value.is_bool() || value.is_unit() || value.is_char() {
        return;
    }
    if let Ok(s) = value.as_immutable_string_ref() {
        sizes.strings += s.len();
        sizes.memory += s.len();
    } else if let Ok(array) = value.as_array_ref() {
        sizes.add(array_sizes(&array));
    } else if let Ok(map) = value.as_map_ref() {
        sizes.add(map_sizes(&map));
    } else if let Ok(blob) = value.as_blob_ref() {
        sizes.arrays += blob.len();
        sizes.memory += blob.len();
    } else if let Some(fn_ptr) = value.read_lock::<rhai::FnPtr>() {
        sizes.strings += fn_ptr.fn_name().len();
        sizes.memory += fn_ptr.fn_name().len();
        for item in fn_ptr.iter_curry() {
            sizes.arrays += 1;
            add_sizes(sizes, item);
        }
    } else if let Some(response) = value.read_lock::<super::request::ResponseValue>() {
        add_sizes(sizes, &response.body);
        for (name, text) in &response.headers {
            sizes.strings += name.len() + text.len();
            sizes.memory += name.len() + text.len() + ENTRY_BYTES;
        }
    }
}
