//! The benchmark's baseline: the work of three tasks operations with no framework, plain
//! hyper + tokio + sqlx (the same database driver and pool size as the service), so that
//! `cargo xtask bench` measures what the framework (routing, spec validation, problems,
//! logging) costs. Same JSON shapes, same constraints, same token check (EdDSA JWT with
//! the users service's public key), same queries.
//!
//! BASELINE_DATABASE_URL, BASELINE_POOL, BASELINE_PUBLIC_KEY (the JWK `x`), BASELINE_PORT;
//! prints `listening on http://<addr>` on stderr.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::sync::Arc;

struct State {
    pool: sqlx::AnyPool,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    title: String,
    description: Option<String>,
}

#[derive(Serialize)]
struct Task {
    id: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    done: bool,
    created_at: String,
    updated_at: String,
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail});
    let mut r = json(status, body.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    r
}

fn task(row: &sqlx::any::AnyRow) -> Result<Task, sqlx::Error> {
    Ok(Task {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        done: row.try_get::<i64, _>("done")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn caller(state: &State, req: &Request<Incoming>) -> Option<String> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = header.strip_prefix("Bearer ")?;
    jsonwebtoken::decode::<Claims>(token, &state.key, &state.validation)
        .ok()
        .map(|t| t.claims.sub)
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/ping" {
        return json(
            StatusCode::OK,
            r#"{"status":"success","message":"pong!"}"#.into(),
        );
    }
    let Some(owner) = caller(&state, &req) else {
        return problem(StatusCode::UNAUTHORIZED, "bad token");
    };
    if req.method() == Method::GET {
        let Some(id) = path.strip_prefix("/v1/tasks/") else {
            return problem(StatusCode::NOT_FOUND, "no route");
        };
        let Ok(id) = uuid::Uuid::parse_str(id) else {
            return problem(StatusCode::BAD_REQUEST, "bad id");
        };
        let row = sqlx::query("SELECT id, title, description, done, created_at, updated_at FROM tasks WHERE id = $1 AND owner_id = $2")
            .bind(id.to_string())
            .bind(&owner)
            .fetch_optional(&state.pool)
            .await;
        return match row.map(|r| r.as_ref().map(task)) {
            Ok(Some(Ok(t))) => json(
                StatusCode::OK,
                serde_json::to_string(&t).unwrap_or_default(),
            ),
            Ok(None) => problem(StatusCode::NOT_FOUND, "no such task"),
            _ => problem(StatusCode::INTERNAL_SERVER_ERROR, "database"),
        };
    }
    if req.method() == Method::POST && path == "/v1/tasks" {
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return problem(StatusCode::PAYLOAD_TOO_LARGE, "too large"),
        };
        let Ok(new) = serde_json::from_slice::<CreateTask>(&body) else {
            return problem(StatusCode::BAD_REQUEST, "bad body");
        };
        let title_len = new.title.chars().count();
        let desc_len = new.description.as_ref().map_or(0, |d| d.chars().count());
        if !(1..=200).contains(&title_len) || desc_len > 10_000 {
            return problem(StatusCode::BAD_REQUEST, "constraints");
        }
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let row = sqlx::query(
            "INSERT INTO tasks (id, owner_id, title, description, done, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5) RETURNING id, title, description, done, created_at, updated_at",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&owner)
        .bind(&new.title)
        .bind(new.description.filter(|d| !d.is_empty()))
        .bind(&now)
        .fetch_one(&state.pool)
        .await;
        return match row.map(|r| task(&r)) {
            Ok(Ok(t)) => {
                let location = format!("/v1/tasks/{}", t.id);
                let mut r = json(
                    StatusCode::CREATED,
                    serde_json::to_string(&t).unwrap_or_default(),
                );
                if let Ok(v) = http::HeaderValue::from_str(&location) {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                r
            }
            _ => problem(StatusCode::INTERNAL_SERVER_ERROR, "database"),
        };
    }
    problem(StatusCode::NOT_FOUND, "no route")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let env = |k: &str| std::env::var(k).map_err(|_| anyhow::anyhow!("{k} is required"));
    let url = env("BASELINE_DATABASE_URL")?;
    let pool_size: u32 = env("BASELINE_POOL")?.parse()?;
    let mut options = sqlx::any::AnyPoolOptions::new().max_connections(pool_size);
    if url.starts_with("sqlite:") {
        // The service's settings for SQLite, so both pay the same per connection.
        options = options.after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;").await?;
                Ok(())
            })
        });
    }
    let pool = options.connect(&url).await?;
    let key = jsonwebtoken::DecodingKey::from_ed_components(&env("BASELINE_PUBLIC_KEY")?)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["taproom-users"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let state = Arc::new(State {
        pool,
        key,
        validation,
    });
    let port: u16 = std::env::var("BASELINE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("baseline listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
