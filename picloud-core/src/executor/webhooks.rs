//! Pure helpers that webhook scripts need: hashing, signatures, encodings
//! and random identifiers.
//!
//! Receiving a webhook means checking its signature (GitHub's
//! `X-Hub-Signature-256: sha256=<hex HMAC of the body>`, Stripe's, Slack's
//! …), and calling an API often means base64 credentials or a fresh
//! idempotency key. Scripts cannot write these in Rhai at any reasonable
//! cost, so the sandbox offers them:
//!
//! | function | result |
//! |---|---|
//! | `crypto::sha256(data)` | lowercase hex SHA-256 |
//! | `crypto::hmac_sha256(key, data)` | lowercase hex HMAC-SHA-256 |
//! | `crypto::equal(a, b)` | `true` if equal, in time that depends only on the lengths |
//! | `base64::encode(data)` | standard alphabet, padded |
//! | `base64::decode(s)`, `base64::decode_blob(s)` | a string (UTF-8), a blob |
//! | `base64::encode_url(data)` | URL-safe alphabet, unpadded (as in JWTs) |
//! | `base64::decode_url(s)`, `base64::decode_url_blob(s)` | a string, a blob |
//! | `hex::encode(data)` | lowercase hex |
//! | `hex::decode(s)`, `hex::decode_blob(s)` | a string (UTF-8), a blob |
//! | `uuid()` | a random (v4) UUID string |
//! | `random_bytes(n)` | a blob of `n` random bytes, `0 ≤ n ≤ 4096` |
//!
//! `data`, `key`, `a` and `b` are strings (their UTF-8 bytes) or blobs.
//! Decoding accepts padded and unpadded base64, and hex in either case.
//!
//! The implementations are RustCrypto's (`sha2`, `hmac`), `subtle`'s
//! constant-time comparison, the `base64` and `hex` crates, `uuid`, and the
//! operating system's random source (`getrandom`): nothing hand-written.
//! Every failure is a script error naming the function. Encoding makes the
//! result larger than its input (4/3 for base64, twice for hex), so its
//! size is checked against the string limit *before* it is built, with the
//! same error rhai's own checks raise.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use rhai::{
    Blob, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Module,
    NativeCallContext, Position, Shared,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// The most bytes one `random_bytes` call returns.
pub(crate) const MAX_RANDOM_BYTES: i64 = 4096;

/// Registers the `crypto`, `base64` and `hex` modules and the global
/// `uuid` and `random_bytes` functions.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("crypto", crypto_module());
    engine.register_static_module("base64", base64_module());
    engine.register_static_module("hex", hex_module());
    // Volatile: two calls with the same arguments give different results,
    // so the optimizer must never fold a call into a constant.
    FuncRegistration::new("uuid")
        .with_volatility(true)
        .register_into_engine(engine, || uuid::Uuid::new_v4().to_string());
    FuncRegistration::new("random_bytes")
        .with_volatility(true)
        .register_into_engine(engine, random_bytes);
}

/// The bytes of a string or a blob argument.
fn with_bytes<T>(
    function: &str,
    param: &str,
    value: &Dynamic,
    then: impl FnOnce(&[u8]) -> T,
) -> Fallible<T> {
    if let Some(text) = value.read_lock::<ImmutableString>() {
        return Ok(then(text.as_bytes()));
    }
    if let Some(blob) = value.read_lock::<Blob>() {
        return Ok(then(&blob));
    }
    Err(format!(
        "{function}: {param} must be a string or a blob, not {}",
        value.type_name()
    )
    .into())
}

/// Fails unless a string of `len` bytes fits the engine's string limit;
/// the error is the one rhai's own size checks raise.
fn check_string_len(ctx: &NativeCallContext, len: usize) -> Fallible<()> {
    let max = ctx.engine().max_string_size();
    if max != 0 && len > max {
        return Err(
            EvalAltResult::ErrorDataTooLarge("Length of string".into(), Position::NONE).into(),
        );
    }
    Ok(())
}

/// A decoded text as a script string, or an error naming `function`.
fn utf8(function: &str, bytes: Vec<u8>) -> Fallible<String> {
    String::from_utf8(bytes).map_err(|_| {
        format!("{function}: the decoded bytes are not UTF-8 text (use {function}_blob)").into()
    })
}

fn crypto_module() -> Shared<Module> {
    static MODULE: OnceLock<Shared<Module>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let mut module = Module::new();
            module.set_native_fn("sha256", |data: Dynamic| -> Fallible<String> {
                with_bytes("crypto::sha256", "data", &data, |data| {
                    hex::encode(Sha256::digest(data))
                })
            });
            module.set_native_fn(
                "hmac_sha256",
                |key: Dynamic, data: Dynamic| -> Fallible<String> {
                    const NAME: &str = "crypto::hmac_sha256";
                    let mut mac = with_bytes(NAME, "key", &key, |key| {
                        // HMAC takes a key of any length.
                        <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    })?
                    .map_err(|e| format!("{NAME}: {e}"))?;
                    with_bytes(NAME, "data", &data, |data| mac.update(data))?;
                    Ok(hex::encode(mac.finalize().into_bytes()))
                },
            );
            module.set_native_fn("equal", |a: Dynamic, b: Dynamic| -> Fallible<bool> {
                const NAME: &str = "crypto::equal";
                with_bytes(NAME, "a", &a, |a| {
                    with_bytes(NAME, "b", &b, |b| bool::from(a.ct_eq(b)))
                })?
            });
            module.into()
        })
        .clone()
}

/// Standard alphabet, padded on encoding, padding optional on decoding.
const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// URL-safe alphabet, unpadded on encoding, padding optional on decoding.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Registers `encode{suffix}`, `decode{suffix}` and `decode{suffix}_blob`
/// for one base64 flavour.
fn set_base64_fns(module: &mut Module, suffix: &'static str, engine: &'static GeneralPurpose) {
    let padded = suffix.is_empty();
    let encode = format!("base64::encode{suffix}");
    module.set_native_fn(
        format!("encode{suffix}"),
        move |ctx: NativeCallContext, data: Dynamic| -> Fallible<String> {
            let len = with_bytes(&encode, "data", &data, <[u8]>::len)?;
            let out = base64::encoded_len(len, padded).unwrap_or(usize::MAX);
            check_string_len(&ctx, out)?;
            with_bytes(&encode, "data", &data, |data| engine.encode(data))
        },
    );
    let decode = format!("base64::decode{suffix}");
    module.set_native_fn(
        format!("decode{suffix}"),
        move |text: ImmutableString| -> Fallible<String> {
            let bytes = engine
                .decode(text.as_bytes())
                .map_err(|e| format!("{decode}: not valid base64: {e}"))?;
            utf8(&decode, bytes)
        },
    );
    let decode_blob = format!("base64::decode{suffix}_blob");
    module.set_native_fn(
        format!("decode{suffix}_blob"),
        move |text: ImmutableString| -> Fallible<Blob> {
            Ok(engine
                .decode(text.as_bytes())
                .map_err(|e| format!("{decode_blob}: not valid base64: {e}"))?)
        },
    );
}

fn base64_module() -> Shared<Module> {
    static MODULE: OnceLock<Shared<Module>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let mut module = Module::new();
            set_base64_fns(&mut module, "", &STANDARD);
            set_base64_fns(&mut module, "_url", &URL_SAFE);
            module.into()
        })
        .clone()
}

fn hex_module() -> Shared<Module> {
    static MODULE: OnceLock<Shared<Module>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let mut module = Module::new();
            module.set_native_fn(
                "encode",
                |ctx: NativeCallContext, data: Dynamic| -> Fallible<String> {
                    const NAME: &str = "hex::encode";
                    let len = with_bytes(NAME, "data", &data, <[u8]>::len)?;
                    check_string_len(&ctx, len.saturating_mul(2))?;
                    with_bytes(NAME, "data", &data, |data| hex::encode(data))
                },
            );
            module.set_native_fn("decode", |text: ImmutableString| -> Fallible<String> {
                const NAME: &str = "hex::decode";
                let bytes = hex::decode(text.as_bytes())
                    .map_err(|e| format!("{NAME}: not valid hex: {e}"))?;
                utf8(NAME, bytes)
            });
            module.set_native_fn("decode_blob", |text: ImmutableString| -> Fallible<Blob> {
                Ok(hex::decode(text.as_bytes())
                    .map_err(|e| format!("hex::decode_blob: not valid hex: {e}"))?)
            });
            module.into()
        })
        .clone()
}

/// `random_bytes(n)`: `n` bytes from the operating system's random source.
fn random_bytes(n: i64) -> Fallible<Blob> {
    if !(0..=MAX_RANDOM_BYTES).contains(&n) {
        return Err(
            format!("random_bytes: n must be between 0 and {MAX_RANDOM_BYTES}, not {n}").into(),
        );
    }
    let mut bytes = vec![0_u8; usize::try_from(n).unwrap_or(0)];
    getrandom::fill(&mut bytes).map_err(|e| format!("random_bytes: no randomness: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use rhai::packages::{Package, StandardPackage};

    use super::*;

    /// A raw engine with the standard package, like the sandbox's.
    fn engine() -> Engine {
        let mut engine = Engine::new_raw();
        engine.register_global_module(StandardPackage::new().as_shared_module());
        register(&mut engine);
        engine
    }

    fn eval<T: Clone + Send + Sync + 'static>(script: &str) -> T {
        engine()
            .eval::<T>(script)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    fn error(script: &str) -> String {
        match engine().eval::<Dynamic>(script) {
            Ok(value) => panic!("{script}: expected an error, got {value:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            eval::<String>(r#"crypto::sha256("abc")"#),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            eval::<String>(r#"crypto::sha256("")"#),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // A blob hashes its bytes: the same as the string's.
        assert_eq!(
            eval::<String>(r#"crypto::sha256(hex::decode_blob("616263"))"#),
            eval::<String>(r#"crypto::sha256("abc")"#)
        );
    }

    #[test]
    fn hmac_sha256_rfc_4231_test_case_2() {
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            eval::<String>(r#"crypto::hmac_sha256("Jefe", "what do ya want for nothing?")"#),
            expected
        );
        // Any mix of strings and blobs.
        assert_eq!(
            eval::<String>(
                r#"crypto::hmac_sha256(hex::decode_blob("4a656665"), "what do ya want for nothing?")"#
            ),
            expected
        );
        assert_eq!(
            eval::<String>(
                r#"crypto::hmac_sha256("Jefe", base64::decode_blob("d2hhdCBkbyB5YSB3YW50IGZvciBub3RoaW5nPw=="))"#
            ),
            expected
        );
    }

    #[test]
    fn hmac_sha256_rfc_4231_test_case_6_key_longer_than_a_block() {
        // A 131-byte key of 0xaa.
        let script = r#"
            let key = blob(131, 0xaa);
            crypto::hmac_sha256(key, "Test Using Larger Than Block-Size Key - Hash Key First")
        "#;
        assert_eq!(
            eval::<String>(script),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_github_style_signature_check_reads_well() {
        let script = r#"
            let body = "{\"action\":\"opened\"}";
            let header = "sha256=" + crypto::hmac_sha256("It's a Secret to Everybody", body);
            crypto::equal("sha256=" + crypto::hmac_sha256("It's a Secret to Everybody", body), header)
        "#;
        assert!(eval::<bool>(script));
    }

    #[test]
    fn equal_compares_strings_and_blobs() {
        assert!(eval::<bool>(r#"crypto::equal("abc", "abc")"#));
        assert!(!eval::<bool>(r#"crypto::equal("abc", "abd")"#));
        assert!(!eval::<bool>(r#"crypto::equal("abc", "abcd")"#));
        assert!(!eval::<bool>(r#"crypto::equal("", "a")"#));
        assert!(eval::<bool>(r#"crypto::equal("", "")"#));
        assert!(eval::<bool>(
            r#"crypto::equal("abc", hex::decode_blob("616263"))"#
        ));
    }

    #[test]
    fn arguments_of_other_types_are_errors_naming_the_function() {
        let message = error("crypto::sha256(42)");
        assert!(
            message.contains("crypto::sha256: data must be a string or a blob, not i64"),
            "{message}"
        );
        let message = error(r#"crypto::hmac_sha256((), "x")"#);
        assert!(
            message.contains("crypto::hmac_sha256: key must be"),
            "{message}"
        );
        let message = error(r#"crypto::equal("x", [1])"#);
        assert!(message.contains("crypto::equal: b must be"), "{message}");
        let message = error("base64::encode(1.5)");
        assert!(
            message.contains("base64::encode: data must be"),
            "{message}"
        );
        let message = error("hex::encode(true)");
        assert!(message.contains("hex::encode: data must be"), "{message}");
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(eval::<String>(r#"base64::encode("hello")"#), "aGVsbG8=");
        assert_eq!(eval::<String>(r#"base64::encode("")"#), "");
        assert_eq!(eval::<String>(r#"base64::decode("aGVsbG8=")"#), "hello");
        assert_eq!(eval::<String>(r#"base64::decode("aGVsbG8")"#), "hello");
        assert_eq!(
            eval::<String>(r#"base64::decode(base64::encode("héllo wörld ✓"))"#),
            "héllo wörld ✓"
        );
        assert_eq!(
            eval::<Blob>(r#"base64::decode_blob(base64::encode(hex::decode_blob("00ff10fe")))"#),
            vec![0x00, 0xff, 0x10, 0xfe]
        );
        assert_eq!(
            eval::<String>(r#"base64::encode(hex::decode_blob("fbff"))"#),
            "+/8="
        );
    }

    #[test]
    fn base64_url_safe_round_trips() {
        assert_eq!(
            eval::<String>(r#"base64::encode_url(hex::decode_blob("fbff"))"#),
            "-_8"
        );
        assert_eq!(
            eval::<Blob>(r#"base64::decode_url_blob("-_8")"#),
            vec![0xfb, 0xff]
        );
        assert_eq!(
            eval::<Blob>(r#"base64::decode_url_blob("-_8=")"#),
            vec![0xfb, 0xff]
        );
        assert_eq!(
            eval::<String>(r#"base64::decode_url(base64::encode_url("{\"alg\":\"HS256\"}"))"#),
            "{\"alg\":\"HS256\"}"
        );
    }

    #[test]
    fn bad_base64_is_an_error() {
        let message = error(r#"base64::decode("not base64!")"#);
        assert!(
            message.contains("base64::decode: not valid base64"),
            "{message}"
        );
        let message = error(r#"base64::decode_blob("a")"#);
        assert!(
            message.contains("base64::decode_blob: not valid base64"),
            "{message}"
        );
        // The URL-safe alphabet is not the standard one, and vice versa.
        let message = error(r#"base64::decode_url("+/8=")"#);
        assert!(
            message.contains("base64::decode_url: not valid base64"),
            "{message}"
        );
        let message = error(r#"base64::decode("-_8=")"#);
        assert!(
            message.contains("base64::decode: not valid base64"),
            "{message}"
        );
    }

    #[test]
    fn decoding_bytes_that_are_not_text_into_a_string_is_an_error() {
        let message = error(r#"base64::decode("/w==")"#);
        assert!(
            message.contains(
                "base64::decode: the decoded bytes are not UTF-8 text (use base64::decode_blob)"
            ),
            "{message}"
        );
        let message = error(r#"hex::decode("ff")"#);
        assert!(
            message.contains("hex::decode: the decoded bytes are not UTF-8 text"),
            "{message}"
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(eval::<String>(r#"hex::encode("abc")"#), "616263");
        assert_eq!(eval::<String>(r#"hex::encode(blob(2, 0xab))"#), "abab");
        assert_eq!(eval::<String>(r#"hex::decode("616263")"#), "abc");
        assert_eq!(eval::<String>(r#"hex::decode("6A6B")"#), "jk");
        assert_eq!(eval::<Blob>(r#"hex::decode_blob("00FF")"#), vec![0, 255]);
        assert_eq!(eval::<Blob>(r#"hex::decode_blob("")"#), Vec::<u8>::new());
        assert_eq!(
            eval::<String>(r#"hex::decode(hex::encode("✓ ok"))"#),
            "✓ ok"
        );
    }

    #[test]
    fn bad_hex_is_an_error() {
        for input in ["abc", "zz", "0x00", "00 11"] {
            let message = error(&format!("hex::decode_blob(\"{input}\")"));
            assert!(
                message.contains("hex::decode_blob: not valid hex"),
                "{message}"
            );
        }
        let message = error(r#"hex::decode("g0")"#);
        assert!(message.contains("hex::decode: not valid hex"), "{message}");
    }

    #[test]
    fn encoding_checks_the_string_limit_first() {
        let mut engine = engine();
        engine.set_max_string_size(100);
        // 60 bytes are 80 characters of base64 but 120 of hex.
        let ok = engine
            .eval::<String>("base64::encode(blob(60, 1))")
            .unwrap();
        assert_eq!(ok.len(), 80);
        let err = engine
            .eval::<String>("hex::encode(blob(60, 1))")
            .unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorDataTooLarge(ref what, _) if what == "Length of string"),
            "{err}"
        );
        let err = engine
            .eval::<String>("base64::encode_url(blob(80, 1))")
            .unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorDataTooLarge(..)),
            "{err}"
        );
    }

    #[test]
    fn uuids_are_random_v4() {
        let a = eval::<String>("uuid()");
        let b = eval::<String>("uuid()");
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, parsed.hyphenated().to_string());
        // Two calls in one script differ too.
        assert!(eval::<bool>("uuid() != uuid()"));
    }

    #[test]
    fn random_bytes_within_bounds() {
        assert_eq!(eval::<Blob>("random_bytes(0)").len(), 0);
        assert_eq!(eval::<Blob>("random_bytes(32)").len(), 32);
        assert_eq!(eval::<Blob>("random_bytes(4096)").len(), 4096);
        assert_ne!(
            eval::<Blob>("random_bytes(32)"),
            eval::<Blob>("random_bytes(32)")
        );
        for n in ["-1", "4097", "9223372036854775807"] {
            let message = error(&format!("random_bytes({n})"));
            assert!(
                message.contains(&format!(
                    "random_bytes: n must be between 0 and 4096, not {n}"
                )),
                "{message}"
            );
        }
    }
}
