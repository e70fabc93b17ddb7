//! What the benchmarks share: starting a daemon and reading the address it listens on.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A daemon killed when dropped, a panic included.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// The daemon's process id, for reading /proc.
    #[allow(dead_code, reason = "not every bench reads /proc")]
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Starts a daemon (on port 0) with the token in its environment, if any, and returns it with
/// the address it listens on.
pub fn daemon(bin: &str, args: &[&str], token: Option<&str>) -> (Proc, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    match token {
        Some(t) => cmd.env("SKIFF_TOKEN", t),
        None => cmd.env_remove("SKIFF_TOKEN"),
    };
    // A bench killed by a signal runs no destructor: the daemon gets SIGTERM when the thread
    // that started it goes, so that an interrupted run leaves no daemon behind.
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("daemon starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" listening ") {
                if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                    let _ = tx.send(addr.to_string());
                }
            }
        }
    });
    let proc = Proc(child);
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("daemon listens");
    (proc, addr)
}

/// An HTTP client that keeps error bodies and gives up after a minute.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}
