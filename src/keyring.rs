//! Keys for secrets kept at rest: the tokens of reused connections (`reuse_tokens`),
//! which the store holds encrypted. The keys come from a file (`oauth.secrets_key_file`)
//! or the environment (`AUTHGATE_OAUTH__SECRETS_KEYS`), never from the store, so a copy
//! of the database alone opens nothing (DESIGN §10, "Secrets at rest").
//!
//! A keyring is a list of `ID:KEY` entries, the key 32 bytes in base64 (standard or
//! URL-safe, padded or not): `openssl rand -base64 32`. The first key seals; every key
//! opens what was sealed under its id, which is stored beside the ciphertext, so a new
//! key can be put first while the old ones still open what they sealed.
//!
//! Sealing is XChaCha20-Poly1305: a random 24-byte nonce per value (random nonces of
//! that size never repeat in practice, whatever the number of values), and associated
//! data that binds the ciphertext to where it is stored, so it opens nowhere else.

use std::fmt;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The environment variable that may hold a keyring (`oauth.secrets_keys`, which the
/// configuration file itself may not set).
pub const KEYS_VAR: &str = "AUTHGATE_OAUTH__SECRETS_KEYS";

/// Nonce bytes at the start of every sealed value.
const NONCE_BYTES: usize = 24;

/// Base64 of either alphabet, with or without padding.
const LENIENT: [GeneralPurpose; 2] = [
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    ),
    GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    ),
];

/// Named keys; the first seals. Never empty. `Debug` shows the ids only; the ciphers
/// zero their keys when dropped.
pub struct Keyring {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// A value sealed by [`Keyring::seal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The id of the key it was sealed under.
    pub key_id: String,
    /// Nonce, ciphertext and tag.
    pub bytes: Vec<u8>,
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No configured key has this id (it was removed from the keyring).
    #[error("it is sealed under key id {0:?}, which is not in oauth.secrets_key_file / AUTHGATE_OAUTH__SECRETS_KEYS")]
    UnknownKey(String),
    /// The key with this id does not open it: the key was changed under the same id,
    /// or the stored value was altered or moved.
    #[error("it does not open with key id {0:?}: that key was changed under the same id, or the stored value was altered")]
    Mismatch(String),
}

impl Keyring {
    /// Parses entries `ID:KEY` separated by commas, spaces or line ends (the form of
    /// `AUTHGATE_OAUTH__SECRETS_KEYS`). The error names the entry by its position, never
    /// its key.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let entries = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(i, e)| (format!("entry {}", i + 1), e));
        Keyring::from_entries(entries)
    }

    /// Parses a key file: one `ID:KEY` per line; blank lines and lines starting with
    /// `#` are ignored. The error names the line, never its key.
    pub fn parse_file(text: &str) -> Result<Keyring, String> {
        let entries = text
            .lines()
            .enumerate()
            .map(|(i, l)| (format!("line {}", i + 1), l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        Keyring::from_entries(entries)
    }

    /// Reads and parses the key file at `path`.
    pub fn read_file(path: &std::path::Path) -> Result<Keyring, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        Keyring::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_entries<'a>(
        entries: impl Iterator<Item = (String, &'a str)>,
    ) -> Result<Keyring, String> {
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for (at, entry) in entries {
            let Some((id, key)) = entry.split_once(':') else {
                return Err(format!(
                    "{at}: expected ID:KEY (a key id, a colon, then 32 bytes in base64)"
                ));
            };
            check_id(id).map_err(|e| format!("{at}: {e}"))?;
            if keys.iter().any(|(other, _)| other == id) {
                return Err(format!("{at}: key id {id:?} appears twice"));
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            let decoded = LENIENT
                .iter()
                .find_map(|engine| engine.decode_slice(key.trim(), &mut bytes[..]).ok());
            if decoded != Some(32) {
                return Err(format!(
                    "{at} (key id {id:?}): the key must be 32 bytes in base64, e.g. from `openssl rand -base64 32`"
                ));
            }
            keys.push((id.to_owned(), XChaCha20Poly1305::new((&*bytes).into())));
        }
        if keys.is_empty() {
            return Err("no keys: expected at least one ID:KEY entry".into());
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Every key id, the sealing one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Seals `plaintext` under the first key, bound to `aad` (which is not stored: whoever
    /// opens it must present the same).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_BYTES];
        crate::token::fill_random(&mut nonce);
        // Encryption fails only for plaintexts beyond the cipher's limit (256 GiB).
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 seals any short value"));
        let mut bytes = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: id.clone(),
            bytes,
        }
    }

    /// Opens a value sealed under `key_id` for `aad`.
    pub fn open(
        &self,
        key_id: &str,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let Some((_, cipher)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return Err(OpenError::UnknownKey(key_id.to_owned()));
        };
        if sealed.len() < NONCE_BYTES {
            return Err(OpenError::Mismatch(key_id.to_owned()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Mismatch(key_id.to_owned()))
    }
}

/// A key id: 1 to 32 characters from `A-Z a-z 0-9 . _ -`.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "key id {id:?}: 1 to 32 characters from A-Z, a-z, 0-9, '.', '_', '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    fn entry(id: &str, byte: u8) -> String {
        format!("{id}:{}", STANDARD.encode([byte; 32]))
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens_its_own() {
        let old = Keyring::parse(&entry("k1", 1)).unwrap();
        let sealed = old.seal(b"where", b"agat_value");
        assert_eq!(sealed.key_id, "k1");
        assert!(!contains(&sealed.bytes, b"agat_value"));
        // Rotation: a new key first, the old one still opens what it sealed.
        let rotated = Keyring::parse(&format!("{}, {}", entry("k2", 2), entry("k1", 1))).unwrap();
        assert_eq!(rotated.primary_id(), "k2");
        assert_eq!(
            &rotated.open("k1", &sealed.bytes, b"where").unwrap()[..],
            b"agat_value"
        );
        assert_eq!(rotated.seal(b"where", b"x").key_id, "k2");
        // Two seals of one value differ (random nonces).
        assert_ne!(
            old.seal(b"where", b"v").bytes,
            old.seal(b"where", b"v").bytes
        );
    }

    #[test]
    fn a_value_opens_only_with_its_key_and_its_place() {
        let ring = Keyring::parse(&entry("k1", 1)).unwrap();
        let sealed = ring.seal(b"connection a", b"secret");
        assert_eq!(
            ring.open("k1", &sealed.bytes, b"connection b"),
            Err(OpenError::Mismatch("k1".into())),
            "moved to another row"
        );
        let changed = Keyring::parse(&entry("k1", 9)).unwrap();
        assert_eq!(
            changed.open("k1", &sealed.bytes, b"connection a"),
            Err(OpenError::Mismatch("k1".into())),
            "another key under the same id"
        );
        let other = Keyring::parse(&entry("k2", 1)).unwrap();
        assert_eq!(
            other.open("k1", &sealed.bytes, b"connection a"),
            Err(OpenError::UnknownKey("k1".into()))
        );
        let mut flipped = sealed.bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(ring.open("k1", &flipped, b"connection a").is_err());
        assert!(ring
            .open("k1", &sealed.bytes[..10], b"connection a")
            .is_err());
    }

    #[test]
    fn entries_parse_from_the_environment_and_files() {
        let unpadded = format!("k1:{}", URL_SAFE_NO_PAD.encode([0xfb; 32]));
        let ring = Keyring::parse(&format!("{unpadded}\n{}", entry("k.2_x-y", 3))).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k1", "k.2_x-y"]);
        let file = format!(
            "# rotated 2025-01\n\n  {}\n{}\n",
            entry("new", 4),
            entry("old", 5)
        );
        let ring = Keyring::parse_file(&file).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["new", "old"]);
        assert_eq!(
            format!("{ring:?}"),
            r#"Keyring { key_ids: ["new", "old"] }"#
        );
    }

    #[test]
    fn bad_entries_are_named_without_their_key() {
        let short = format!("k1:{}", STANDARD.encode([7u8; 16]));
        for (text, want) in [
            ("", "no keys"),
            ("nocolon", "entry 1: expected ID:KEY"),
            (
                short.as_str(),
                "entry 1 (key id \"k1\"): the key must be 32 bytes",
            ),
            ("k1:not*base64", "must be 32 bytes"),
            (":AAAA", "key id \"\""),
        ] {
            let e = Keyring::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains(&short[3..]), "{e}");
        }
        let twice = format!("{},{}", entry("k1", 1), entry("k1", 2));
        assert!(Keyring::parse(&twice)
            .unwrap_err()
            .contains("entry 2: key id \"k1\" appears twice"));
        let e = Keyring::parse_file(&format!("# keys\n{}\nk2 oops\n", entry("k1", 1))).unwrap_err();
        assert!(e.starts_with("line 3:"), "{e}");
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}
