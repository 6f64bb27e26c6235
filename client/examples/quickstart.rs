//! Register, log in, and manage to-do tasks against a running Taproom (`server all`).
//!
//! ```sh
//! cargo run --release -- all                      # in one terminal
//! cargo run -p taproom-client --example quickstart # in another
//! ```
//!
//! `USERS_URL` and `TASKS_URL` point it elsewhere (defaults: ports 5001 and 5004).

use taproom_client::{tasks, users};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users_url = std::env::var("USERS_URL").unwrap_or_else(|_| "http://127.0.0.1:5001".into());
    let tasks_url = std::env::var("TASKS_URL").unwrap_or_else(|_| "http://127.0.0.1:5004".into());
    let users = users::Client::new(&users_url);

    // Register. Constrained fields are newtypes: parsing checks the spec's rules locally.
    let name = format!("guest_{}", std::process::id());
    let password = "a long enough password";
    let me = users
        .create_user()
        .body(users::types::CreateUser {
            username: name.parse()?,
            email: format!("{name}@example.com").parse()?,
            password: password.parse()?,
            first_name: None,
            last_name: None,
        })
        .send()
        .await?
        .into_inner();
    println!("registered {} ({})", me.username, me.id);

    // Log in; every other service accepts this token.
    let token = users
        .create_token()
        .body(users::types::Credentials {
            username: Some(name.parse()?),
            email: None,
            password: password.parse()?,
        })
        .send()
        .await?
        .into_inner();

    // One reqwest client carrying the token (and any timeout) for the tasks client.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.access_token).parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let tasks = tasks::Client::new_with_client(&tasks_url, http);

    let task = tasks
        .create_task()
        .body(tasks::types::CreateTask {
            title: "Buy hops".parse()?,
            description: None,
        })
        .send()
        .await?
        .into_inner();
    println!("created task {:?} ({})", task.title, task.id);

    // Errors carry the problem body as a typed value.
    let missing = tasks.get_task().task_id(uuid::Uuid::nil()).send().await;
    if let Err(tasks::Error::ErrorResponse(problem)) = missing {
        println!(
            "as expected, {} {}: {:?}",
            problem.status(),
            problem.title,
            problem.detail
        );
    }

    let open = tasks.list_tasks().done(false).send().await?.into_inner();
    println!("{} open task(s)", open.items.len());
    Ok(())
}
