//! What the xtask tests share: copies of the workspace to change freely, and running
//! `cargo xtask` in them.
// Each test file uses its own part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use xtask::services;

/// The checkout under test, which the copies are made from.
pub fn workspace_root() -> PathBuf {
    xtask::workspace_root().unwrap()
}

/// Copies `files` (relative to the workspace) into a temporary directory, keeping their
/// modification times.
pub fn copy_files(files: impl IntoIterator<Item = PathBuf>) -> (tempfile::TempDir, PathBuf) {
    let root = workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    for file in files {
        let (from, to) = (root.join(&file), tmp.path().join(&file));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
        let modified = std::fs::metadata(&from).unwrap().modified().unwrap();
        std::fs::File::open(&to)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    let path = tmp.path().to_path_buf();
    (tmp, path)
}

/// Copies what `gen`/`check` read and write into a temporary directory.
pub fn copy_of_tree() -> (tempfile::TempDir, PathBuf) {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "openapi",
        "openapi/bundled",
        "openapi/released",
        "client/src/generated",
        "client/docs",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
    }
    for service in services(&root).unwrap() {
        files.push(Path::new("server/src").join(&service).join("api.rs"));
    }
    copy_files(files)
}

/// Every file of the workspace a clone has (relative paths): not `.git`, a target
/// directory, or what `.gitignore` leaves out at the top.
pub fn workspace_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        // Cargo marks its target directories so, whatever they are called.
        if dir.join("CACHEDIR.TAG").exists() {
            return;
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap();
            if [".git", "target", "data", ".env", "web/node_modules"]
                .iter()
                .any(|skip| relative == Path::new(skip))
            {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.is_file() {
                out.push(relative.to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A whole copy of the workspace, with the checkout's modification times: cargo takes
/// what was built for the checkout as fresh for the copy too, as for two clones made
/// before a build that share a target directory.
pub fn copy_of_workspace() -> (tempfile::TempDir, PathBuf) {
    copy_files(workspace_files(&workspace_root()))
}

/// Every file under `root`, with its content.
pub fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    workspace_files(root)
        .into_iter()
        .map(|f| {
            let content = std::fs::read(root.join(&f)).unwrap();
            (f, content)
        })
        .collect()
}

/// The files added, removed or changed from `before` to `after`.
pub fn changed(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = before.keys().chain(after.keys()).cloned().collect();
    files.sort();
    files.dedup();
    files.retain(|f| before.get(f) != after.get(f));
    files
}

pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// `cargo xtask <command>` run in `dir` with `target_dir` as cargo's target directory.
pub fn cargo_xtask(dir: &Path, target_dir: &Path, command: &str) -> Output {
    cargo(dir, target_dir, &["xtask", command])
}

/// `cargo <args>` run in `dir` with `target_dir` as cargo's target directory.
pub fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> Output {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(args)
        .output()
        .unwrap()
}

/// This test run's target directory (shared with the copies, so their builds reuse it).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
