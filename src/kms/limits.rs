//! Protocol size limits and per-method concurrency slots.
//!
//! Slots are try-acquired: when none is free the call fails at once with
//! ResourceExhausted instead of queueing behind a slow OpenBao.

use super::error::KmsError;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// gRPC message cap in each direction.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Ciphertext and key_id must be strictly shorter than this.
pub const FIELD_LIMIT: usize = 1024;
/// Σ(len key + len value) over annotations must be strictly below this.
pub const ANNOTATIONS_LIMIT: usize = 32 * 1024;

/// Concurrency slots for Status, Encrypt and Decrypt.
#[derive(Clone)]
pub struct Limits {
    status: Arc<Semaphore>,
    encrypt: Arc<Semaphore>,
    decrypt: Arc<Semaphore>,
    max: [usize; 3],
}

impl Limits {
    pub fn new(status: u32, encrypt: u32, decrypt: u32) -> Self {
        let size = |n: u32| usize::try_from(n).unwrap_or(1);
        let max = [size(status), size(encrypt), size(decrypt)];
        Self {
            status: Arc::new(Semaphore::new(max[0])),
            encrypt: Arc::new(Semaphore::new(max[1])),
            decrypt: Arc::new(Semaphore::new(max[2])),
            max,
        }
    }

    fn take(semaphore: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, KmsError> {
        Arc::clone(semaphore)
            .try_acquire_owned()
            .map_err(|_| KmsError::ConcurrencyLimit)
    }

    /// Handlers currently holding a slot, per method.
    pub fn in_flight(&self) -> Vec<(&'static str, u64)> {
        let used = |s: &Semaphore, max: usize| max.saturating_sub(s.available_permits()) as u64;
        vec![
            ("status", used(&self.status, self.max[0])),
            ("encrypt", used(&self.encrypt, self.max[1])),
            ("decrypt", used(&self.decrypt, self.max[2])),
        ]
    }

    pub fn status(&self) -> Result<OwnedSemaphorePermit, KmsError> {
        Self::take(&self.status)
    }

    pub fn encrypt(&self) -> Result<OwnedSemaphorePermit, KmsError> {
        Self::take(&self.encrypt)
    }

    pub fn decrypt(&self) -> Result<OwnedSemaphorePermit, KmsError> {
        Self::take(&self.decrypt)
    }
}

/// Total annotation size as the apiserver counts it.
pub fn annotations_size<'a>(entries: impl Iterator<Item = (&'a String, &'a Vec<u8>)>) -> usize {
    entries
        .map(|(k, v)| k.len().saturating_add(v.len()))
        .fold(0, usize::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_try_acquired() {
        let limits = Limits::new(1, 1, 2);
        let held = limits.status().unwrap();
        assert_eq!(limits.status().unwrap_err(), KmsError::ConcurrencyLimit);
        drop(held);
        assert!(limits.status().is_ok());
        let _a = limits.decrypt().unwrap();
        let _b = limits.decrypt().unwrap();
        assert!(limits.decrypt().is_err());
        assert_eq!(
            limits.in_flight(),
            vec![("status", 0), ("encrypt", 0), ("decrypt", 2)]
        );
    }
}
