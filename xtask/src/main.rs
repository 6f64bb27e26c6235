use anyhow::{bail, Result};
use xtask::{generate_all, workspace_root, Generated};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("gen") => {
            for Generated { path, content } in generate_all(&root)? {
                let content = if path.extension().is_some_and(|e| e == "rs") {
                    xtask::rustfmt(&content)?
                } else {
                    content
                };
                if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                    std::fs::create_dir_all(path.parent().unwrap())?;
                    std::fs::write(&path, content)?;
                    println!(
                        "wrote {}",
                        path.strip_prefix(&root).unwrap_or(&path).display()
                    );
                }
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask gen|check"),
    }
}
