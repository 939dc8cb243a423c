//! Token format: `<prefix>_<body><check>`.
//!
//! - `prefix` names the kind (`agat` access token, `agrt` refresh token, `agac`
//!   authorization code, `agcs` client secret), so secret scanners can recognise a leaked
//!   value: `ag(at|rt|ac|cs)_[A-Za-z0-9_-]{51}`.
//! - `body` is 32 bytes (256 bits) from the operating system's CSPRNG, base64url.
//! - `check` is the first 6 bytes of HMAC-SHA256(key, prefix + "_" + body), base64url.
//!   The key is random and kept in the store, so every instance sharing a store shares it.
//!   A malformed, truncated or forged value fails the check and is rejected without a
//!   store lookup (a CRC would stop typos, not forgeries).
//!
//! Only [`hash`] (SHA-256 of the whole value) is ever stored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::{Secret, SecretKey};

const BODY_BYTES: usize = 32;
const CHECK_BYTES: usize = 6;
const BODY_CHARS: usize = 43; // base64url of 32 bytes, unpadded
const CHECK_CHARS: usize = 8; // base64url of 6 bytes
const PREFIX_CHARS: usize = 5; // "agat_"

/// Total length of every token.
pub const TOKEN_LEN: usize = PREFIX_CHARS + BODY_CHARS + CHECK_CHARS;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Access,
    Refresh,
    Code,
    ClientSecret,
}

impl Kind {
    /// The prefix including the underscore.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Access => "agat_",
            Kind::Refresh => "agrt_",
            Kind::Code => "agac_",
            Kind::ClientSecret => "agcs_",
        }
    }

    /// The kind a value claims by its prefix.
    pub fn of(value: &str) -> Option<Kind> {
        [Kind::Access, Kind::Refresh, Kind::Code, Kind::ClientSecret]
            .into_iter()
            .find(|k| value.starts_with(k.prefix()))
    }
}

/// SHA-256 of a token value: the only form stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash prefix is enough to correlate log lines; it reveals nothing usable.
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl TokenHash {
    /// Hex, for the CLI and logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Hashes a token value.
pub fn hash(value: &str) -> TokenHash {
    TokenHash(Sha256::digest(value.as_bytes()).into())
}

/// Why a value is not a well-formed token of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("wrong length")]
    Length,
    #[error("wrong kind of token")]
    Kind,
    #[error("invalid characters")]
    Charset,
    #[error("checksum mismatch")]
    Checksum,
}

/// Mints and checks tokens with the store's key.
#[derive(Clone)]
pub struct Codec {
    /// HMAC state with the key already absorbed: cloning it per check saves the two
    /// key-derivation compressions on the request path.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec([redacted])")
    }
}

impl Codec {
    /// A codec for `key`.
    pub fn new(key: SecretKey) -> Codec {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Codec { keyed }
    }

    fn check(&self, head: &str) -> [u8; CHECK_BYTES] {
        let mut mac = self.keyed.clone();
        mac.update(head.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; CHECK_BYTES];
        out.copy_from_slice(&tag[..CHECK_BYTES]);
        out
    }

    /// A full-length MAC of `data` under the store's key, with a `label` separating
    /// purposes (e.g. CSRF tokens of the authorize page).
    pub fn sign(&self, label: &str, data: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(label.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// Checks a value made by [`Codec::sign`], in constant time.
    pub fn verify_signature(&self, label: &str, data: &str, signature: &str) -> bool {
        bool::from(
            self.sign(label, data)
                .as_bytes()
                .ct_eq(signature.as_bytes()),
        )
    }

    /// The token of `kind` derived from `seed`: always the same value for the same seed
    /// and store key. Reused connections got such tokens before they were sealed; whoever
    /// reads the store can compute them, so this serves only to find and revoke them
    /// (`oauth::reuse`). Never issue one.
    pub fn legacy_derive(&self, kind: Kind, seed: &str) -> Secret {
        let mut mac = self.keyed.clone();
        mac.update(b"derive\0");
        mac.update(seed.as_bytes());
        let body = mac.finalize().into_bytes();
        let mut value = String::with_capacity(TOKEN_LEN);
        value.push_str(kind.prefix());
        B64.encode_string(&body[..BODY_BYTES], &mut value);
        let check = self.check(&value);
        B64.encode_string(check, &mut value);
        Secret::new(value)
    }

    /// A new random token of `kind`.
    pub fn mint(&self, kind: Kind) -> Secret {
        let mut body = zeroize::Zeroizing::new([0u8; BODY_BYTES]);
        fill_random(&mut body[..]);
        let mut value = String::with_capacity(TOKEN_LEN);
        value.push_str(kind.prefix());
        B64.encode_string(&body[..], &mut value);
        let check = self.check(&value);
        B64.encode_string(check, &mut value);
        Secret::new(value)
    }

    /// Checks that `value` is a well-formed, genuine token of `kind`. No I/O.
    pub fn verify(&self, value: &str, kind: Kind) -> Result<(), FormatError> {
        if value.len() != TOKEN_LEN {
            return Err(FormatError::Length);
        }
        if !value.starts_with(kind.prefix()) {
            return Err(FormatError::Kind);
        }
        let rest = &value.as_bytes()[PREFIX_CHARS..];
        if !rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(FormatError::Charset);
        }
        let (head, check) = value.split_at(PREFIX_CHARS + BODY_CHARS);
        let mut given = [0u8; CHECK_BYTES];
        match B64.decode_slice(check, &mut given) {
            Ok(CHECK_BYTES) => {}
            _ => return Err(FormatError::Charset),
        }
        if bool::from(self.check(head).ct_eq(&given)) {
            Ok(())
        } else {
            Err(FormatError::Checksum)
        }
    }
}

/// Fills `buf` from the OS CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // getrandom only fails if the OS has no entropy source at all, in which case no
    // secure token can be made and continuing would be worse than stopping.
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
}

/// A random key for a new store.
pub fn new_key() -> SecretKey {
    let mut k = [0u8; 32];
    fill_random(&mut k);
    SecretKey::new(k)
}

/// A random identifier (e.g. a refresh-token family), 16 bytes as hex.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec::new(SecretKey::new([42; 32]))
    }

    #[test]
    fn minted_tokens_verify_and_look_right() {
        let c = codec();
        for kind in [Kind::Access, Kind::Refresh, Kind::Code, Kind::ClientSecret] {
            let t = c.mint(kind);
            let v = t.expose();
            assert_eq!(v.len(), TOKEN_LEN);
            assert!(v.starts_with(kind.prefix()));
            assert_eq!(Kind::of(v), Some(kind));
            c.verify(v, kind).unwrap();
        }
        assert_ne!(c.mint(Kind::Access).expose(), c.mint(Kind::Access).expose());
        let d = c.legacy_derive(Kind::Access, "client|alice|loc-1||0");
        assert_eq!(
            d.expose(),
            c.legacy_derive(Kind::Access, "client|alice|loc-1||0")
                .expose()
        );
        assert_ne!(
            d.expose(),
            c.legacy_derive(Kind::Access, "client|alice|loc-1||1")
                .expose()
        );
        c.verify(d.expose(), Kind::Access).unwrap();
    }

    #[test]
    fn malformed_and_forged_values_are_rejected() {
        let c = codec();
        let t = c.mint(Kind::Access);
        let v = t.expose();
        assert_eq!(c.verify(v, Kind::Refresh), Err(FormatError::Kind));
        assert_eq!(
            c.verify(&v[..TOKEN_LEN - 1], Kind::Access),
            Err(FormatError::Length)
        );
        assert_eq!(c.verify("", Kind::Access), Err(FormatError::Length));
        let mut chars: Vec<char> = v.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.iter().collect();
        assert_eq!(c.verify(&flipped, Kind::Access), Err(FormatError::Checksum));
        let bad_char = format!("{}!{}", &v[..10], &v[11..]);
        assert_eq!(c.verify(&bad_char, Kind::Access), Err(FormatError::Charset));
        // Valid under another key = forged here.
        let other = Codec::new(SecretKey::new([1; 32])).mint(Kind::Access);
        assert_eq!(
            c.verify(other.expose(), Kind::Access),
            Err(FormatError::Checksum)
        );
        let utf8 = format!("agat_{}", "é".repeat(25));
        assert!(c.verify(&utf8, Kind::Access).is_err());
    }

    #[test]
    fn hash_is_sha256_and_debug_is_short() {
        let h = hash("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{h:?}"), "TokenHash(ba7816bf…)");
    }
}
