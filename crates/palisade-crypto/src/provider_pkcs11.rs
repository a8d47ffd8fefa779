//! The `pkcs11` key provider: wrapping keys are AES-256 keys generated inside an HSM (or any
//! PKCS#11 token) as sensitive, non-extractable objects, and every wrap/unwrap is an AES-GCM call
//! into the token. The key material never exists in this process, so a memory dump or a stolen
//! disk yields only wrapped data keys.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use rand::RngCore;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::provider::{KeyProvider, ProviderError, ProviderInfo, valid_key_name};

/// Version byte of the wrapped format: `[1] [12-byte IV] [32-byte ciphertext + 16-byte tag]`.
const FORMAT_V1: u8 = 1;
const IV_LEN: usize = 12;
const WRAPPED_LEN: usize = 1 + IV_LEN + 32 + 16;
/// Idle sessions kept open; more may exist while calls run, the extras are closed afterwards.
const POOL: usize = 4;
/// How often an unreachable token may cost a library re-initialization (see `reinit`).
const REINIT_EVERY: Duration = Duration::from_secs(2);

/// C_Finalize is process-wide and must not overlap any other call into the library, so every
/// operation holds this for reading and a re-initialization for writing. It holds the time of
/// the last re-initialization.
static LIBRARY: RwLock<Option<Instant>> = RwLock::new(None);
/// Bumped by each re-initialization: session handles from before it are meaningless.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Where the token is and how to log in to it.
#[derive(Debug)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    pub token_label: String,
    /// The user (not SO) PIN.
    pub pin: SecretString,
}

pub struct Pkcs11Provider {
    ctx: Pkcs11,
    label: String,
    pin: SecretString,
    idle: Mutex<Vec<Pooled>>,
    /// Serializes this process's `create_key` calls; races with other nodes are covered by
    /// `unwrap` trying every key that carries the name.
    create: Mutex<()>,
    /// Set when a re-login is refused: retrying a wrong PIN would run down the token's retry
    /// counter and lock it, so we stop until an operator fixes the PIN and restarts.
    pin_refused: AtomicBool,
}

impl std::fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Provider").field("token_label", &self.label).field("pin", &"<redacted>").finish()
    }
}

/// A session and the library epoch it was opened in.
struct Pooled {
    epoch: u64,
    session: Option<Session>,
}

impl Pooled {
    fn new(session: Session) -> Self {
        Self { epoch: EPOCH.load(Ordering::SeqCst), session: Some(session) }
    }
    fn get(&self) -> &Session {
        self.session.as_ref().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // After a re-initialization the old handle may name someone else's new session: leak
        // the wrapper rather than close that one.
        if self.epoch != EPOCH.load(Ordering::SeqCst) {
            std::mem::forget(self.session.take());
        }
    }
}

enum ConnectError {
    NoToken(String),
    PinRefused,
    Hsm(ProviderError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a list of sessions half-updated in a harmful way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn library() -> RwLockReadGuard<'static, Option<Instant>> {
    LIBRARY.read().unwrap_or_else(PoisonError::into_inner)
}

/// Any PKCS#11 failure we do not interpret is "the HSM cannot serve us now": fail closed, and
/// `with_session` replaces the session. Only the return code's name is kept: it never carries
/// key material or the PIN.
fn hsm(what: &'static str) -> impl Fn(CkError) -> ProviderError {
    move |e| {
        let why = match &e {
            CkError::Pkcs11(rv, _) => format!("{rv:?}"),
            other => other.to_string(),
        };
        ProviderError::Unavailable(format!("PKCS#11 {what} failed: {why}"))
    }
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Pkcs11Provider {
    /// Loads the module, finds the token by label and logs in. A wrong label or PIN is a
    /// `Config` error; an HSM that answers but fails is `Unavailable`.
    pub fn open(config: Pkcs11Config) -> Result<Self, ProviderError> {
        let Pkcs11Config { module, token_label, pin } = config;
        let ctx = Pkcs11::new(&module)
            .map_err(|e| ProviderError::Config(format!("cannot load PKCS#11 module {}: {e}", module.display())))?;
        let initialized = {
            let _library = library();
            ctx.initialize(init_args())
        };
        match initialized {
            // Initialization is per process and only `reinit` finalizes, so a second provider
            // on the same module shares the first one's.
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(hsm("C_Initialize")(e)),
        }
        let provider = Self {
            ctx,
            label: token_label,
            pin,
            idle: Mutex::new(Vec::new()),
            create: Mutex::new(()),
            pin_refused: AtomicBool::new(false),
        };
        // The guard ends before `provider` can be dropped: its `Drop` takes the lock too.
        let connected = {
            let _library = library();
            provider.connect()
        };
        let session = connected.map_err(|e| match e {
            ConnectError::NoToken(why) => ProviderError::Config(why),
            ConnectError::PinRefused => ProviderError::Config(format!(
                "PKCS#11 token {:?} refused the PIN: check the configured PIN",
                provider.label
            )),
            ConnectError::Hsm(e) => e,
        })?;
        lock(&provider.idle).push(Pooled::new(session));
        Ok(provider)
    }

    /// Opens a logged-in R/W session. The slot is looked up each time because a token that was
    /// removed and re-inserted may come back in another slot.
    fn connect(&self) -> Result<Session, ConnectError> {
        if self.pin_refused.load(Ordering::SeqCst) {
            return Err(ConnectError::PinRefused);
        }
        let slots = self.ctx.get_slots_with_token().map_err(|e| ConnectError::Hsm(hsm("C_GetSlotList")(e)))?;
        let mut found = Vec::new();
        let mut slot = None;
        for s in slots {
            let info = self.ctx.get_token_info(s).map_err(|e| ConnectError::Hsm(hsm("C_GetTokenInfo")(e)))?;
            if info.label() == self.label {
                slot = Some(s);
                break;
            }
            if !info.label().is_empty() {
                found.push(format!("{:?}", info.label()));
            }
        }
        let Some(slot) = slot else {
            let found = found.join(", ");
            return Err(ConnectError::NoToken(format!("no PKCS#11 token labelled {:?}; found: [{found}]", self.label)));
        };
        let session = self.ctx.open_rw_session(slot).map_err(|e| ConnectError::Hsm(hsm("C_OpenSession")(e)))?;
        match session.login(UserType::User, Some(&self.pin)) {
            // Login is per application and token: another open session may have done it.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired, _)) => {
                self.pin_refused.store(true, Ordering::SeqCst);
                Err(ConnectError::PinRefused)
            }
            Err(e) => Err(ConnectError::Hsm(hsm("C_Login")(e))),
        }
    }

    /// Some modules (SoftHSM among them) never notice a token coming back, and some HSM
    /// clients need it after a device reset: finalize and initialize the library again. At
    /// most every `REINIT_EVERY`, so an outage does not turn every call into a re-initialization.
    fn reinit(&self) {
        let mut last = LIBRARY.write().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < REINIT_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        lock(&self.idle).clear();
        EPOCH.fetch_add(1, Ordering::SeqCst);
        // Errors surface from the `connect` that follows.
        let _ = self.ctx.clone().finalize();
        let _ = self.ctx.initialize(init_args());
    }

    /// Runs `f` on a logged-in session. A pooled session that fails `Unavailable` may just have
    /// outlived its device: it and the other idle ones are dropped and `f` runs once more on a
    /// fresh session, after a library re-initialization if a plain reconnect fails.
    fn with_session<T>(&self, f: impl Fn(&Session) -> Result<T, ProviderError>) -> Result<T, ProviderError> {
        let unavailable = |e| match e {
            ConnectError::NoToken(why) => ProviderError::Unavailable(why),
            ConnectError::PinRefused => ProviderError::Unavailable(format!(
                "PKCS#11 token {:?} refused the PIN; fix it and restart",
                self.label
            )),
            ConnectError::Hsm(e) => e,
        };
        {
            let _library = library();
            let pooled =
                std::iter::from_fn(|| lock(&self.idle).pop()).find(|p| p.epoch == EPOCH.load(Ordering::SeqCst));
            if let Some(pooled) = pooled {
                match self.run(pooled, &f) {
                    Err(ProviderError::Unavailable(_)) => lock(&self.idle).clear(),
                    done => return done,
                }
            }
            match self.connect() {
                Ok(session) => return self.run(Pooled::new(session), &f),
                Err(e @ ConnectError::PinRefused) => return Err(unavailable(e)),
                Err(_) => {}
            }
        }
        self.reinit();
        let _library = library();
        let session = self.connect().map_err(unavailable)?;
        self.run(Pooled::new(session), &f)
    }

    fn run<T>(&self, pooled: Pooled, f: impl Fn(&Session) -> Result<T, ProviderError>) -> Result<T, ProviderError> {
        let result = f(pooled.get());
        let mut idle = lock(&self.idle);
        if !matches!(result, Err(ProviderError::Unavailable(_))) && idle.len() < POOL {
            idle.push(pooled);
        }
        result
    }

    /// Whether the token behind `session` still answers. A token that vanished can say "no
    /// objects" instead of failing (SoftHSM does when its store is deleted), so an empty answer
    /// is only believed if this passes.
    fn token_answers(&self, session: &Session) -> Result<(), ProviderError> {
        let info = session.get_session_info().map_err(hsm("C_GetSessionInfo"))?;
        self.ctx.get_token_info(info.slot_id()).map(drop).map_err(hsm("C_GetTokenInfo"))
    }

    fn find_keys(&self, session: &Session, name: &str) -> Result<Vec<ObjectHandle>, ProviderError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(name.as_bytes().to_vec()),
        ];
        let keys = session.find_objects(&template).map_err(hsm("C_FindObjects"))?;
        if keys.is_empty() {
            self.token_answers(session)?;
        }
        Ok(keys)
    }
}

impl Drop for Pkcs11Provider {
    fn drop(&mut self) {
        // Closing sessions is a library call: not while another thread re-initializes it.
        let _library = library();
        lock(&self.idle).clear();
    }
}

impl KeyProvider for Pkcs11Provider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo { kind: "pkcs11", master_key_id: format!("token:{}", self.label) }
    }

    fn create_key(&self, name: &str) -> Result<(), ProviderError> {
        if !valid_key_name(name) {
            return Err(ProviderError::Config(format!("invalid wrapping key name {name:?}")));
        }
        let _one_at_a_time = lock(&self.create);
        self.with_session(|s| {
            if !self.find_keys(s, name)?.is_empty() {
                return Ok(());
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                // Nothing but AES-GCM encrypt/decrypt, never copied or changed: not left to the
                // token's defaults.
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
                Attribute::Modifiable(false),
                Attribute::Copyable(false),
                Attribute::Label(name.as_bytes().to_vec()),
            ];
            s.generate_key(&Mechanism::AesKeyGen, &template).map(drop).map_err(hsm("C_GenerateKey"))
        })
    }

    fn has_key(&self, name: &str) -> Result<bool, ProviderError> {
        self.with_session(|s| Ok(!self.find_keys(s, name)?.is_empty()))
    }

    fn wrap(&self, name: &str, data_key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, ProviderError> {
        self.with_session(|s| {
            let keys = self.find_keys(s, name)?;
            let key = *keys.first().ok_or_else(|| ProviderError::NoSuchKey(name.to_owned()))?;
            let mut iv = [0u8; IV_LEN];
            rand::rngs::OsRng.fill_bytes(&mut iv);
            // Some HSMs (FIPS mode) pick the IV themselves and write it back through this
            // buffer, so the IV stored is read after the call, not the one we proposed.
            let sealed = {
                let params = GcmParams::new(&mut iv, context, 128.into()).map_err(hsm("AES-GCM setup"))?;
                s.encrypt(&Mechanism::AesGcm(params), key, data_key).map_err(hsm("C_Encrypt"))?
            };
            if sealed.len() != 32 + 16 {
                return Err(ProviderError::Unavailable(format!("HSM returned {} bytes for AES-GCM", sealed.len())));
            }
            let mut out = Vec::with_capacity(WRAPPED_LEN);
            out.push(FORMAT_V1);
            out.extend_from_slice(&iv);
            out.extend_from_slice(&sealed);
            Ok(out)
        })
    }

    fn unwrap(&self, name: &str, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<[u8; 32]>, ProviderError> {
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != FORMAT_V1 {
            return Err(ProviderError::Corrupt);
        }
        let (iv, sealed) = wrapped[1..].split_at(IV_LEN);
        self.with_session(|s| {
            let keys = self.find_keys(s, name)?;
            if keys.is_empty() {
                return Err(ProviderError::NoSuchKey(name.to_owned()));
            }
            // Normally one key; two if nodes raced to create it. The GCM tag tells which one.
            for key in keys {
                let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| ProviderError::Corrupt)?;
                let params = GcmParams::new(&mut iv, context, 128.into()).map_err(hsm("AES-GCM setup"))?;
                match s.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                    Ok(plain) => {
                        let plain = Zeroizing::new(plain);
                        if plain.len() != 32 {
                            return Err(ProviderError::Corrupt);
                        }
                        let mut out = Zeroizing::new([0u8; 32]);
                        out.copy_from_slice(&plain);
                        return Ok(out);
                    }
                    // The spec's answer to a bad tag. SoftHSM 2.6 says CKR_GENERAL_ERROR instead,
                    // which we only believe is about the data if the token still answers.
                    Err(CkError::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _)) => {}
                    Err(CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _))
                        if self.token_answers(s).is_ok() => {}
                    Err(e) => return Err(hsm("C_Decrypt")(e)),
                }
            }
            Err(ProviderError::Corrupt)
        })
    }

    fn destroy_key(&self, name: &str) -> Result<(), ProviderError> {
        self.with_session(|s| {
            let all = s.find_objects(&[Attribute::Label(name.as_bytes().to_vec())]).map_err(hsm("C_FindObjects"))?;
            if all.is_empty() {
                // "Nothing to destroy" from a vanished token must not pass for a shredded key.
                self.token_answers(s)?;
            }
            for object in all {
                match s.destroy_object(object) {
                    // Another node destroyed it between our find and destroy: that is the goal.
                    Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(hsm("C_DestroyObject")(e)),
                }
            }
            Ok(())
        })
    }

    fn rotate_master(&self) -> Result<bool, ProviderError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::object::{AttributeInfo, AttributeType};
    use std::path::Path;
    use std::process::Command;

    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    const LABEL: &str = "palisade-test";

    fn open(label: &str, pin: &str) -> Result<Pkcs11Provider, ProviderError> {
        Pkcs11Provider::open(Pkcs11Config { module: MODULE.into(), token_label: label.into(), pin: pin.into() })
    }

    /// The key objects named `name`, seen through one of the provider's own sessions.
    fn objects(p: &Pkcs11Provider, name: &str) -> Vec<ObjectHandle> {
        p.with_session(|s| Ok(s.find_objects(&[Attribute::Label(name.as_bytes().to_vec())]).unwrap())).unwrap()
    }

    /// One test, in order: SoftHSM reads SOFTHSM2_CONF once per process, at C_Initialize.
    #[test]
    fn wrapping_keys_live_and_die_inside_a_real_softhsm_token() {
        let have_util = Command::new("softhsm2-util").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(have_util && Path::new(MODULE).exists(), "SoftHSM2 is missing: apt-get install softhsm2");
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        let settings =
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
        std::fs::write(&conf, settings).unwrap();
        // SAFETY: set before this process first loads the module; no other test here reads it.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        let init = ["--init-token", "--free", "--label", LABEL, "--pin", "1234", "--so-pin", "5678"];
        let out = Command::new("softhsm2-util").args(init).output().unwrap();
        assert!(out.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));

        // Refusals first: once a provider is logged in, the whole process is (PKCS#11 login is
        // per application), and a wrong PIN would then get "already logged in", not "incorrect".
        let refused = open(LABEL, "987654").unwrap_err();
        assert!(matches!(refused, ProviderError::Config(_)) && refused.to_string().contains("refused the PIN"));
        assert!(!format!("{refused} {refused:?}").contains("987654"), "{refused:?}");
        let missing = open("no-such-token", "1234").unwrap_err().to_string();
        assert!(missing.contains("\"no-such-token\"") && missing.contains(LABEL), "{missing}");
        let module =
            Pkcs11Config { module: "/nonexistent/p11.so".into(), token_label: LABEL.into(), pin: "1234".into() };
        assert!(!format!("{module:?}").contains("1234"));
        assert!(Pkcs11Provider::open(module).unwrap_err().to_string().contains("cannot load PKCS#11 module"));

        let p = open(LABEL, "1234").unwrap();
        assert!(!format!("{p:?}").contains("1234"));
        assert_eq!(p.info(), ProviderInfo { kind: "pkcs11", master_key_id: "token:palisade-test".into() });
        assert!(!p.rotate_master().unwrap());
        assert!(!p.has_key("org-a").unwrap());
        p.create_key("org-a").unwrap();
        p.create_key("org-a").unwrap();
        assert!(p.has_key("org-a").unwrap());
        assert_eq!(objects(&p, "org-a").len(), 1, "create_key is idempotent");
        assert!(matches!(p.create_key("Org A"), Err(ProviderError::Config(_))));

        let wrapped = p.wrap("org-a", &[7; 32], b"org_a|dek-1").unwrap();
        assert_eq!((wrapped.len(), wrapped[0]), (WRAPPED_LEN, FORMAT_V1));
        assert_ne!(wrapped, p.wrap("org-a", &[7; 32], b"org_a|dek-1").unwrap(), "fresh IV per wrap");
        assert_eq!(*p.unwrap("org-a", &wrapped, b"org_a|dek-1").unwrap(), [7; 32]);
        assert!(matches!(p.unwrap("org-a", &wrapped, b"org_a|dek-2"), Err(ProviderError::Corrupt)));
        for at in [0, 5, 20, WRAPPED_LEN - 1] {
            let mut tampered = wrapped.clone();
            tampered[at] ^= 1;
            assert!(matches!(p.unwrap("org-a", &tampered, b"org_a|dek-1"), Err(ProviderError::Corrupt)), "byte {at}");
        }
        assert!(matches!(p.unwrap("org-a", &wrapped[..40], b"org_a|dek-1"), Err(ProviderError::Corrupt)));
        assert!(p.unwrap("org-a", &wrapped, b"org_a|dek-1").is_ok(), "a failed decrypt leaves no session stuck");
        p.create_key("org-b").unwrap();
        assert!(matches!(p.unwrap("org-b", &wrapped, b"org_a|dek-1"), Err(ProviderError::Corrupt)));
        assert!(matches!(p.unwrap("org-c", &wrapped, b"org_a|dek-1"), Err(ProviderError::NoSuchKey(_))));
        assert!(matches!(p.wrap("org-c", &[7; 32], b"x"), Err(ProviderError::NoSuchKey(_))));

        // The key stays in the token: sensitive, never extractable, its value unreadable.
        let key = objects(&p, "org-a")[0];
        let (attrs, value) = p
            .with_session(|s| {
                let wanted = [
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Copyable,
                    AttributeType::Wrap,
                    AttributeType::Derive,
                ];
                Ok((
                    s.get_attributes(key, &wanted).unwrap(),
                    s.get_attribute_info(key, &[AttributeType::Value]).unwrap(),
                ))
            })
            .unwrap();
        assert!(
            matches!(
                attrs[..],
                [
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::NeverExtractable(true),
                    Attribute::Copyable(false),
                    Attribute::Wrap(false),
                    Attribute::Derive(false)
                ]
            ),
            "{attrs:?}"
        );
        assert!(matches!(value[..], [AttributeInfo::Sensitive]), "CKA_VALUE is refused: {value:?}");
        let read = p.with_session(|s| Ok(s.get_attributes(key, &[AttributeType::Value]).unwrap())).unwrap();
        assert!(read.is_empty(), "cryptoki drops the refused CKA_VALUE rather than return it");

        // Another node raced us to the first key: both keys are tried on unwrap.
        p.with_session(|s| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(b"org-a".to_vec()),
            ];
            Ok(s.generate_key(&Mechanism::AesKeyGen, &template).unwrap())
        })
        .unwrap();
        assert_eq!(objects(&p, "org-a").len(), 2);

        // The pool under concurrent use.
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let (p, wrapped) = (&p, &wrapped);
                scope.spawn(move || {
                    for i in 0..25u8 {
                        let w = p.wrap("org-a", &[t ^ i; 32], &[t, i]).unwrap();
                        assert_eq!(*p.unwrap("org-a", &w, &[t, i]).unwrap(), [t ^ i; 32]);
                        assert_eq!(*p.unwrap("org-a", wrapped, b"org_a|dek-1").unwrap(), [7; 32]);
                    }
                });
            }
        });

        p.destroy_key("org-a").unwrap();
        assert!(objects(&p, "org-a").is_empty(), "every copy is gone");
        assert!(matches!(p.unwrap("org-a", &wrapped, b"org_a|dek-1"), Err(ProviderError::NoSuchKey(_))));
        assert!(!p.has_key("org-a").unwrap());
        p.destroy_key("org-a").unwrap();

        // The HSM goes away under an open provider: its store vanishes.
        let b = p.wrap("org-b", &[9; 32], b"b").unwrap();
        let store = std::fs::read_dir(&tokens).unwrap().next().unwrap().unwrap().path();
        let away = dir.path().join("away");
        std::fs::rename(&store, &away).unwrap();
        for _ in 0..2 {
            assert!(matches!(p.unwrap("org-b", &b, b"b"), Err(ProviderError::Unavailable(_))));
            assert!(matches!(p.wrap("org-b", &[9; 32], b"b"), Err(ProviderError::Unavailable(_))));
            assert!(matches!(p.has_key("org-b"), Err(ProviderError::Unavailable(_))));
            assert!(matches!(p.destroy_key("org-b"), Err(ProviderError::Unavailable(_))), "no false shredding");
        }
        // ... and comes back: the provider recovers (after at most one re-initialization pause).
        std::fs::rename(&away, &store).unwrap();
        std::thread::sleep(REINIT_EVERY);
        assert_eq!(*p.unwrap("org-b", &b, b"b").unwrap(), [9; 32]);

        // An object deleted behind the token's back is simply gone.
        for file in std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().path()) {
            if !file.file_name().unwrap().to_str().unwrap().starts_with("token.") && file.extension().is_some() {
                std::fs::remove_file(file).unwrap();
            }
        }
        assert!(matches!(p.unwrap("org-b", &b, b"b"), Err(ProviderError::NoSuchKey(_))));
    }
}
