//! The bans file of the data directory, `<data_dir>/bans.txt`: one ban a line,
//!
//! ```text
//! # <target> <until_unix_ms> <reason> <since_unix_ms> [note]
//! 2AzWh3...base58id 1767225600000 rate_limit 1767222000000
//! 203.0.113.7 1767225600000 manual 1767222000000 scanning our ports
//! ```
//!
//! `target` is a base58 node id or an IP address, times are wall-clock unix milliseconds, `reason` is a
//! [`BanReason`] label and the note is the rest of the line. `#` starts a comment line; blank lines are
//! ignored. Loading never fails: a line that does not parse is skipped and reported, an expired ban is
//! skipped and counted. The node rewrites the file atomically (like the routing-table snapshot) when its
//! bans change and at shutdown.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Ban, BanReason, BanTarget, clean_note};
use crate::identity::NodeId;
use crate::persist::{PersistError, write_atomic};

/// What [`BanFile::load`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BanLoad {
    /// Bans still active, in file order.
    pub bans: Vec<Ban>,
    /// Well-formed bans skipped because they had expired.
    pub expired: usize,
    /// Lines skipped, each as "line N: why" (or why the file could not be read).
    pub problems: Vec<String>,
}

/// Splits off the first whitespace-separated field.
fn field(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

fn parse_line(line: &str) -> Result<Ban, String> {
    let (target, rest) = field(line);
    let (until, rest) = field(rest);
    let (reason, rest) = field(rest);
    let (since, note) = field(rest);
    let target: BanTarget = target.parse().map_err(|e| format!("{e}"))?;
    let time = |name: &str, text: &str| {
        text.parse::<i64>()
            .map_err(|_| format!("{name} {text:?} is not a unix time in milliseconds"))
    };
    let until_ms = time("until", until)?;
    let reason: BanReason = reason.parse().map_err(|e| format!("{e}"))?;
    let since_ms = time("since", since)?;
    Ok(Ban {
        target,
        reason,
        note: clean_note(note),
        since_ms,
        until_ms,
    })
}

/// Parses the text of a bans file at `now`.
pub fn parse(text: &str, now: i64) -> BanLoad {
    let mut load = BanLoad::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(ban) if ban.is_active(now) => load.bans.push(ban),
            Ok(_) => load.expired += 1,
            Err(why) => load.problems.push(format!("line {}: {why}", i + 1)),
        }
    }
    load
}

/// The file text for `bans`, under a comment `header` (one or more lines).
pub fn render(bans: &[Ban], header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("# <target> <until_unix_ms> <reason> <since_unix_ms> [note]\n");
    for ban in bans {
        out.push_str(&format!(
            "{} {} {} {}",
            ban.target, ban.until_ms, ban.reason, ban.since_ms
        ));
        let note = clean_note(&ban.note);
        if !note.is_empty() {
            out.push(' ');
            out.push_str(&note);
        }
        out.push('\n');
    }
    out
}

/// The bans file of a data directory.
#[derive(Clone, Debug)]
pub struct BanFile {
    /// The file.
    path: PathBuf,
}

impl BanFile {
    /// The bans file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file at `now`; never fails (a missing file holds no bans; an unreadable one is a
    /// problem).
    pub fn load(&self, now: i64) -> BanLoad {
        match fs::read(&self.path) {
            Ok(bytes) => parse(&String::from_utf8_lossy(&bytes), now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BanLoad::default(),
            Err(e) => BanLoad {
                problems: vec![format!("cannot read {}: {e}", self.path.display())],
                ..BanLoad::default()
            },
        }
    }

    /// Writes `bans` atomically, replacing the file.
    pub fn save(&self, bans: &[Ban], owner: &NodeId, now: i64) -> Result<(), PersistError> {
        let header = format!(
            "kadmesh bans of {owner}, written at unix time {} ms: {} bans\nrewritten by the node; do not edit while it runs",
            now,
            bans.len()
        );
        write_atomic(&self.path, render(bans, &header).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Offence;
    use crate::identity::Keypair;

    fn ban(target: BanTarget, reason: BanReason, note: &str, until_ms: i64) -> Ban {
        Ban {
            target,
            reason,
            note: note.into(),
            since_ms: 1_000,
            until_ms,
        }
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!(
            "kadmesh-bans-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir).unwrap();
        let file = BanFile::new(dir.join("bans.txt"));
        assert_eq!(file.load(0), BanLoad::default());
        let bans = vec![
            ban(
                BanTarget::Id(Keypair::random().node_id()),
                BanReason::Offence(Offence::RateLimit),
                "",
                5_000,
            ),
            ban(
                "203.0.113.7".parse().unwrap(),
                BanReason::Manual,
                "scanning  our ports",
                6_000,
            ),
            ban(
                "2001:db8::1".parse().unwrap(),
                BanReason::IpThreshold,
                "x",
                7_000,
            ),
        ];
        let owner = Keypair::random().node_id();
        file.save(&bans, &owner, 2_000).unwrap();
        let text = fs::read_to_string(file.path()).unwrap();
        assert!(
            text.starts_with(&format!("# kadmesh bans of {owner}")),
            "{text}"
        );
        let loaded = file.load(2_000);
        assert_eq!(loaded.bans, bans);
        assert_eq!((loaded.expired, loaded.problems.len()), (0, 0));
        // Later, the first has expired.
        let later = file.load(5_000);
        assert_eq!(later.bans, bans[1..]);
        assert_eq!(later.expired, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_lines_are_skipped_and_reported() {
        let id = Keypair::random().node_id();
        let text = format!(
            "# comment\n\n\
             {id} 9000 rate_limit 1000\n\
             nonsense 9000 manual 1000\n\
             203.0.113.9 soon manual 1000\n\
             203.0.113.9 9000 bored 1000\n\
             203.0.113.9 9000 manual\n\
             {id}\n\
             203.0.113.10 9000 manual 1000 a note\twith tab\n"
        );
        let load = parse(&text, 2_000);
        assert_eq!(load.bans.len(), 2);
        assert_eq!(load.bans[1].note, "a note with tab");
        let lines: Vec<&str> = load
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(lines, ["line 4", "line 5", "line 6", "line 7", "line 8"]);
        assert!(load.problems[1].contains("\"soon\""), "{:?}", load.problems);
        // Binary garbage is a set of bad lines, not a crash.
        let garbage = parse(&String::from_utf8_lossy(&[0xff, 0xfe, b'\n', 0x00]), 0);
        assert!(garbage.bans.is_empty());
        assert_eq!(garbage.problems.len(), 2);
    }
}
