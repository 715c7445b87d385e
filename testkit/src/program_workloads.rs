//! The real-program workloads of `preload/tests/programs/workload.sh` (Python, sqlite3, git,
//! gcc, ...): preload's tests run each one on glibc and under libptalloc.so and compare the
//! outputs, and `compare-programs` times them; both drive the script through here.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../preload/tests/programs/workload.sh")
}

/// The workloads' names, in the script's order.
pub fn names() -> Result<Vec<String>, String> {
    let out = Command::new(script()).arg("list").output().map_err(|e| cannot_run(&e))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect())
}

/// Whether `dir` holds the workloads' inputs already (they take a while to make).
pub fn is_prepared(dir: &Path) -> bool {
    marker(dir).exists()
}

/// Make the workloads' inputs in `dir`, unless they are there already.
pub fn prepare(dir: &Path) -> Result<(), String> {
    if is_prepared(dir) {
        return Ok(());
    }
    let out = Command::new(script()).arg("prepare").arg(dir).output().map_err(|e| cannot_run(&e))?;
    if !out.status.success() {
        return Err(format!(
            "preparing the workloads failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    std::fs::write(marker(dir), "").map_err(|e| format!("{}: {e}", marker(dir).display()))
}

/// The command that runs workload `name` on the inputs in `dir`.
pub fn command(name: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(script());
    cmd.args(["run", name]).arg(dir);
    cmd
}

fn marker(dir: &Path) -> PathBuf {
    dir.join(".prepared")
}

fn cannot_run(e: &std::io::Error) -> String {
    format!("cannot run {}: {e}", script().display())
}
