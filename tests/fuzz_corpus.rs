//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! functions the cargo-fuzz targets call (`authgate::fuzzing`), on stable, without
//! cargo-fuzz: deterministic, a few seconds. Fails naming every input that panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn fuzz_corpus_replays_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    // Inputs that panic print their message; keep the default hook so it shows.
    for (name, target) in authgate::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus inputs", dir.display());
        for file in &files {
            let data = std::fs::read(file).expect("readable corpus input");
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
        counts.push(format!("{name}: {}", files.len()));
    }
    eprintln!("fuzz corpus replayed: {}", counts.join(", "));
    assert!(
        failures.is_empty(),
        "{} corpus input(s) panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for (name, _) in authgate::fuzzing::TARGETS {
        let file = root.join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("authgate::fuzzing::{name}(")),
            "{} must call authgate::fuzzing::{name}",
            file.display()
        );
    }
}
