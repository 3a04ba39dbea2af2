//! The checks `cargo xtask test` runs after the tests: the documentation builds without
//! warnings, and every crate packages (a dry run: nothing is published).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::test::workspace_root;

/// `cargo doc --workspace --no-deps` with rustdoc warnings denied.
pub fn docs() -> Result<String> {
    run(&["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    Ok("cargo doc --workspace --no-deps: no warnings".into())
}

/// `cargo package --workspace --no-verify`: metadata and file lists of every crate are valid.
pub fn package() -> Result<String> {
    run(&["package", "--workspace", "--no-verify", "--allow-dirty"], &[])?;
    Ok("cargo package --workspace: every crate packages".into())
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("running: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting cargo {}", args[0]))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
