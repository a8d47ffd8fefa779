//! Password hashing with argon2id (m = 19 MiB, t = 2, p = 1) on a bounded pool of low-priority
//! threads (`hash_pool`), so a flood of sign-ins queues for the CPU instead of starving every
//! other request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::cell::RefCell;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use palisade_core::{Password, ValidationError};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::hash_pool::HashPool;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are already queued; the caller should answer 503 with Retry-After.
    #[error("the password hashing queue is full")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The argon2id parameters recommended by OWASP: 19 MiB, two passes, one lane.
pub fn argon2id() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords off the async workers, at most `workers` at a time, with at
/// most `max_waiting` callers queued behind them.
#[derive(Clone)]
pub struct PasswordHasher {
    pool: Arc<HashPool>,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// A hash of a random password, verified when the account does not exist, so an unknown
    /// email costs the same as a wrong password.
    dummy_hash: Arc<str>,
    /// Verifications against real accounts' hashes (not the dummy), for tests and metrics.
    real_verifications: Arc<std::sync::atomic::AtomicU64>,
    /// Hashing jobs started since start (see `hashes_started`).
    started: Arc<std::sync::atomic::AtomicU64>,
    workers: usize,
}

impl PasswordHasher {
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        let mut random = [0u8; 32];
        getrandom_fill(&mut random);
        let dummy_password: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy_hash = argon2id()
            .hash_password(dummy_password.as_bytes(), &salt)
            .expect("hashing a fixed-size password cannot fail")
            .to_string();
        Self {
            pool: Arc::new(HashPool::start(workers.max(1))),
            permits: Arc::new(Semaphore::new(workers.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            dummy_hash: dummy_hash.into(),
            real_verifications: Arc::default(),
            started: Arc::default(),
            workers: workers.max(1),
        }
    }

    /// Hashing jobs started since start (any kind, the dummy included): with `hashing_now`, how
    /// the server tells a sign-in flood from a quiet spell (its CPU scheduling group follows).
    pub fn hashes_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether a hash is running at this moment.
    pub fn hashing_now(&self) -> bool {
        self.permits.available_permits() < self.workers
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        if queued >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(HashError::Busy);
        }
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(|_| HashError::Internal("hash pool closed".into()))?;
        self.started.fetch_add(1, Ordering::Relaxed);
        self.pool
            .run(move || {
                let _permit = permit;
                work()
            })
            .await?
    }

    /// How many verifications ran against real accounts' hashes since start.
    pub fn real_verifications(&self) -> u64 {
        self.real_verifications.load(Ordering::SeqCst)
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let secret = SecretString::from(password.expose().to_owned());
        self.run_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2id()
                .hash_password(secret.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Internal(e.to_string()))
        })
        .await
    }

    /// Checks a password against a stored hash (argon2id PHC, or an imported bcrypt hash), or
    /// against the dummy hash when there is no account, doing the same work either way.
    pub async fn verify(&self, candidate: &SecretString, stored: Option<&str>) -> Result<Verification, HashError> {
        let real = stored.is_some();
        if real {
            self.real_verifications.fetch_add(1, Ordering::SeqCst);
        }
        let hash: String = stored.map(str::to_owned).unwrap_or_else(|| self.dummy_hash.to_string());
        let candidate = candidate.clone();
        let verification = self
            .run_blocking(move || {
                if is_bcrypt(&hash) {
                    let matches = bcrypt::verify(candidate.expose_secret().as_bytes(), &hash).unwrap_or(false);
                    return Ok(Verification { matches, needs_rehash: true });
                }
                let parsed = PasswordHash::new(&hash).map_err(|e| HashError::Internal(e.to_string()))?;
                let matches = verify_in_thread_memory(candidate.expose_secret().as_bytes(), &parsed);
                // Hashes made with other parameters are brought up to date at the next sign-in.
                let current = parsed.algorithm.as_str() == "argon2id"
                    && Params::try_from(&parsed)
                        .is_ok_and(|p| p.m_cost() == 19 * 1024 && p.t_cost() == 2 && p.p_cost() == 1);
                Ok(Verification { matches, needs_rehash: !current })
            })
            .await?;
        Ok(Verification { matches: real && verification.matches, needs_rehash: verification.needs_rehash })
    }

    /// Hashes a password that was already accepted once (at sign-in), for upgrading a legacy
    /// hash: no length or strength rules apply here.
    pub async fn rehash(&self, password: &SecretString) -> Result<String, HashError> {
        let secret = password.clone();
        self.run_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2id()
                .hash_password(secret.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Internal(e.to_string()))
        })
        .await
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash is legacy (bcrypt) or has outdated parameters: rehash after success.
    pub needs_rehash: bool,
}

thread_local! {
    /// Each hashing thread's argon2 memory (19 MiB), kept from one verification to the next.
    /// Allocated afresh for every sign-in, glibc handed it back to the kernel and faulted it in
    /// again page by page whenever the arena's top went free: measured, a hash then cost 25 ms
    /// of CPU instead of 16 ms, and sign-ins ran at 0.55 of the raw hash rate. argon2 writes
    /// every block before reading it, so what the previous hash left is never an input.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Verifies `password` against an argon2 PHC hash as `PasswordVerifier::verify_password` does
/// (the hash's own algorithm, version, parameters and salt; outputs compared in constant time),
/// with the calling thread's kept memory instead of a new allocation.
fn verify_in_thread_memory(password: &[u8], parsed: &PasswordHash<'_>) -> bool {
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(parsed) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut computed = vec![0u8; expected.len()];
    let hashed = ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, &mut computed, &mut memory[..blocks])
    });
    hashed.is_ok() && Output::new(&computed).is_ok_and(|computed| computed == expected)
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Whether an imported hash is a well-formed bcrypt hash we can verify (cost 4 to 31).
pub fn is_importable_bcrypt(hash: &str) -> bool {
    is_bcrypt(hash) && hash.parse::<bcrypt::HashParts>().is_ok_and(|parts| (4..=31).contains(&parts.get_cost()))
}

fn getrandom_fill(dest: &mut [u8]) {
    use rand::RngCore;
    rand::rngs::OsRng.fill_bytes(dest);
}

/// Refuses passwords an offline guessing attack would find quickly (zxcvbn score below 3),
/// including ones built from the user's own email or name, and says why.
pub fn check_strength(password: &Password, user_inputs: &[&str]) -> Result<(), ValidationError> {
    // zxcvbn's matching grows with length; the first 128 characters decide any weakness that matters.
    let sample: String = password.expose().chars().take(128).collect();
    let estimate = zxcvbn::zxcvbn(&sample, user_inputs);
    if (estimate.score() as u8) >= 3 {
        return Ok(());
    }
    let mut reason = String::from("is too easy to guess");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            reason = format!("is too easy to guess: {warning}");
        }
        if let Some(tip) = feedback.suggestions().first() {
            reason.push_str(&format!(" ({tip})"));
        }
    }
    Err(ValidationError::new("password", reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_personal_passwords_are_refused_with_a_reason() {
        let weak = Password::parse("passwordpassword".into()).unwrap();
        let err = check_strength(&weak, &[]).unwrap_err();
        assert_eq!(err.field, "/password");
        assert!(err.message.starts_with("is too easy to guess"), "{}", err.message);
        let personal = Password::parse("ada.lovelace@example.com".into()).unwrap();
        assert!(check_strength(&personal, &["ada.lovelace@example.com"]).is_err());
        let strong = Password::parse("violet-kettle-orbit-93-sandstone".into()).unwrap();
        assert!(check_strength(&strong, &[]).is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let hasher = PasswordHasher::new(2, 8);
        let password = Password::parse("violet-kettle-orbit-93-sandstone".into()).unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        let ok = hasher.verify(&"violet-kettle-orbit-93-sandstone".into(), Some(&hash)).await.unwrap();
        assert_eq!(ok, Verification { matches: true, needs_rehash: false });
        assert!(!hasher.verify(&"violet-kettle-orbit-93-sandstonE".into(), Some(&hash)).await.unwrap().matches);
        // No account: the dummy hash is checked and the answer is always "no".
        assert!(!hasher.verify(&"violet-kettle-orbit-93-sandstone".into(), None).await.unwrap().matches);
    }

    #[tokio::test]
    async fn hashes_of_other_parameters_and_variants_verify_with_the_kept_memory_and_ask_for_a_rehash() {
        // One thread, so every check below reuses the same kept memory, larger and smaller.
        let hasher = PasswordHasher::new(1, 8);
        let password = "violet-kettle-orbit-93-sandstone";
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        for (algorithm, m, t) in [
            (Algorithm::Argon2id, 19 * 1024, 2),
            (Algorithm::Argon2id, 32 * 1024, 1),
            (Algorithm::Argon2i, 8 * 1024, 3),
        ] {
            let params = Params::new(m, t, 1, Some(32)).unwrap();
            let hash = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .unwrap()
                .to_string();
            let right = hasher.verify(&password.into(), Some(&hash)).await.unwrap();
            let current = algorithm == Algorithm::Argon2id && m == 19 * 1024 && t == 2;
            assert_eq!(right, Verification { matches: true, needs_rehash: !current }, "{hash}");
            let wrong = hasher.verify(&"violet-kettle-orbit-93-sandstonE".into(), Some(&hash)).await.unwrap();
            assert!(!wrong.matches, "{hash}");
            // A stored hash whose output was altered never matches.
            let (head, _) = hash.rsplit_once('$').unwrap();
            let altered = format!("{head}${}", "A".repeat(43));
            assert!(!hasher.verify(&password.into(), Some(&altered)).await.unwrap().matches, "{altered}");
        }
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify_and_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(2, 8);
        let legacy = bcrypt::hash("old-pass", 4).unwrap();
        assert!(is_importable_bcrypt(&legacy));
        assert!(!is_importable_bcrypt("$2b$04$tooshort"));
        assert!(!is_importable_bcrypt("$argon2id$v=19$m=19456,t=2,p=1$abc$def"));
        let ok = hasher.verify(&"old-pass".into(), Some(&legacy)).await.unwrap();
        assert_eq!(ok, Verification { matches: true, needs_rehash: true });
        assert!(!hasher.verify(&"wrong".into(), Some(&legacy)).await.unwrap().matches);
        let upgraded = hasher.rehash(&"old-pass".into()).await.unwrap();
        assert!(upgraded.starts_with("$argon2id$"));
        assert!(!hasher.verify(&"old-pass".into(), Some(&upgraded)).await.unwrap().needs_rehash);
    }

    #[tokio::test]
    async fn hashing_runs_on_threads_of_lower_priority_and_survives_a_panicking_job() {
        let hasher = PasswordHasher::new(2, 8);
        let nice = hasher.run_blocking(|| Ok(crate::hash_pool::current_thread_nice())).await.unwrap();
        let here = crate::hash_pool::current_thread_nice().unwrap();
        assert!(nice.unwrap() >= crate::hash_pool::HASH_NICE.max(here), "hashing nice {nice:?}, caller {here}");
        assert_eq!(here, crate::hash_pool::current_thread_nice().unwrap(), "the caller's priority is unchanged");
        let failed = hasher.run_blocking::<()>(|| panic!("a job that panics")).await;
        assert!(matches!(failed, Err(HashError::Internal(_))), "{failed:?}");
        // Both threads still work (two jobs at once need both).
        let candidate: SecretString = "anything-at-all-here".into();
        let (a, b) = tokio::join!(hasher.verify(&candidate, None), hasher.verify(&candidate, None));
        assert!(!a.unwrap().matches && !b.unwrap().matches);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_growing() {
        let hasher = PasswordHasher::new(1, 0);
        let result = hasher.verify(&"anything-at-all-here".into(), None).await;
        assert!(matches!(result, Err(HashError::Busy)));
    }
}
