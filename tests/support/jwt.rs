//! A local ES256 JWT issuer.
//!
//! OpenBao's JWT auth method is configured with this issuer's public key
//! (`jwt_validation_pubkeys`), so tokens minted here are verified by the real
//! server exactly like a cluster's ServiceAccount or workload-identity tokens,
//! without any OIDC discovery endpoint or network.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::openbao::{AUDIENCE, ISSUER, SUBJECT};

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// BIT STRING of 66 bytes); the 65-byte uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Seconds since the Unix epoch, the unit of JWT time claims.
pub fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock before 1970")
        .as_secs();
    i64::try_from(secs).expect("system clock beyond i64 seconds")
}

/// The registered claims the provider and OpenBao look at.
///
/// `aud` is always serialised as an array; use [`Issuer::mint_payload`] for
/// the string form or for deliberately malformed claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Claims {
    /// Claims the lab's `kms` role accepts ([`ISSUER`], [`SUBJECT`],
    /// [`AUDIENCE`]), issued now and expiring after `ttl`.
    ///
    /// Vary one field with struct update syntax, e.g.
    /// `Claims { aud: vec!["other".into()], ..Claims::valid_for(ttl) }`.
    pub fn valid_for(ttl: Duration) -> Claims {
        let now = now_unix();
        let ttl = i64::try_from(ttl.as_secs()).expect("ttl fits in i64");
        Claims {
            iss: ISSUER.to_owned(),
            sub: SUBJECT.to_owned(),
            aud: vec![AUDIENCE.to_owned()],
            exp: now + ttl,
            nbf: Some(now),
            iat: Some(now),
        }
    }

    /// The JSON payload, omitting absent optional claims.
    pub fn to_json(&self) -> Value {
        let mut payload = json!({
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud,
            "exp": self.exp,
        });
        if let Some(nbf) = self.nbf {
            payload["nbf"] = json!(nbf);
        }
        if let Some(iat) = self.iat {
            payload["iat"] = json!(iat);
        }
        payload
    }
}

/// An ES256 signing key with the PEM public key OpenBao needs to verify it.
#[derive(Debug)]
pub struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Issuer {
    /// Generates a fresh P-256 key; every lab gets its own, so a token from
    /// one test can never log in to another test's server.
    pub fn generate() -> Issuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("parse generated P-256 key");
        Issuer { key, rng }
    }

    /// The public key as a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo)
    /// PEM block, the format `jwt_validation_pubkeys` expects.
    pub fn public_key_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        let b64 = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        // PEM bodies are wrapped at 64 columns (RFC 7468); base64 is ASCII so
        // splitting on byte boundaries is safe.
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// A compact JWS over `claims` with header `{"alg":"ES256","typ":"JWT"}`.
    pub fn mint(&self, claims: &Claims) -> String {
        self.mint_payload(&claims.to_json())
    }

    /// Signs an arbitrary JSON payload, for tests of string `aud`, `null`
    /// claims, missing `exp` and other shapes [`Claims`] cannot express.
    pub fn mint_payload(&self, payload: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        let signing_input = format!("{header}.{body}");
        // The FIXED algorithm yields raw r||s (64 bytes), which is what JWS
        // ES256 requires (RFC 7518 §3.4), not ASN.1 DER.
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ES256 sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}
