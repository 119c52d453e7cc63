//! Helpers of the operator tests: temporary directories, `kadmesh node` child processes (readiness from
//! their stdout lines), a small JSON/SSE HTTP client and a Prometheus text parser.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kadmesh::NodeInfo;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Upper bound of every wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// The built `kadmesh` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_kadmesh");

/// A directory under Cargo's test temp dir, removed on drop (kept if the test failed).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "operator-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `kadmesh node` child process.
pub struct NodeProc {
    pub name: String,
    pub child: Child,
    pub descriptor: NodeInfo,
    /// `http://ip:port`
    pub api: String,
    pub log: PathBuf,
}

impl NodeProc {
    /// Starts `kadmesh node --listen 127.0.0.1:<port> --api 127.0.0.1:0 --data-dir <dir> <extra>`, its
    /// stderr in `<dir>.log`, and waits for its two stdout lines.
    ///
    /// Without a `--config` in `extra` the node gets one that exempts loopback from the per-IP and
    /// per-subnet limits (every test node shares 127.0.0.1).
    pub async fn start(name: &str, dir: &Path, port: u16, extra: &[&str]) -> NodeProc {
        let config = dir.with_extension("toml");
        let mut extra = extra.to_vec();
        if !extra.contains(&"--config") {
            std::fs::write(&config, "[net]\nexempt_local = true\n").unwrap();
            extra.extend(["--config", config.to_str().unwrap()]);
        }
        let log = dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(BIN)
            .arg("node")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--api", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .args(&extra)
            .env("RUST_LOG", "warn,kadmesh=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (first, second) = tokio::time::timeout(WAIT, async {
            (
                lines.next_line().await.unwrap(),
                lines.next_line().await.unwrap(),
            )
        })
        .await
        .unwrap_or_else(|_| panic!("{name} printed nothing; log:\n{}", read_log(&log)));
        let first = first.unwrap_or_else(|| panic!("{name} exited; log:\n{}", read_log(&log)));
        let second = second.unwrap_or_else(|| panic!("{name} exited; log:\n{}", read_log(&log)));
        let descriptor: NodeInfo = first.parse().unwrap();
        let api = second.strip_prefix("api ").unwrap().to_owned();
        NodeProc {
            name: name.to_owned(),
            child,
            descriptor,
            api,
            log,
        }
    }

    pub fn id(&self) -> String {
        self.descriptor.id.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// SIGKILL, then reap.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
    }

    /// SIGTERM, then wait for the exit status.
    #[cfg(unix)]
    pub async fn terminate(&mut self) -> ExitStatus {
        signal(&self.child, libc::SIGTERM);
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit after SIGTERM", self.name))
            .unwrap()
    }

    /// GET `path` until `check` accepts the JSON (bounded by [`WAIT`]).
    pub async fn wait_json(&self, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let url = self.url(path);
        eventually(&format!("{}: {what}", self.name), || async {
            let (status, body) = get(&url).await;
            (status == StatusCode::OK && check(&body)).then_some(body)
        })
        .await
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.log());
        }
    }
}

pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Sends `sig` to a child process.
#[cfg(unix)]
pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id().expect("child still running") as libc::pid_t;
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Polls `probe` every 50 ms until it returns `Some`, at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    (status, value)
}

/// GET a JSON resource.
pub async fn get(url: &str) -> (StatusCode, Value) {
    match client().get(url).send().await {
        Ok(resp) => json_of(resp).await,
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// POST a JSON body.
pub async fn post(url: &str, body: Value) -> (StatusCode, Value) {
    json_of(client().post(url).json(&body).send().await.unwrap()).await
}

/// DELETE a resource.
pub async fn delete(url: &str) -> (StatusCode, Value) {
    json_of(client().delete(url).send().await.unwrap()).await
}

/// POST raw bytes with a content type (or none).
pub async fn post_raw(url: &str, content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut req = client().post(url).body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    json_of(req.send().await.unwrap()).await
}

/// GET text.
pub async fn get_text(url: &str) -> (StatusCode, String) {
    let resp = client().get(url).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// An open Server-Sent-Events stream.
pub struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    /// Opens `url` and waits for its `subscribed` event.
    pub async fn open(url: &str) -> SseStream {
        let resp = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let mut s = SseStream {
            resp,
            buf: String::new(),
        };
        let (event, _) = s.next().await;
        assert_eq!(event, "subscribed");
        s
    }

    /// The next event: (event name, JSON data).
    pub async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut event = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event:") {
                            event = e.trim().to_owned();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // keep-alive comment
                    }
                    return (event, serde_json::from_str(&data).unwrap());
                }
                let chunk = self.resp.chunk().await.unwrap().expect("SSE stream ended");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("timed out waiting for an SSE event")
    }

    /// The next `message` event.
    pub async fn message(&mut self) -> Value {
        let (event, data) = self.next().await;
        assert_eq!(event, "message", "{data}");
        data
    }
}

/// One sample of a Prometheus text exposition.
pub type Samples = BTreeMap<String, f64>;

/// Parses the Prometheus text format strictly: `# HELP`/`# TYPE` lines, then samples
/// `name{label="value",...} number`, each belonging to a family with a `# TYPE`. Returns the samples keyed
/// by `name{labels}` exactly as written.
pub fn parse_prometheus(text: &str) -> Samples {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Samples::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("bad line {line:?}"));
            assert!(valid_name(name), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line:?}"
                );
                types.insert(name.to_owned(), t.to_owned());
            } else {
                assert_eq!(kind, "HELP", "{line:?}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad sample name in {line:?}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            for pair in split_labels(&labels[1..labels.len() - 1]) {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                assert!(valid_name(k), "bad label name in {line:?}");
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "{line:?}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample without # TYPE: {line:?}"
        );
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `a="x",b="y,z"` on the commas between pairs.
fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            '\\' if in_quotes => escaped = !escaped,
            '"' if !escaped => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}
