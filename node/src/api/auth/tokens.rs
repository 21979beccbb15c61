//! Bearer tokens: made, hashed, parsed and checked. Only the hash of a
//! secret is ever stored.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::meta::{now_ms, Token};

/// Lowercase hex SHA-256 of a token secret.
pub fn secret_sha256(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// A new token for `principal`: the record to store (holding only the
/// secret's hash) and the token string, to be shown once.
pub fn new_token(principal: &str) -> (Token, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let text = format!("tresor_{id}_{}", hex::encode(secret));
    let token = Token {
        id,
        principal: principal.to_string(),
        secret_sha256: secret_sha256(&secret),
        created_ms: now_ms(),
    };
    (token, text)
}

/// Splits `tresor_<16 hex id>_<64 hex secret>` into id and secret bytes.
pub fn parse_token(text: &str) -> Option<(&str, Vec<u8>)> {
    let rest = text.strip_prefix("tresor_")?;
    let (id, secret) = rest.split_once('_')?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if id.len() != 16 || secret.len() != 64 || !lower_hex(id) || !lower_hex(secret) {
        return None;
    }
    Some((id, hex::decode(secret).ok()?))
}

/// Whether `secret` is `token`'s secret (compared in constant time).
pub fn token_matches(token: &Token, secret: &[u8]) -> bool {
    let got = secret_sha256(secret);
    let want = token.secret_sha256.as_bytes();
    got.len() == want.len()
        && got
            .as_bytes()
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
