//! The `local` key provider: wrapping keys in a key-store file, each sealed (AES-256-GCM) under a
//! key-encryption key (KEK) read from a second file. Neither file is in the database, so a
//! database dump alone never decrypts anything; deleting a wrapping key from the store is
//! crypto-shredding for everything under it (old copies of the store in backups stay readable
//! until those backups expire, which the docs say).
//!
//! Several processes share the files (nodes on a shared volume, the CLI beside a running
//! server): writers hold an exclusive `flock` on `<store>.lock` and replace the store
//! atomically (write, fsync, rename); readers reload whenever the store file changed. Rotating
//! the KEK writes `<kek>.next` first, then the store sealed under it, then renames: a crash at any
//! point leaves a pair that opens, and the next start finishes or discards the rotation.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::envelope::fresh_key_material;
use crate::provider::{KeyProvider, ProviderError, ProviderInfo, valid_key_name};

const WRAP_V1: u8 = 1;

/// The two files of a local provider.
#[derive(Debug, Clone)]
pub struct LocalProviderFiles {
    /// 32 random bytes, mode 0600 (created at first start when neither file exists).
    pub kek: PathBuf,
    /// The sealed wrapping keys (JSON).
    pub store: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    format: u32,
    kek_id: String,
    keys: std::collections::BTreeMap<String, String>,
}

struct Kek {
    cipher: Aes256Gcm,
    id: String,
}

struct Loaded {
    kek: Kek,
    keys: HashMap<String, Zeroizing<[u8; 32]>>,
    /// (inode, size, mtime in ns) of the store file this state was read from.
    stamp: (u64, u64, i128),
}

/// See the module docs.
pub struct LocalProvider {
    files: LocalProviderFiles,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider").field("files", &self.files).finish_non_exhaustive()
    }
}

fn config(path: &Path, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::Config(format!("{}: {why}", path.display()))
}

fn unavailable(path: &Path, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("{}: {why}", path.display()))
}

fn next_kek_path(kek: &Path) -> PathBuf {
    let mut name = kek.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    kek.with_file_name(name)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to a new file with mode 0600 and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(path: &Path) {
    if let Some(dir) =
        path.parent().and_then(|d| fs::File::open(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
    {
        let _ = dir.sync_all();
    }
}

fn read_kek(path: &Path) -> Result<Kek, ProviderError> {
    let mode = fs::metadata(path).map_err(|e| config(path, e))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(config(path, format!("mode {mode:o} lets other users read the KEK; chmod 600 it")));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| config(path, e))?);
    let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        config(path, format!("holds {} bytes, not a 256-bit key: restore the original KEK file", bytes.len()))
    })?;
    Ok(kek_from(key))
}

fn kek_from(key: &[u8; 32]) -> Kek {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"palisade-kek-id-v1");
    let id = mac.finalize().into_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect();
    Kek { cipher: Aes256Gcm::new(key.into()), id }
}

/// `[1][nonce][ciphertext‖tag]` under `cipher`, bound to `context`.
fn seal(cipher: &Aes256Gcm, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let body = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context })
        .expect("AES-GCM encryption of 32 bytes cannot fail");
    [&[WRAP_V1][..], &nonce, &body].concat()
}

fn open_key(cipher: &Aes256Gcm, sealed: &[u8], context: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if sealed.len() != 1 + 12 + 32 + 16 || sealed[0] != WRAP_V1 {
        return None;
    }
    let plain = Zeroizing::new(
        cipher.decrypt(Nonce::from_slice(&sealed[1..13]), Payload { msg: &sealed[13..], aad: context }).ok()?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain);
    Some(key)
}

fn store_context(name: &str) -> Vec<u8> {
    format!("palisade-keystore-v1|{name}").into_bytes()
}

fn stamp_of(path: &Path) -> std::io::Result<(u64, u64, i128)> {
    let meta = fs::metadata(path)?;
    Ok((meta.ino(), meta.size(), meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128))
}

/// Reads and opens the store under `kek`; a store sealed by another KEK is refused.
fn read_store(path: &Path, kek: Kek) -> Result<Loaded, ProviderError> {
    let stamp = stamp_of(path).map_err(|e| unavailable(path, e))?;
    let text = fs::read(path).map_err(|e| unavailable(path, e))?;
    let file: StoreFile = serde_json::from_slice(&text).map_err(|_| config(path, "is not a Palisade key store"))?;
    if file.format != 1 {
        return Err(config(path, format!("key store format {} is newer than this server", file.format)));
    }
    if file.kek_id != kek.id {
        return Err(config(
            path,
            format!(
                "was sealed by KEK {} but the KEK file holds {}: restore the KEK file that belongs to this store",
                file.kek_id, kek.id
            ),
        ));
    }
    let mut keys = HashMap::new();
    for (name, sealed) in file.keys {
        let sealed = STANDARD.decode(sealed).map_err(|_| config(path, format!("entry {name:?} is corrupt")))?;
        let key = open_key(&kek.cipher, &sealed, &store_context(&name))
            .ok_or_else(|| config(path, format!("entry {name:?} does not open under the KEK")))?;
        keys.insert(name, key);
    }
    Ok(Loaded { kek, keys, stamp })
}

/// Writes the store sealed under `kek` (atomically) and returns its new stamp.
fn write_store(
    path: &Path,
    kek: &Kek,
    keys: &HashMap<String, Zeroizing<[u8; 32]>>,
) -> Result<(u64, u64, i128), ProviderError> {
    let file = StoreFile {
        format: 1,
        kek_id: kek.id.clone(),
        keys: keys
            .iter()
            .map(|(name, key)| (name.clone(), STANDARD.encode(seal(&kek.cipher, key.as_ref(), &store_context(name)))))
            .collect(),
    };
    let tmp = sibling(path, ".tmp");
    let bytes = serde_json::to_vec_pretty(&file).expect("a key store serialises");
    write_private(&tmp, &bytes).map_err(|e| unavailable(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| unavailable(path, e))?;
    sync_dir(path);
    stamp_of(path).map_err(|e| unavailable(path, e))
}

/// An exclusive lock on `<store>.lock`, released on drop.
fn lock(store: &Path) -> Result<nix::fcntl::Flock<fs::File>, ProviderError> {
    let path = sibling(store, ".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| unavailable(&path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| unavailable(&path, e))
}

impl LocalProvider {
    /// Opens the provider, creating both files on a fresh install. A missing or wrong KEK for
    /// an existing store is refused with what to do, and nothing is rewritten.
    pub fn open(files: LocalProviderFiles) -> Result<Self, ProviderError> {
        let _guard = lock(&files.store)?;
        let next = next_kek_path(&files.kek);
        match (files.kek.exists(), files.store.exists()) {
            (false, false) => {
                let key = fresh_key_material();
                write_private(&files.kek, key.as_ref()).map_err(|e| config(&files.kek, e))?;
                sync_dir(&files.kek);
                write_store(&files.store, &kek_from(&key), &HashMap::new())?;
            }
            (false, true) => {
                return Err(config(
                    &files.kek,
                    "is missing but the key store exists: restore the KEK file (without it no data key opens)",
                ));
            }
            (true, false) => write_store(&files.store, &read_kek(&files.kek)?, &HashMap::new()).map(drop)?,
            (true, true) => {}
        }
        // Finish or discard a KEK rotation a crash interrupted.
        if next.exists() {
            let sealed_by_next = read_kek(&next).and_then(|kek| read_store(&files.store, kek)).is_ok();
            if sealed_by_next {
                fs::rename(&next, &files.kek).map_err(|e| config(&files.kek, e))?;
                sync_dir(&files.kek);
            } else {
                let _ = fs::remove_file(&next);
            }
        }
        let loaded = read_store(&files.store, read_kek(&files.kek)?)?;
        Ok(Self { files, loaded: Mutex::new(loaded) })
    }

    /// The loaded state, re-read first if another process changed the store.
    fn current(&self) -> Result<std::sync::MutexGuard<'_, Loaded>, ProviderError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamp = stamp_of(&self.files.store).map_err(|e| unavailable(&self.files.store, e))?;
        if stamp != loaded.stamp {
            let kek = read_kek(&self.files.kek).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
            *loaded = read_store(&self.files.store, kek).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        }
        Ok(loaded)
    }

    /// Changes the store under the cross-process lock, starting from what is on disk.
    fn change(
        &self,
        edit: impl FnOnce(&mut HashMap<String, Zeroizing<[u8; 32]>>) -> bool,
    ) -> Result<(), ProviderError> {
        let _guard = lock(&self.files.store)?;
        let mut loaded = self.current()?;
        if edit(&mut loaded.keys) {
            loaded.stamp = write_store(&self.files.store, &loaded.kek, &loaded.keys)?;
        }
        Ok(())
    }

    fn key_cipher(&self, name: &str) -> Result<Aes256Gcm, ProviderError> {
        let loaded = self.current()?;
        let key = loaded.keys.get(name).ok_or_else(|| ProviderError::NoSuchKey(name.to_owned()))?;
        Ok(Aes256Gcm::new(key.as_ref().into()))
    }
}

impl KeyProvider for LocalProvider {
    fn info(&self) -> ProviderInfo {
        let master_key_id = self.current().map(|l| l.kek.id.clone()).unwrap_or_else(|_| "unavailable".into());
        ProviderInfo { kind: "local", master_key_id }
    }

    fn create_key(&self, name: &str) -> Result<(), ProviderError> {
        if !valid_key_name(name) {
            return Err(ProviderError::Config(format!("{name:?} is not a valid key name")));
        }
        self.change(|keys| {
            if keys.contains_key(name) {
                return false;
            }
            keys.insert(name.to_owned(), fresh_key_material());
            true
        })
    }

    fn has_key(&self, name: &str) -> Result<bool, ProviderError> {
        Ok(self.current()?.keys.contains_key(name))
    }

    fn wrap(&self, name: &str, data_key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, ProviderError> {
        Ok(seal(&self.key_cipher(name)?, data_key, context))
    }

    fn unwrap(&self, name: &str, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<[u8; 32]>, ProviderError> {
        open_key(&self.key_cipher(name)?, wrapped, context).ok_or(ProviderError::Corrupt)
    }

    fn destroy_key(&self, name: &str) -> Result<(), ProviderError> {
        self.change(|keys| keys.remove(name).is_some())
    }

    fn rotate_master(&self) -> Result<bool, ProviderError> {
        let _guard = lock(&self.files.store)?;
        let mut loaded = self.current()?;
        let key = fresh_key_material();
        let next = next_kek_path(&self.files.kek);
        write_private(&next, key.as_ref())
            .map_err(|e| config(&next, format!("{e}: the KEK's directory must be writable to rotate it")))?;
        // The new KEK's name must be durable before anything is sealed under it (the store may
        // live in another directory, whose own sync says nothing about this one).
        sync_dir(&next);
        let kek = kek_from(&key);
        loaded.stamp = write_store(&self.files.store, &kek, &loaded.keys)?;
        fs::rename(&next, &self.files.kek).map_err(|e| config(&self.files.kek, e))?;
        sync_dir(&self.files.kek);
        loaded.kek = kek;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
