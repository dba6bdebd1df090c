//! Replays every committed input (`corpus/<target>/`, the seeds and what fuzzing kept, and
//! `regressions/<target>/`, each crash found) through its target: the CI smoke of the fuzz
//! targets, on stable Rust and without libFuzzer.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (name, target) in certfleet_fuzz::TARGETS {
        let mut count = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                let run = std::panic::catch_unwind(|| target(&data));
                assert!(run.is_ok(), "{name} fails on {}", path.display());
                count += 1;
            }
        }
        assert!(count > 0, "target {name} has no seed inputs in corpus/{name}");
        println!("{name}: {count} inputs");
        total += count;
    }
    println!("{total} inputs replayed");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in certfleet_fuzz::TARGETS {
        let bin = root.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}

/// The seeds reach the end of TSIG verification: BIND's signed answers verify with its key
/// (HMAC-MD5, certbot's default, and HMAC-SHA256), and its BADKEY answer is explained.
#[test]
fn signed_bind_answers_in_the_seeds_verify() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/dns_message");
    let mut verified = Vec::new();
    let mut badkey = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match certfleet_fuzz::dns_message_checked(&std::fs::read(&path).unwrap()) {
            Some(Ok(())) => verified.push(path.file_name().unwrap().to_string_lossy().into_owned()),
            Some(Err(e)) if e.contains("BADKEY") => badkey += 1,
            _ => {}
        }
    }
    for alg in ["hmac-md5", "hmac-sha256"] {
        assert!(
            verified.iter().any(|n| n.contains(alg)),
            "no {alg} answer verifies: {verified:?}"
        );
    }
    assert!(badkey > 0, "no BADKEY answer among the seeds");
}
