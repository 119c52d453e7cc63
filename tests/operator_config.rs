//! `kadmesh config` and `kadmesh node --config` through the binary: the printed default parses back to
//! the default, invalid files and flags fail with one line naming the key.

mod operator_common;

use std::process::{Command, Output};

use kadmesh::cli::config::NodeFile;
use operator_common::{BIN, TempDir};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn printed_default_parses_back_to_the_default() {
    let out = run(&["config", "default"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 30,
        "commented"
    );
    assert_eq!(NodeFile::from_toml_str(&text).unwrap(), NodeFile::default());

    let dir = TempDir::new("config-default");
    let file = dir.join("node.toml");
    std::fs::write(&file, &text).unwrap();
    let out = run(&["config", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let effective = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        NodeFile::from_toml_str(&effective).unwrap(),
        NodeFile::default()
    );
}

#[test]
fn invalid_files_name_the_key_in_one_line() {
    let dir = TempDir::new("config-invalid");
    let cases = [
        ("[net]\nmax_frame_len = 12", "net.max_frame_len"),
        ("[dht]\nalpha = 0", "dht.alpha"),
        ("[dht]\nbogus = 1", "dht.bogus"),
        ("[node]\napi = \"nowhere\"", "node.api"),
        ("network_id = true", "network_id"),
        (
            "[bootstrap]\nnodes = [\"1.2.3.4:5/zzz\"]",
            "bootstrap.nodes",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let file = dir.join(&format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        for args in [
            vec!["config", "check", file.to_str().unwrap()],
            vec!["node", "--config", file.to_str().unwrap()],
        ] {
            let out = run(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(err.contains(&format!("`{key}`")), "{text:?}: {err}");
            assert!(
                err.contains(file.to_str().unwrap()),
                "names the file: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(out.stdout.is_empty());
        }
    }
    let file = dir.join("syntax.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:1\"\n[net\n").unwrap();
    let err = stderr(&run(&["config", "check", file.to_str().unwrap()]));
    assert!(err.contains("line 2"), "{err}");
    let err = stderr(&run(&["config", "check", "/nonexistent/node.toml"]));
    assert!(err.contains("/nonexistent/node.toml"), "{err}");
}

#[test]
fn bad_flags_are_one_line_errors() {
    for args in [
        vec!["node", "--network-id", "abc"],
        vec!["node", "--network-id", "1", "--network", "main"],
        vec!["node", "--snapshot-interval", "soon"],
        vec!["node", "--api", "nowhere"],
        vec!["localnet", "--nodes", "0"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = run(&[
        "node",
        "--snapshot-interval",
        "1ms",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`node.snapshot_interval`"),
        "{}",
        stderr(&out)
    );
}
