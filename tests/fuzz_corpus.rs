//! Replays the saved fuzzing corpus (`fuzz/corpus/<target>/`) and the kept crash regressions
//! (`fuzz/regressions/<target>/`) through the harnesses of `kadmesh::fuzzing`, on stable Rust, so every
//! input a fuzzer found interesting is checked again by plain `cargo test`.

use std::path::{Path, PathBuf};

use kadmesh::fuzzing::{HARNESSES, Harness, seed_corpus};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir` in name order (hidden files skipped); none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs every file of `dir` through `harness`; returns how many ran. A failing input is named.
fn replay(target: &str, harness: Harness, dir: &Path) -> usize {
    let files = inputs(dir);
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "{target}: input {} fails", file.display());
    }
    files.len()
}

#[test]
fn every_target_has_a_saved_corpus_and_it_replays_cleanly() {
    for (target, harness) in HARNESSES {
        let dir = fuzz_dir().join("corpus").join(target);
        assert!(dir.is_dir(), "missing corpus {}", dir.display());
        let replayed = replay(target, harness, &dir);
        assert!(replayed > 0, "empty corpus {}", dir.display());
    }
}

#[test]
fn kept_crash_regressions_replay_cleanly() {
    for (target, harness) in HARNESSES {
        replay(
            target,
            harness,
            &fuzz_dir().join("regressions").join(target),
        );
    }
}

#[test]
fn seed_inputs_replay_cleanly_and_cover_every_target() {
    let seeds = seed_corpus();
    for (target, harness) in HARNESSES {
        let inputs = seeds
            .iter()
            .find(|(name, _)| *name == target)
            .map(|(_, inputs)| inputs)
            .expect("seeds for every target");
        assert!(!inputs.is_empty(), "{target}: no seeds");
        for input in inputs {
            harness(input);
        }
    }
}

/// Writes the seed inputs into `fuzz/corpus/<target>/seed-<hash>` (run before a first fuzzing run:
/// `cargo test --test fuzz_corpus -- --ignored write_seed_corpus`).
#[test]
#[ignore = "writes files: run by hand to seed fuzz/corpus"]
fn write_seed_corpus() {
    use std::hash::{DefaultHasher, Hash, Hasher};
    for (target, inputs) in seed_corpus() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create corpus directory");
        for input in inputs {
            let mut hasher = DefaultHasher::new();
            input.hash(&mut hasher);
            let path = dir.join(format!("seed-{:016x}", hasher.finish()));
            std::fs::write(path, &input).expect("write seed");
        }
    }
}
