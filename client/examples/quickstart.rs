//! Register, log in, and manage to-do tasks against a running Taproom (`server all`).
//!
//! ```sh
//! cargo run --release -- all                      # in one terminal
//! cargo run -p taproom-client --example quickstart # in another
//! ```
//!
//! `USERS_URL` and `TASKS_URL` point it elsewhere (defaults: ports 5001 and 5004).

use taproom_client::{tasks, users, Connection, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where the services are, and how long to wait for them: set once.
    let mut settings = Connection::builder().timeout(std::time::Duration::from_secs(5));
    for (service, var) in [(Service::Users, "USERS_URL"), (Service::Tasks, "TASKS_URL")] {
        if let Ok(url) = std::env::var(var) {
            settings = settings.service_url(service, url);
        }
    }
    let anonymous = settings.build()?;
    let users = anonymous.users();

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

    // Log in: the same settings plus a session, for every call made as this user. Every
    // service accepts its access token; the connection renews it when it expires.
    let signed_in = anonymous
        .log_in(users::types::Credentials {
            username: Some(name.parse()?),
            email: None,
            password: password.parse()?,
        })
        .await?;
    let tasks = signed_in.tasks();

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
