//! The client crate's example program, run as a new user would run it, against real
//! users and tasks services.

use taproom_tests::{Backend, Tasks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_example_runs_against_the_services() {
    let tasks = Tasks::start(Backend::Sqlite).await;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let (users_url, tasks_url) = (tasks.users.base_url.clone(), tasks.base_url.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(cargo)
            .current_dir(root)
            .args([
                "run",
                "--quiet",
                "-p",
                "taproom-client",
                "--example",
                "quickstart",
            ])
            .env("USERS_URL", users_url)
            .env("TASKS_URL", tasks_url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("registered guest_"), "{stdout}");
    assert!(stdout.contains("created task \"Buy hops\""), "{stdout}");
    assert!(stdout.contains("as expected, 404"), "{stdout}");
    assert!(stdout.contains("1 open task(s)"), "{stdout}");
}
