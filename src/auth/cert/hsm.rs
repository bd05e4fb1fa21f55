//! The PKCS#11 token: module loaded with `dlopen` at run time, the token found
//! by label, the user logged in once, the key pair (ECDSA P-256 or RSA) found
//! by label, and a bounded pool of signing sessions.
//!
//! `maxSessions` counts one session reserved for the login state (PKCS#11
//! login is per application and slot, held while any session is open), so
//! `2` allows one signature at a time. A signer that finds no free session
//! waits at most the login timeout and then fails with
//! [`CertError::NoUsableSession`]: native calls cannot be interrupted, so a
//! bounded wait *before* the call is the only bound we can give.

use super::CertError;
use super::public_key::{P256_POINT_LEN, PublicKey};
use crate::secret::SecretString;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// DER of the named-curve OID prime256v1 (1.2.840.10045.3.1.7), as CKA_EC_PARAMS holds it.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Where the token and key are (`auth.cert.pkcs11.*`).
#[derive(Debug, Clone)]
pub struct Pkcs11Settings {
    pub module_path: PathBuf,
    pub token_label: String,
    pub key_label: String,
    pub pin_file: PathBuf,
    pub max_sessions: u32,
    /// Longest wait for a free signing session (the effective login timeout).
    pub session_wait: Duration,
}

/// An open, logged-in token holding one supported key pair.
pub struct Token {
    // Declared first so they close before the reserved login session.
    idle: Mutex<Vec<Session>>,
    freed: Condvar,
    /// Never used after `open`; a `Mutex` only because `Session` is not `Sync`.
    _login: Mutex<Session>,
    key: ObjectHandle,
    public_key: PublicKey,
    session_wait: Duration,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<pkcs11>)")
    }
}

impl Token {
    /// Loads the module, logs in with the PIN file and finds the key pair.
    /// Blocking: call it off the async runtime's worker threads.
    pub fn open(settings: &Pkcs11Settings, pin: &SecretString) -> Result<Self, CertError> {
        let signing = settings.max_sessions.saturating_sub(1);
        if signing == 0 {
            return Err(CertError::NoUsableSession);
        }
        let ctx = Pkcs11::new(&settings.module_path).map_err(|_| CertError::ModuleUnavailable)?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // A second token in the same process (doctor after serve parts, tests)
            // shares the module's one initialisation.
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(_) => return Err(CertError::ModuleUnavailable),
        }
        let slot = ctx
            .get_slots_with_token()
            .map_err(|_| CertError::ModuleUnavailable)?
            .into_iter()
            .find(|slot| {
                ctx.get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == settings.token_label)
            })
            .ok_or(CertError::TokenNotFound)?;
        let login = ctx
            .open_ro_session(slot)
            .map_err(|_| CertError::NoUsableSession)?;
        let auth_pin = AuthPin::from(pin.expose());
        match login.login(UserType::User, Some(&auth_pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(_) => return Err(CertError::PinRejected),
        }
        let label = Attribute::Label(settings.key_label.as_bytes().to_vec());
        let key = only_object(&login, ObjectClass::PRIVATE_KEY, &label)?;
        let public = only_object(&login, ObjectClass::PUBLIC_KEY, &label)?;
        let public_key = match key_type(&login, key)? {
            KeyType::EC => p256_key(&login, public)?,
            KeyType::RSA => rsa_key(&login, public)?,
            _ => return Err(CertError::KeyUnsupported),
        };
        let mut idle = Vec::new();
        for _ in 0..signing {
            idle.push(
                ctx.open_ro_session(slot)
                    .map_err(|_| CertError::NoUsableSession)?,
            );
        }
        Ok(Self {
            idle: Mutex::new(idle),
            freed: Condvar::new(),
            _login: Mutex::new(login),
            key,
            public_key,
            session_wait: settings.session_wait,
        })
    }

    /// The public half of the token's key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// A signing session, waiting at most the configured bound for one.
    pub fn acquire(&self) -> Result<Lease<'_>, CertError> {
        let deadline = Instant::now() + self.session_wait;
        let mut idle = self.lock();
        loop {
            if let Some(session) = idle.pop() {
                return Ok(Lease {
                    token: self,
                    session: Some(session),
                });
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(CertError::NoUsableSession)?;
            idle = self
                .freed
                .wait_timeout(idle, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Session>> {
        // A panicking signer leaves the vector intact; keep signing.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One borrowed signing session; it returns to the pool when dropped.
pub struct Lease<'a> {
    token: &'a Token,
    session: Option<Session>,
}

impl Lease<'_> {
    /// Signs `data` with the token's private key under `mechanism`.
    pub fn sign(&self, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, CertError> {
        let session = self.session.as_ref().ok_or(CertError::NoUsableSession)?;
        session
            .sign(mechanism, self.token.key, data)
            .map_err(|_| CertError::SignFailed)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.token.lock().push(session);
            self.token.freed.notify_one();
        }
    }
}

fn only_object(
    session: &Session,
    class: ObjectClass,
    label: &Attribute,
) -> Result<ObjectHandle, CertError> {
    let found = session
        .find_objects(&[Attribute::Class(class), label.clone()])
        .map_err(|_| CertError::KeyNotFound)?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(CertError::KeyNotFound),
        _ => Err(CertError::KeyAmbiguous),
    }
}

fn key_type(session: &Session, key: ObjectHandle) -> Result<KeyType, CertError> {
    attributes(session, key, &[AttributeType::KeyType])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        })
        .ok_or(CertError::KeyUnsupported)
}

/// The public point, unwrapped from the DER OCTET STRING that PKCS#11 v2.20+
/// modules return (some older ones return it bare).
fn p256_key(session: &Session, public: ObjectHandle) -> Result<PublicKey, CertError> {
    let mut params = None;
    let mut point = None;
    for attribute in attributes(
        session,
        public,
        &[AttributeType::EcParams, AttributeType::EcPoint],
    )? {
        match attribute {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    if params.as_deref() != Some(P256_PARAMS) {
        return Err(CertError::KeyUnsupported);
    }
    match point.as_deref().ok_or(CertError::KeyUnsupported)? {
        [0x04, len, rest @ ..] if usize::from(*len) == P256_POINT_LEN => PublicKey::ec_p256(rest),
        bare => PublicKey::ec_p256(bare),
    }
}

fn rsa_key(session: &Session, public: ObjectHandle) -> Result<PublicKey, CertError> {
    let mut modulus = None;
    let mut exponent = None;
    for attribute in attributes(
        session,
        public,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )? {
        match attribute {
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    match (modulus, exponent) {
        (Some(m), Some(e)) => PublicKey::rsa(&m, &e),
        _ => Err(CertError::KeyUnsupported),
    }
}

fn attributes(
    session: &Session,
    object: ObjectHandle,
    types: &[AttributeType],
) -> Result<Vec<Attribute>, CertError> {
    session
        .get_attributes(object, types)
        .map_err(|_| CertError::KeyUnsupported)
}
