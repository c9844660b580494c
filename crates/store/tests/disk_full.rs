//! A full disk: commit returns a `StoreError` (never a panic), the store
//! refuses writes while the engine is broken, and comes back by itself once
//! space is free again. Needs a small tmpfs, so root (as on the project's
//! machines and CI); prints a note and passes elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_store::{Durability, FjallStore, Op, Space, Store, StoreConfig, StoreErrorKind, NEVER};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("record {i};").into_bytes();
    v.resize(1500, b'x');
    v
}

#[test]
fn full_disk_returns_errors_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&tmp.path().join("mnt"), "8m") else {
        eprintln!("note: cannot mount a tmpfs here (not root?): full-disk test not run");
        return;
    };
    let path = fs.0.join("store");
    let mut cfg = StoreConfig::new(&path);
    cfg.durability = Durability::Buffered;
    let mut store = FjallStore::open(&cfg).unwrap();

    let mut ok = Vec::new();
    for i in 0..100u32 {
        store
            .commit(&[Op::put(
                Space::Transactions,
                format!("k{i:05}"),
                value(i),
                NEVER,
            )])
            .unwrap();
        ok.push(i);
    }

    // Fill the file system.
    let filler_path = fs.0.join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.sync_all();
    drop(filler);

    // Commits now fail with an error that says why; none panics.
    let mut first_err = None;
    let mut i = 100u32;
    while i < 5_000 {
        let batch: Vec<Op> = (i..i + 10)
            .map(|k| Op::put(Space::Transactions, format!("k{k:05}"), value(k), NEVER))
            .collect();
        match store.commit(&batch) {
            Ok(_) => ok.extend(i..i + 10),
            Err(e) => {
                first_err = Some(e);
                break;
            }
        }
        i += 10;
    }
    let err = first_err.expect("a full disk must fail a commit");
    eprintln!("first error: {err}");
    assert!(
        matches!(
            err.kind(),
            StoreErrorKind::DiskFull | StoreErrorKind::Unavailable
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let again = store
        .commit(&[Op::put(Space::Dialogs, "d", "x", NEVER)])
        .expect_err("still failing");
    eprintln!("next error: {again}");
    assert!(!store.stats().available);
    assert!(store.stats().commit_errors >= 2);

    // Space comes back: after the back-off the store reopens and works.
    std::fs::remove_file(&filler_path).unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    store
        .commit(&[Op::put(Space::Dialogs, "after", "x", NEVER)])
        .expect("store recovers once space is free");
    let st = store.stats();
    assert!(st.available);
    assert_eq!(st.reopens, 1);

    // Everything whose commit returned Ok is there.
    let loaded = store.load(Space::Transactions, 0).unwrap();
    let keys: std::collections::HashSet<Vec<u8>> = loaded.into_iter().map(|r| r.key).collect();
    for k in &ok {
        assert!(keys.contains(format!("k{k:05}").as_bytes()), "k{k:05} lost");
    }
    assert_eq!(store.load(Space::Dialogs, 0).unwrap().len(), 1);
    drop(store);
    drop(fs);
}
