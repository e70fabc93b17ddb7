//! `scripts/lib.sh`'s set-up: which packages count as missing and what it says to do, on a PATH
//! of stubs standing for a machine (no dpkg: a Fedora-like one; apt-get and dpkg: a Debian-like
//! one, as a user other than root through `SKIFF_SETUP_UID`). Needs bash, no engine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of stub commands, each a script that exits 0 (or runs `body` when given).
struct Stubs(PathBuf);

impl Stubs {
    fn new(name: &str, commands: &[(&str, &str)]) -> Stubs {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("setup-{name}-{}", std::process::id()));
        // a directory left by an earlier run of the same process id would hold stale stubs
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("a stale stub directory goes");
        }
        std::fs::create_dir_all(&dir).expect("a stub directory");
        for (command, body) in commands {
            let path = dir.join(command);
            let body = if body.is_empty() { "exit 0" } else { body };
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("a stub");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("a runnable stub");
        }
        Stubs(dir)
    }

    /// Runs `script` in bash after `source scripts/lib.sh`, with the stubs alone on the PATH:
    /// exit code, stdout, stderr.
    fn run(&self, script: &str, env: &[(&str, &str)]) -> (i32, String, String) {
        let full = format!("source scripts/lib.sh; PATH={}; {script}", self.0.display());
        let out = Command::new("bash")
            .args(["-c", &full])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("BUSYBOX")
            .envs(env.iter().copied())
            .output()
            .expect("bash runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _gone = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn without_dpkg_a_package_is_there_when_its_commands_are() {
    let all =
        Stubs::new("all", &[("promtool", ""), ("prometheus", ""), ("wrk", ""), ("podman", ""), ("chromedriver", "")]);
    let (code, out, err) = all.run("missing_packages prometheus wrk podman chromium-driver", &[]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "all installed: nothing missing");
    let (code, out, err) = all.run("need_packages prometheus wrk podman chromium-driver && echo ready", &[]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "ready\n", ""), "and the script goes on");

    let some = Stubs::new("some", &[("promtool", ""), ("wrk", "")]);
    let (_, out, _) = some.run("missing_packages prometheus wrk podman chromium-driver", &[]);
    assert_eq!(out, "prometheus\npodman\nchromium-driver\n", "promtool alone is not prometheus");
}

#[test]
fn without_apt_every_missing_tool_is_named_with_what_to_install() {
    let some = Stubs::new("fedora", &[("promtool", "")]);
    let (code, out, err) = some.run("need_packages prometheus wrk chromium-driver curl; echo went on", &[]);
    assert_eq!(code, 1, "it stops: {out}{err}");
    assert!(!out.contains("went on"), "{out}");
    let expected = "setup: this is not a Debian-like system; install with your package manager:\n\
                    \x20   prometheus: Prometheus, the server and promtool (not found: prometheus)\n\
                    \x20   wrk (not found: wrk)\n\
                    \x20   chromium-driver: ChromeDriver, the driver of the same Chromium (not found: chromedriver)\n\
                    \x20   curl (not found: curl)\n\
                    setup: then run again\n";
    assert_eq!(err, expected);
}

#[test]
fn on_debian_as_a_user_it_prints_the_command_to_run() {
    // dpkg knows every package but wrk
    let debian = Stubs::new("debian", &[("apt-get", ""), ("dpkg", r#"[ "$2" != wrk ]"#)]);
    let (code, out, err) =
        debian.run("need_packages prometheus wrk podman; echo went on", &[("SKIFF_SETUP_UID", "1000")]);
    assert_eq!(code, 1, "it stops: {out}{err}");
    assert_eq!(err, "setup: missing wrk; run:\n    sudo apt-get update && sudo apt-get install -y wrk\n");
    let (code, out, _) = debian.run("need_packages prometheus podman && echo ready", &[("SKIFF_SETUP_UID", "1000")]);
    assert_eq!((code, out.as_str()), (0, "ready\n"), "dpkg has them: nothing to do");
}
