//! System packages the tests need, installed with apt-get when missing (as root only).

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Debian packages `cargo xtask test` needs: `haproxy`, the load balancer of the
/// rolling-restart test (`crates/ferrite-server/tests/rolling_restart.rs`), and
/// `mesa-vulkan-drivers`, whose lavapipe (a software Vulkan device) runs the WGPU backend's
/// tests (`crates/ferrite-wgpu`), and `g++`, which builds the CUDA emulator the CUDA backend's
/// tests run on (`kernels/emu/`).
pub const TEST_PACKAGES: &[&str] = &["haproxy", "mesa-vulkan-drivers", "g++"];

/// Installs those of `packages` that dpkg does not know as installed, with
/// `apt-get install -y`; only as root (elsewhere it says what to run). Nothing happens, and
/// nothing is asked of the system, when all are present or the list is empty.
pub fn ensure_apt_packages(packages: &[&str]) -> Result<Vec<String>> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let mut missing = Vec::new();
    for p in packages {
        if !is_installed(p)? {
            missing.push(p.to_string());
        }
    }
    if missing.is_empty() {
        return Ok(missing);
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing system packages: {list}; install them with \
             `sudo apt-get install -y {list}` (xtask installs them itself only when run as root)"
        );
    }
    eprintln!("apt: installing {list}");
    apt_get(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().map(String::as_str));
    apt_get(&args)?;
    Ok(missing)
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get (is this a Debian/Ubuntu system?)")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn is_installed(package: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .context("running dpkg-query (system packages are installed with apt: Debian/Ubuntu only)")?;
    Ok(out.status.success() && status_means_installed(&String::from_utf8_lossy(&out.stdout)))
}

/// dpkg's `${Status}`: "install ok installed" for an installed package; anything else
/// ("deinstall ok config-files", "unknown ok not-installed", half-installed) is not.
pub fn status_means_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    words.len() == 3 && words[0] == "install" && words[2] == "installed"
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dpkg_status() {
        assert!(status_means_installed("install ok installed"));
        assert!(!status_means_installed("deinstall ok config-files"));
        assert!(!status_means_installed("unknown ok not-installed"));
        assert!(!status_means_installed("install ok half-installed"));
        assert!(!status_means_installed(""));
    }

    #[test]
    fn sees_dpkg_itself_installed() -> Result<()> {
        if !std::path::Path::new("/usr/bin/dpkg-query").exists() {
            eprintln!("SKIPPED: not a Debian-style system");
            return Ok(());
        }
        assert!(is_installed("dpkg")?);
        assert!(!is_installed("no-such-package-ferrite-xtask")?);
        assert!(ensure_apt_packages(&["dpkg"])?.is_empty());
        Ok(())
    }

    #[test]
    fn empty_list_asks_nothing() -> Result<()> {
        assert!(ensure_apt_packages(&[])?.is_empty());
        Ok(())
    }
}
