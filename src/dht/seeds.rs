//! Seed lists: files of boot node descriptors, one `ip:port/base58key` a line, `#` comments and blank
//! lines allowed (folder `bootstrap/`).

use std::path::{Path, PathBuf};

use crate::peer::{DescriptorError, NodeInfo};

/// Why a seed list could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedListError {
    /// The file could not be read.
    #[error("seed list {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid descriptor.
    #[error("seed list {source_name}, line {line}: {error}")]
    BadLine {
        /// The file (or other source) name.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        error: DescriptorError,
    },
}

/// Parses seed-list text; `source_name` names it in errors.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<NodeInfo>, SeedListError> {
    let mut nodes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let node = line.parse().map_err(|error| SeedListError::BadLine {
            source_name: source_name.to_owned(),
            line: i + 1,
            error,
        })?;
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    Ok(nodes)
}

/// Reads and parses a seed-list file.
pub fn load(path: &Path) -> Result<Vec<NodeInfo>, SeedListError> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedListError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Renders nodes as a seed list with a header comment.
pub fn render(nodes: &[NodeInfo], header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    for n in nodes {
        out.push_str(&n.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn parses_comments_blanks_and_dedupes() {
        let a = NodeInfo::new(
            Keypair::random().node_id(),
            "127.0.0.1:7513".parse().unwrap(),
        );
        let b = NodeInfo::new(Keypair::random().node_id(), "[::1]:7514".parse().unwrap());
        let text = format!("# boot nodes\n\n{a}\n  {b}  # second\n{a}\n");
        assert_eq!(parse(&text, "t").unwrap(), vec![a, b]);
        assert_eq!(
            parse(&render(&[a, b], "hdr\nline 2"), "t").unwrap(),
            vec![a, b]
        );
    }

    #[test]
    fn bad_line_is_named() {
        let a = NodeInfo::new(
            Keypair::random().node_id(),
            "127.0.0.1:7513".parse().unwrap(),
        );
        let text = format!("{a}\n\nnot-a-descriptor\n");
        match parse(&text, "seeds.txt") {
            Err(SeedListError::BadLine {
                source_name, line, ..
            }) => {
                assert_eq!(source_name, "seeds.txt");
                assert_eq!(line, 3);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load(Path::new("/nonexistent/seeds.txt")),
            Err(SeedListError::Io { .. })
        ));
    }
}
