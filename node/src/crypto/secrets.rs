//! S3 secrets kept by the cluster: SigV4 verification needs the secret
//! itself (not a hash, as bearer tokens can use), so it is stored sealed
//! by the current master key, with the access key id and the master key's
//! id as associated data, and opened only to check a signature.

use rand::RngCore;
use ring::aead::{Aad, Nonce, NONCE_LEN};

use super::{aead_key, CryptoError, MasterKeys};
use crate::meta::WrappedKey;

/// Characters of a generated secret: 40 of them carry 238 bits.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Upper-case letters and digits, for access key ids.
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn secret_aad(access_key: &str, key_id: &str) -> Vec<u8> {
    let mut aad = b"tresor s3 secret\0".to_vec();
    aad.extend_from_slice(access_key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

fn random_text(alphabet: &[u8], len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Both alphabets have a power-of-two length: no bias.
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

/// A fresh access key id (`TRS` and 17 characters) and secret (40
/// characters), shaped like the keys S3 tools expect.
pub fn new_s3_credentials() -> (String, String) {
    let id = format!("TRS{}", random_text(ID_ALPHABET, 17));
    (id, random_text(SECRET_ALPHABET, 40))
}

/// `secret` of `access_key`, sealed by the current master key of `keys`.
pub fn seal_s3_secret(keys: &MasterKeys, access_key: &str, secret: &str) -> WrappedKey {
    let master = keys.current();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut sealed = secret.as_bytes().to_vec();
    aead_key(&master.key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(secret_aad(access_key, &master.id)),
            &mut sealed,
        )
        .expect("sealing a short secret cannot exceed GCM limits");
    WrappedKey {
        key_id: master.id.clone(),
        nonce: hex::encode(nonce),
        sealed: hex::encode(sealed),
    }
}

/// The secret of `access_key`, opened with the master key that sealed it.
pub fn open_s3_secret(
    keys: &MasterKeys,
    access_key: &str,
    wrapped: &WrappedKey,
) -> Result<String, CryptoError> {
    let tampered = || CryptoError::Tampered(format!("secret of S3 access key {access_key}"));
    let master = keys.get(&wrapped.key_id)?;
    let nonce = hex::decode(&wrapped.nonce)
        .ok()
        .and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok())
        .ok_or_else(tampered)?;
    let mut sealed = hex::decode(&wrapped.sealed).map_err(|_| tampered())?;
    let plain = aead_key(&master.key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(secret_aad(access_key, &wrapped.key_id)),
            &mut sealed,
        )
        .map_err(|_| tampered())?;
    String::from_utf8(plain.to_vec()).map_err(|_| tampered())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> MasterKeys {
        let line = MasterKeys::new_line("m1").expect("key line");
        MasterKeys::parse(&line).expect("key file")
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_own_id_and_unchanged() {
        let keys = keys();
        let (id, secret) = new_s3_credentials();
        assert!(crate::meta::is_s3_key_id(&id), "{id}");
        assert_eq!(secret.len(), 40);
        let wrapped = seal_s3_secret(&keys, &id, &secret);
        assert!(!wrapped.sealed.contains(&hex::encode(secret.as_bytes())));
        assert_eq!(open_s3_secret(&keys, &id, &wrapped).expect("opens"), secret);
        let (other, _) = new_s3_credentials();
        assert!(open_s3_secret(&keys, &other, &wrapped).is_err());
        let mut flipped = wrapped.clone();
        let last = flipped.sealed.pop().expect("hex");
        flipped.sealed.push(if last == '0' { '1' } else { '0' });
        assert!(open_s3_secret(&keys, &id, &flipped).is_err());
        assert!(open_s3_secret(
            &super::super::MasterKeys::parse(&MasterKeys::new_line("m1").expect("line"))
                .expect("keys"),
            &id,
            &wrapped
        )
        .is_err());
    }
}
