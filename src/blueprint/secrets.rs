//! Store credentials: the secrets a blueprint declares (`secrets:` in `blueprint.yaml`),
//! their generation with a CSPRNG, and [`StoreSecrets`], the name → value map a render
//! takes as input.
//!
//! Secrets are generated once per store by the caller and passed to every later render,
//! so a re-render never changes a password. This module must never log or print a value:
//! `Debug` shows names only, and values are zeroized when the map is dropped.

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroize;

/// One credential a blueprint needs, as declared in `blueprint.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Key in the `secrets` template context, e.g. `db_password`.
    pub name: String,
    /// Number of characters generated.
    #[serde(default = "default_length")]
    pub length: usize,
    /// Characters drawn from.
    #[serde(default)]
    pub alphabet: Alphabet,
    /// What the credential is for (documentation only).
    #[serde(default)]
    pub description: String,
}

fn default_length() -> usize {
    32
}

/// Shortest secret a blueprint may declare; shorter ones are a load error.
pub const MIN_SECRET_LENGTH: usize = 16;
/// Longest secret a blueprint may declare.
pub const MAX_SECRET_LENGTH: usize = 256;

/// The set of characters a secret is drawn from. Every built-in alphabet is safe in URLs,
/// shell words, env values and YAML without quoting, so a generated value can be placed in
/// a connection string as is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alphabet {
    /// `A-Z a-z 0-9` (about 5.95 bits per character).
    #[default]
    Alphanumeric,
    /// `a-z 0-9`, for values that must be lowercase.
    LowerAlphanumeric,
    /// `0-9 a-f`.
    Hex,
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

impl Alphabet {
    fn chars(self) -> &'static [u8] {
        match self {
            Alphabet::Alphanumeric => ALNUM,
            Alphabet::LowerAlphanumeric => LOWER_ALNUM,
            Alphabet::Hex => HEX,
        }
    }

    /// Whether `value` uses only this alphabet's characters.
    pub fn admits(self, value: &str) -> bool {
        // Range tests, not a search of `chars()`: every render checks every secret.
        match self {
            Alphabet::Alphanumeric => value.bytes().all(|b| b.is_ascii_alphanumeric()),
            Alphabet::LowerAlphanumeric => value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            Alphabet::Hex => value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        }
    }

    /// The name used in `blueprint.yaml`, e.g. `lower_alphanumeric`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alphabet::Alphanumeric => "alphanumeric",
            Alphabet::LowerAlphanumeric => "lower_alphanumeric",
            Alphabet::Hex => "hex",
        }
    }

    /// The characters, for messages: `A-Z a-z 0-9`.
    pub fn describe(self) -> &'static str {
        match self {
            Alphabet::Alphanumeric => "A-Z a-z 0-9",
            Alphabet::LowerAlphanumeric => "a-z 0-9",
            Alphabet::Hex => "0-9 a-f",
        }
    }
}

impl SecretSpec {
    /// Whether `value` is one this spec could have generated: exactly `length`
    /// characters of its alphabet. The problem, if not, names the secret and what is
    /// allowed, and never quotes the value.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let alphabet_ok = self.alphabet.admits(value);
        // Every alphabet is ASCII, so once it admits the value bytes are characters.
        let length_ok = alphabet_ok && value.len() == self.length;
        if alphabet_ok && length_ok {
            return Ok(());
        }
        let what = if alphabet_ok {
            format!("has {} characters", value.len())
        } else {
            "has characters outside that alphabet".to_owned()
        };
        Err(format!(
            "secret `{}` must be exactly {} characters of {} (`{}`); the value given {what}",
            self.name,
            self.length,
            self.alphabet.describe(),
            self.alphabet.as_str(),
        ))
    }

    /// A fresh value drawn uniformly from the alphabet with `rng`, which must be a CSPRNG.
    pub fn generate_with<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        let chars = self.alphabet.chars();
        (0..self.length)
            .map(|_| char::from(*chars.choose(rng).expect("alphabets are not empty")))
            .collect()
    }
}

/// The credentials of one store: secret name → value.
///
/// `Debug` prints names only; values are zeroized on drop. It serializes as a plain map so
/// the caller can encrypt it for storage.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreSecrets(BTreeMap<String, String>);

impl StoreSecrets {
    pub fn new() -> Self {
        StoreSecrets(BTreeMap::new())
    }

    /// Names of the secrets held, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets a value, zeroizing the one it replaces.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        if let Some(mut old) = self.0.insert(name.into(), value.into()) {
            old.zeroize();
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Name → value pairs, sorted by name. For the renderer; never log the values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Generates every secret in `specs` that is not present yet; keeps existing values.
    pub fn complete(&mut self, specs: &[SecretSpec]) {
        let mut rng = rand::rng();
        for spec in specs {
            if !self.0.contains_key(&spec.name) {
                let value = spec.generate_with(&mut rng);
                self.0.insert(spec.name.clone(), value);
            }
        }
    }
}

impl FromIterator<(String, String)> for StoreSecrets {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        StoreSecrets(iter.into_iter().collect())
    }
}

impl fmt::Debug for StoreSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl Drop for StoreSecrets {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, length: usize, alphabet: Alphabet) -> SecretSpec {
        SecretSpec {
            name: name.into(),
            length,
            alphabet,
            description: String::new(),
        }
    }

    #[test]
    fn debug_shows_names_only() {
        let mut s = StoreSecrets::new();
        s.insert("db_password", "hunter2-very-secret");
        let shown = format!("{s:?}");
        assert!(shown.contains("db_password"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let pretty = format!("{s:#?}");
        assert!(!pretty.contains("hunter2"), "{pretty}");
    }

    #[test]
    fn generated_values_follow_the_spec() {
        let specs = [
            spec("a", 32, Alphabet::Alphanumeric),
            spec("b", 20, Alphabet::Hex),
            spec("c", 40, Alphabet::LowerAlphanumeric),
        ];
        let mut s = StoreSecrets::new();
        s.complete(&specs);
        for sp in &specs {
            let v = s.get(&sp.name).unwrap();
            assert_eq!(v.len(), sp.length);
            assert!(sp.alphabet.admits(v), "{} not in alphabet", sp.name);
        }
        let mut t = StoreSecrets::new();
        t.complete(&specs);
        assert_ne!(s.get("a"), t.get("a"), "two stores must not share secrets");
    }

    #[test]
    fn check_names_the_secret_and_the_rule_but_never_the_value() {
        let s = spec("redis_password", 16, Alphabet::Alphanumeric);
        assert_eq!(s.check("abcdEFGH12345678"), Ok(()));
        let bad = "abcdEFGH1234567\n";
        let err = s.check(bad).unwrap_err();
        assert_eq!(
            err,
            "secret `redis_password` must be exactly 16 characters of A-Z a-z 0-9 (`alphanumeric`); the value given has characters outside that alphabet"
        );
        assert!(!err.contains("abcdEFGH"));
        let err = s.check("abcdEFGH1234567").unwrap_err();
        assert!(err.ends_with("the value given has 15 characters"), "{err}");
        let hex = spec("k", 16, Alphabet::Hex);
        assert!(hex.check("0123456789abcdef").is_ok());
        assert!(hex.check("0123456789abcdeF").is_err());
        assert!(hex.check("0123456789abcdeg").is_err());
        let lower = spec("k", 16, Alphabet::LowerAlphanumeric);
        assert!(lower.check("0123456789abcxyz").is_ok());
        assert!(lower.check("0123456789abcxyZ").is_err());
        // Multi-byte characters are outside every alphabet, whatever their byte count.
        assert!(s.check("abcdEFGH1234567ü").is_err());
        // `admits` agrees with the characters generation draws from.
        for a in [
            Alphabet::Alphanumeric,
            Alphabet::LowerAlphanumeric,
            Alphabet::Hex,
        ] {
            for b in 0..=127u8 {
                let one = char::from(b).to_string();
                assert_eq!(a.admits(&one), a.chars().contains(&b), "{a:?} {b}");
            }
        }
    }

    #[test]
    fn complete_keeps_existing_values() {
        let mut s = StoreSecrets::new();
        s.insert("a", "keep-me");
        s.complete(&[spec("a", 32, Alphabet::Hex), spec("b", 16, Alphabet::Hex)]);
        assert_eq!(s.get("a"), Some("keep-me"));
        assert_eq!(s.get("b").map(str::len), Some(16));
        assert_eq!(s.names().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn serializes_as_a_plain_map() {
        let mut s = StoreSecrets::new();
        s.insert("x", "1");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"x":"1"}"#);
        let back: StoreSecrets = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
