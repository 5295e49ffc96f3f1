//! The inputs every fuzz property draws from: the committed seed corpus, mutations of it, and
//! malformed JSON built on purpose (deep nesting, huge numbers, NUL, lone surrogates, duplicate
//! keys).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

/// The seeds of corpus `name` (`tests/fuzz/corpus/<name>/*`), sorted by file name.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "corpus {name} has no seeds");
    seeds
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let nasty = prop_oneof![
        Just(b"\0".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just(b"\\udfff\\ud800".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"1e999999".to_vec()),
        Just(b"-99999999999999999999999999999".to_vec()),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
        Just(b"{\"a\":".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b"null".to_vec()),
        Just(b",".to_vec()),
        Just(b"}".to_vec()),
        Just("é€😀".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 1..16),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bits)| Edit::Flip(at, bits)),
        (any::<usize>(), nasty).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..32usize).prop_map(|(at, len)| Edit::Remove(at, len)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Edit::Duplicate(at, len)),
    ]
}

fn apply(mut bytes: Vec<u8>, edit: &Edit) -> Vec<u8> {
    let len = bytes.len().max(1);
    match edit {
        Edit::Flip(at, bits) => {
            if !bytes.is_empty() {
                bytes[at % len] ^= bits | 1;
            }
        }
        Edit::Insert(at, extra) => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, extra.iter().copied());
        }
        Edit::Remove(at, n) => {
            let at = at % len;
            let end = (at + n).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
        Edit::Truncate(at) => bytes.truncate(at % len),
        Edit::Duplicate(at, n) => {
            let at = at % len;
            let end = (at + n).min(bytes.len());
            if at < end {
                let copy = bytes[at..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

/// A seed of `seeds` with up to eight edits applied.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec(edit(), 0..8),
    )
        .prop_map(|(seed, edits)| edits.iter().fold(seed, apply))
}

/// Arbitrary JSON values, up to a few levels deep, with the numbers and strings decoders trip on.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("+14155552671".into())),
        Just(Value::String("dana@example.com".into())),
        Just(Value::String("2026-11-30T09:00:00Z".into())),
        Just(Value::String("a\u{0}b".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON text nested `depth` arrays deep.
pub fn deeply_nested(depth: usize) -> Vec<u8> {
    let mut text = "[".repeat(depth).into_bytes();
    text.extend(std::iter::repeat_n(b']', depth));
    text
}

/// Any bytes: mutated seeds most of the time, raw noise and deep nesting otherwise.
pub fn hostile(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => mutated(seeds),
        2 => proptest::collection::vec(any::<u8>(), 0..512),
        1 => (1usize..5000).prop_map(deeply_nested),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
    ]
}
