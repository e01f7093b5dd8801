//! Shared helpers for Weir end-to-end tests: the `weir` binary, free ports, the S3 test
//! server started by `./test.sh`, worker processes of a local cluster, and the
//! committed output of the exactly-once file sink.

pub mod kube;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `weir` binary of this workspace (built on demand when `cargo test -p weir-e2e`
/// runs alone).
pub fn weir_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/weir
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("weir")).expect("target directory");
    if !bin.exists() {
        let profile_release = bin.parent().is_some_and(|d| d.ends_with("release"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "weir-cli", "--bin", "weir"]);
        if profile_release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "building the weir binary failed");
    }
    bin
}

/// A TCP port nobody listens on right now, with `n - 1` free ports after it.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(20000);
        if base as u32 + n as u32 >= 65535 {
            continue;
        }
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// The bucket of the S3 test server started by `./test.sh`, or `None` (the test then
/// says how to run it; under CI it fails instead of skipping).
pub fn s3_bucket() -> Option<String> {
    match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("CI").is_some() => panic!("WEIR_TEST_S3_BUCKET is not set: CI must run the tests through ./test.sh"),
        Err(_) => {
            eprintln!("skipped: no S3 test server (run ./test.sh, which starts one)");
            None
        }
    }
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Every committed line of an exactly-once file sink directory, sorted.
pub fn committed(dir: &Path) -> Vec<String> {
    let mut lines = weir::connector::files::read_committed(dir).unwrap_or_default();
    lines.sort();
    lines
}

/// The sorted lines of a JSON-lines file.
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Runs `weir` with `args` to completion; panics with its output on failure.
pub fn run_weir(args: &[&str]) -> String {
    let out = Command::new(weir_bin()).args(args).output().expect("run weir");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "weir {} failed:\n{text}", args.join(" "));
    text
}

/// The pids of the worker processes whose parent is `parent`, by ordinal.
pub fn worker_pids(parent: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid …
        let ppid = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let ordinal = env
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("WEIR_POD_NAME="))
            .and_then(|pod| pod.rsplit_once('-'))
            .and_then(|(_, o)| o.parse::<u32>().ok());
        if let Some(o) = ordinal {
            out.push((o, pid));
        }
    }
    out.sort();
    out
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET`/`POST` against a REST endpoint: (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    weir::rest::client::request(addr, method, path, body).ok()
}
