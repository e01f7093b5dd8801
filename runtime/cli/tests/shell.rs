//! The interactive SQL shell (`weir sql` without a script) through a real
//! pseudo-terminal: statements typed, a continuous query's result table redrawn in
//! place as its changelog arrives, Ctrl-C (sent as the terminal's interrupt
//! character) stopping the query but not the shell.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Pty {
    master: std::fs::File,
    screen: Arc<Mutex<String>>,
    child: std::process::Child,
}

impl Pty {
    fn spawn(args: &[&str]) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two file descriptors; the name, termios and winsize are optional.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (std::fs::File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the pty"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.args(args).stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave)).env("WEIR_LOG", "error");
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
        // controlling terminal is the pty, so that ^C reaches the shell as SIGINT.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn weir sql");
        drop(slave);
        let screen = Arc::new(Mutex::new(String::new()));
        let (s, mut r) = (screen.clone(), master.try_clone().expect("dup master"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty { master, screen, child }
    }

    fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("write to the pty");
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the output after byte `from` satisfies `f`.
    fn wait<T>(&self, what: &str, from: usize, timeout: Duration, f: impl Fn(&str) -> Option<T>) -> T {
        let t0 = Instant::now();
        loop {
            let t = self.text();
            if let Some(v) = f(&t[from.min(t.len())..]) {
                return v;
            }
            assert!(t0.elapsed() < timeout, "timed out waiting for {what}; the terminal shows:\n{t}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The count in the last drawn `| 0 | <count> |` row of the result table.
fn last_count(screen: &str) -> Option<u64> {
    screen.lines().rev().find_map(|l| {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        (cells.len() == 4 && cells[1] == "0").then(|| cells[2].parse().ok()).flatten()
    })
}

#[test]
fn a_continuous_query_updates_in_place_and_ctrl_c_stops_only_the_query() {
    let mut pty = Pty::spawn(&["sql"]);
    let minute = Duration::from_secs(60);
    pty.wait("the banner", 0, minute, |t| t.contains("Weir SQL shell").then_some(()));
    pty.send("CREATE TABLE t (n BIGINT, k AS n % 3)\n  WITH ('connector' = 'datagen', 'rows-per-second' = '300');\n");
    pty.wait("the table created", 0, minute, |t| t.contains("[INFO] Table 't' created.").then_some(()));
    // an error names the line and column, and the shell goes on
    let at = pty.text().len();
    pty.send("SELECT nope FROM t;\n");
    pty.wait("a planning error", at, minute, |t| t.contains("[ERROR]").then_some(()));
    let at = pty.text().len();
    pty.send("SELECT k, COUNT(*) AS c FROM t GROUP BY k;\n");
    let first = pty.wait("a first result", at, minute, |t| last_count(t).filter(|c| *c > 0));
    let later = pty.wait("the count to grow", at, minute, |t| last_count(t).filter(|c| *c > first + 50));
    let shown = pty.text()[at..].to_string();
    assert!(shown.contains("| k "), "a table with the query's columns:\n{shown}");
    assert!(shown.contains("\x1b[") && shown.contains("A\x1b[0J"), "the table is redrawn in place (cursor up, clear):\n{shown}");
    assert!(shown.contains("updating result"), "the status says the result is updating:\n{shown}");
    assert!(later > first);
    // Ctrl-C: the query stops, the shell stays
    let at = pty.text().len();
    pty.send("\x03");
    pty.wait("the query stopped", at, minute, |t| t.contains("query stopped (Ctrl-C)").then_some(()));
    let at = pty.text().len();
    pty.send("SHOW TABLES;\n");
    pty.wait("SHOW TABLES", at, minute, |t| t.contains("t (table)").then_some(()));
    let at = pty.text().len();
    pty.send("EXPLAIN SELECT k, COUNT(*) FROM t GROUP BY k;\n");
    pty.wait("the plan", at, minute, |t| (t.contains("Aggregate") && t.contains("changelog: updating")).then_some(()));
    pty.send("QUIT;\n");
    let t0 = Instant::now();
    loop {
        if let Some(status) = pty.child.try_wait().expect("wait") {
            assert!(status.success(), "the shell exits cleanly: {status}");
            break;
        }
        assert!(t0.elapsed() < minute, "the shell did not exit after QUIT;:\n{}", pty.text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn statements_from_a_pipe_run_in_order() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("sql")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir sql");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"CREATE TABLE t (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');\nSELECT n % 2 AS odd, COUNT(*) AS c FROM t GROUP BY n % 2;\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("| 0   | 5 |") && text.contains("| 1   | 5 |"), "the final table: five even and five odd:\n{text}");
    assert!(text.contains("2 rows"), "{text}");
}
