//! What can go wrong when compiling or running a script.
//!
//! Two error types, because they happen at different times and reach
//! different people: a [`CompileError`] is reported at upload (the script is
//! refused, with a line and column), an [`ExecError`] when it runs. Both are
//! built here from rhai's errors, which are classified once so that a limit
//! hit anywhere (even 64 calls deep, wrapped in one "in call to function"
//! layer per frame) comes out as [`ExecError::LimitExceeded`] naming the limit.
//!
//! HTTP stays out of core: [`ExecError::kind`] is what a transport maps to a
//! status. The suggested mapping (see [`ExecErrorKind`]):
//!
//! | kind | status | body |
//! |---|---|---|
//! | `Runtime` | 500 | `{"error": "script error: …", "line": N}` |
//! | `LimitExceeded` (wall clock, operations) | 504 | `{"error": "script exceeded its wall clock limit (1000 ms)"}` |
//! | `LimitExceeded` (any other) | 500 | `{"error": "script exceeded its call depth limit (64)", "line": N}` |
//! | `Overloaded` | 503, `Retry-After: 1` | `{"error": "executor overloaded"}` |
//! | `Internal` | 500 | `{"error": "internal error"}`, detail logged |

use rhai::{EvalAltResult, ParseError, ParseErrorType};

use super::limits::{LimitKind, Limits};

/// A script that does not compile. Nothing should be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", at(*line, *column))]
pub struct CompileError {
    /// What is wrong, for a person ("Expecting ')' …"), without the position.
    pub message: String,
    /// 1-based line of the error, when rhai knows it.
    pub line: Option<usize>,
    /// 1-based column of the error, when rhai knows it.
    pub column: Option<usize>,
    /// The limit the source exceeds (a literal too large, nesting too deep,
    /// too many functions), if that is why it was refused.
    pub limit: Option<LimitKind>,
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

impl CompileError {
    pub(crate) fn from_parse(err: &ParseError, limits: &Limits) -> Self {
        let pos = err.position();
        let (limit, message) = match err.err_type() {
            ParseErrorType::ExprTooDeep => (
                Some(LimitKind::ExprDepth),
                format!(
                    "expression nested too deeply: the expression depth limit is {} ({} inside functions)",
                    limits.max_expr_depth, limits.max_function_expr_depth
                ),
            ),
            ParseErrorType::TooManyFunctions => (
                Some(LimitKind::Functions),
                format!(
                    "too many functions: the functions limit is {}",
                    limits.max_functions
                ),
            ),
            ParseErrorType::LiteralTooLarge(what, max) => {
                let kind = literal_kind(what);
                (
                    Some(kind),
                    format!("{what} exceeds the {kind} limit of {max}"),
                )
            }
            other => (None, other.to_string()),
        };
        Self {
            message,
            line: pos.line(),
            column: pos.position(),
            limit,
        }
    }
}

fn literal_kind(what: &str) -> LimitKind {
    let what = what.to_ascii_lowercase();
    if what.contains("array") {
        LimitKind::ArraySize
    } else if what.contains("map") {
        LimitKind::MapSize
    } else {
        LimitKind::StringSize
    }
}

/// A line and a column, 1-based, each when known.
pub(crate) type At = (Option<usize>, Option<usize>);

/// Why an invocation produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The script failed: a thrown value, a type error, an unknown function,
    /// integer overflow, division by zero, a result that is not JSON, ...
    #[error("script error: {message}")]
    Runtime {
        /// What went wrong, for the script's author.
        message: String,
        /// 1-based line where it went wrong, when known.
        line: Option<usize>,
        /// 1-based column where it went wrong, when known.
        column: Option<usize>,
    },
    /// The script hit one of its [`Limits`].
    #[error("{message}")]
    LimitExceeded {
        /// Which limit.
        limit: LimitKind,
        /// A sentence naming the limit and its value, for the script's author.
        message: String,
        /// 1-based line where it was hit, when known.
        line: Option<usize>,
        /// 1-based column where it was hit, when known.
        column: Option<usize>,
    },
    /// The pool's queue (or this tenant's share of it) is full. Nothing ran;
    /// the caller may retry later.
    #[error("executor overloaded")]
    Overloaded,
    /// The executor failed, not the script (a worker panicked or is gone).
    #[error("executor internal error: {0}")]
    Internal(String),
}

/// The class of an [`ExecError`], for a transport's status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecErrorKind {
    /// [`ExecError::Runtime`]: suggest 500 with the message and line.
    Runtime,
    /// [`ExecError::LimitExceeded`] on [`LimitKind::WallClock`] or
    /// [`LimitKind::Operations`]: the script ran out of time; suggest 504.
    Timeout,
    /// [`ExecError::LimitExceeded`] on any other limit: suggest 500 with the
    /// message (which names the limit).
    LimitExceeded,
    /// [`ExecError::Overloaded`]: suggest 503 with `Retry-After`.
    Overloaded,
    /// [`ExecError::Internal`]: suggest 500 "internal error", detail logged.
    Internal,
}

impl ExecError {
    /// The class of this error; see the table in the module docs.
    pub fn kind(&self) -> ExecErrorKind {
        match self {
            Self::Runtime { .. } => ExecErrorKind::Runtime,
            Self::LimitExceeded {
                limit: LimitKind::WallClock | LimitKind::Operations,
                ..
            } => ExecErrorKind::Timeout,
            Self::LimitExceeded { .. } => ExecErrorKind::LimitExceeded,
            Self::Overloaded => ExecErrorKind::Overloaded,
            Self::Internal(_) => ExecErrorKind::Internal,
        }
    }

    /// The script line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Runtime { line, .. } | Self::LimitExceeded { line, .. } => *line,
            Self::Overloaded | Self::Internal(_) => None,
        }
    }

    /// The script column the error points at, if any.
    pub fn column(&self) -> Option<usize> {
        match self {
            Self::Runtime { column, .. } | Self::LimitExceeded { column, .. } => *column,
            Self::Overloaded | Self::Internal(_) => None,
        }
    }

    /// The limit that was hit, if that is what this error is.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            Self::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }

    pub(crate) fn runtime(message: impl Into<String>, at: At) -> Self {
        Self::Runtime {
            message: message.into(),
            line: at.0,
            column: at.1,
        }
    }

    fn limit_hit(limit: LimitKind, value: String, at: At) -> Self {
        Self::LimitExceeded {
            limit,
            message: format!("script exceeded its {limit} limit ({value})"),
            line: at.0,
            column: at.1,
        }
    }

    /// Classifies a rhai evaluation error: the innermost error decides (a
    /// limit hit inside nested calls is still that limit), the innermost
    /// script function is named in the message.
    pub(crate) fn from_eval(err: &EvalAltResult, limits: &Limits) -> Self {
        let inner = err.unwrap_inner();
        let pos = if inner.position().is_none() {
            err.position()
        } else {
            inner.position()
        };
        let line: At = (pos.line(), pos.position());
        let function = innermost_function(err);
        match inner {
            EvalAltResult::ErrorTerminated(token, _) if token.is::<super::sandbox::WallClock>() => {
                Self::limit_hit(
                    LimitKind::WallClock,
                    format!("{} ms", limits.wall_clock.as_millis()),
                    line,
                )
            }
            EvalAltResult::ErrorTerminated(token, _)
                if token.is::<super::sandbox::StackExhausted>() =>
            {
                Self::limit_hit(
                    LimitKind::Stack,
                    "too much recursion or nesting".to_owned(),
                    line,
                )
            }
            EvalAltResult::ErrorTerminated(token, _)
                if token.is::<super::sandbox::MemoryExhausted>() =>
            {
                Self::limit_hit(
                    LimitKind::Memory,
                    format!("{} bytes", limits.max_memory_bytes),
                    line,
                )
            }
            EvalAltResult::ErrorTerminated(token, _)
                if token.is::<super::sandbox::TextExhausted>() =>
            {
                Self::limit_hit(
                    LimitKind::StringSize,
                    format!("{} bytes", limits.max_string_bytes),
                    line,
                )
            }
            EvalAltResult::ErrorTooManyOperations(_) => Self::limit_hit(
                LimitKind::Operations,
                limits.max_operations.to_string(),
                line,
            ),
            EvalAltResult::ErrorStackOverflow(_) => Self::limit_hit(
                LimitKind::CallDepth,
                limits.max_call_depth.to_string(),
                line,
            ),
            EvalAltResult::ErrorTooManyVariables(_) => {
                Self::limit_hit(LimitKind::Variables, limits.max_variables.to_string(), line)
            }
            EvalAltResult::ErrorDataTooLarge(what, _) => {
                let what = what.to_ascii_lowercase();
                let (kind, value) = if what.contains("memory") {
                    (
                        LimitKind::Memory,
                        format!("{} bytes", limits.max_memory_bytes),
                    )
                } else if what.contains("string") {
                    (
                        LimitKind::StringSize,
                        format!("{} bytes", limits.max_string_bytes),
                    )
                } else if what.contains("map") {
                    (LimitKind::MapSize, limits.max_map_len.to_string())
                } else {
                    (LimitKind::ArraySize, limits.max_array_len.to_string())
                };
                Self::limit_hit(kind, value, line)
            }
            EvalAltResult::ErrorRuntime(value, _) => {
                let text = if value.is_unit() {
                    "exception thrown".to_owned()
                } else if value.is_string() {
                    // `throw "message"`, or a sandbox function's error.
                    value.to_string()
                } else {
                    // Not `Display`: a thrown value may be nested deep.
                    format!(
                        "exception thrown: {}",
                        super::values::debug_string(value, MAX_THROWN_BYTES)
                    )
                };
                Self::runtime(with_function(text, function), line)
            }
            other => Self::runtime(with_function(message_of(other), function), line),
        }
    }
}

/// The name of the innermost script function an error passed through.
fn innermost_function(err: &EvalAltResult) -> Option<&str> {
    let mut found = None;
    let mut cur = err;
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = cur {
        found = Some(name.as_str());
        cur = inner;
    }
    found
}

fn with_function(text: String, function: Option<&str>) -> String {
    match function {
        Some(name) if name.starts_with("anon$") => format!("{text} (in a closure)"),
        Some(name) => format!("{text} (in function '{name}')"),
        None => text,
    }
}

/// An error's message without rhai's " (line L, position C)" suffix: the
/// line travels separately.
fn message_of(err: &EvalAltResult) -> String {
    let text = err.to_string();
    let pos = err.position();
    if pos.is_none() {
        return text;
    }
    let suffix = format!(" ({pos})");
    match text.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => text,
    }
}

/// How much of a thrown value an error message shows.
const MAX_THROWN_BYTES: usize = 4096;
