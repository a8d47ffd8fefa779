//! The local provider against real files: creation, wrapping, sharing between two handles (two
//! processes), destruction, KEK rotation and its crash recovery, and refusals that rewrite nothing.

use super::*;

fn files(dir: &Path) -> LocalProviderFiles {
    LocalProviderFiles { kek: dir.join("kek.key"), store: dir.join("keystore.json") }
}

#[test]
fn wrapped_keys_unwrap_only_under_their_key_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalProvider::open(files(dir.path())).unwrap();
    assert_eq!(fs::metadata(dir.path().join("kek.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(dir.path().join("keystore.json")).unwrap().permissions().mode() & 0o777, 0o600);
    provider.create_key("org_a.v1").unwrap();
    provider.create_key("org_a.v1").unwrap(); // idempotent: a second node racing does no harm
    provider.create_key("org_b.v1").unwrap();
    let data_key = fresh_key_material();
    let wrapped = provider.wrap("org_a.v1", &data_key, b"dek|1").unwrap();
    assert_eq!(*provider.unwrap("org_a.v1", &wrapped, b"dek|1").unwrap(), *data_key);
    assert!(matches!(provider.unwrap("org_a.v1", &wrapped, b"dek|2"), Err(ProviderError::Corrupt)));
    assert!(matches!(provider.unwrap("org_b.v1", &wrapped, b"dek|1"), Err(ProviderError::Corrupt)));
    assert!(matches!(provider.unwrap("org_c.v1", &wrapped, b"dek|1"), Err(ProviderError::NoSuchKey(_))));
    assert!(provider.create_key("Bad Name").is_err());
    // The store holds no key in the clear.
    let store = fs::read_to_string(dir.path().join("keystore.json")).unwrap();
    assert!(store.contains("org_a.v1"));
    let raw = STANDARD.encode(provider.loaded.lock().unwrap().keys["org_a.v1"].as_ref());
    assert!(!store.contains(&raw));
}

#[test]
fn another_handle_sees_creations_and_destructions() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalProvider::open(files(dir.path())).unwrap();
    let second = LocalProvider::open(files(dir.path())).unwrap();
    first.create_key("org_a.v1").unwrap();
    let wrapped = second.wrap("org_a.v1", &[7; 32], b"c").unwrap();
    assert_eq!(*first.unwrap("org_a.v1", &wrapped, b"c").unwrap(), [7; 32]);
    second.destroy_key("org_a.v1").unwrap();
    second.destroy_key("org_a.v1").unwrap(); // destroying twice is fine
    assert!(matches!(first.unwrap("org_a.v1", &wrapped, b"c"), Err(ProviderError::NoSuchKey(_))));
    assert!(!first.has_key("org_a.v1").unwrap());
}

#[test]
fn kek_rotation_keeps_every_wrapping_key_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalProvider::open(files(dir.path())).unwrap();
    provider.create_key("org_a.v1").unwrap();
    let wrapped = provider.wrap("org_a.v1", &[9; 32], b"c").unwrap();
    let before = provider.info().master_key_id;
    let old_kek = fs::read(dir.path().join("kek.key")).unwrap();
    assert!(provider.rotate_master().unwrap());
    let after = provider.info().master_key_id;
    assert_ne!(before, after);
    assert_ne!(fs::read(dir.path().join("kek.key")).unwrap(), old_kek);
    assert_eq!(*provider.unwrap("org_a.v1", &wrapped, b"c").unwrap(), [9; 32]);
    // Another handle (the server, after the CLI rotated) follows.
    let other = LocalProvider::open(files(dir.path())).unwrap();
    assert_eq!(*other.unwrap("org_a.v1", &wrapped, b"c").unwrap(), [9; 32]);

    // A crash after the store was resealed but before the rename: the next start finishes it.
    let store_before = fs::read(dir.path().join("keystore.json")).unwrap();
    let new_key = fresh_key_material();
    let kek = kek_from(&new_key);
    let keys = other.loaded.lock().unwrap().keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_private(&dir.path().join("kek.key.next"), new_key.as_ref()).unwrap();
    write_store(&dir.path().join("keystore.json"), &kek, &keys).unwrap();
    let recovered = LocalProvider::open(files(dir.path())).unwrap();
    assert_eq!(recovered.info().master_key_id, kek.id);
    assert!(!dir.path().join("kek.key.next").exists());
    assert_eq!(*recovered.unwrap("org_a.v1", &wrapped, b"c").unwrap(), [9; 32]);
    // A crash before the store was resealed: the stray next file is discarded.
    write_private(&dir.path().join("kek.key.next"), fresh_key_material().as_ref()).unwrap();
    let kept = LocalProvider::open(files(dir.path())).unwrap();
    assert_eq!(kept.info().master_key_id, kek.id);
    assert!(!dir.path().join("kek.key.next").exists());
    assert_ne!(fs::read(dir.path().join("keystore.json")).unwrap(), store_before);
}

#[test]
fn a_missing_wrong_or_exposed_kek_is_refused_and_nothing_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    LocalProvider::open(files(dir.path())).unwrap().create_key("org_a.v1").unwrap();
    let store = fs::read(dir.path().join("keystore.json")).unwrap();
    let kek = dir.path().join("kek.key");
    let original = fs::read(&kek).unwrap();

    fs::remove_file(&kek).unwrap();
    let missing = LocalProvider::open(files(dir.path())).unwrap_err().to_string();
    assert!(missing.contains("restore the KEK file"), "{missing}");
    assert!(!kek.exists(), "no new KEK is made for an existing store");

    write_private(&kek, &[1; 32]).unwrap();
    let wrong = LocalProvider::open(files(dir.path())).unwrap_err().to_string();
    assert!(wrong.contains("restore the KEK file that belongs to this store"), "{wrong}");

    write_private(&kek, b"short").unwrap();
    assert!(LocalProvider::open(files(dir.path())).unwrap_err().to_string().contains("not a 256-bit key"));

    write_private(&kek, &original).unwrap();
    fs::set_permissions(&kek, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(LocalProvider::open(files(dir.path())).unwrap_err().to_string().contains("chmod 600"));
    assert_eq!(fs::read(dir.path().join("keystore.json")).unwrap(), store, "the store was never rewritten");
    fs::set_permissions(&kek, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(LocalProvider::open(files(dir.path())).unwrap().has_key("org_a.v1").unwrap());
}
