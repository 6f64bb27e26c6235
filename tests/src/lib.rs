//! Test harness: starts real services in-process on port 0 with a fresh database
//! (a temporary SQLite file, or a throwaway PostgreSQL database), for tests that talk to
//! them only through `taproom-client`.
//!
//! PostgreSQL tests use `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`): any database on that server the user can
//! connect to; each test creates and drops its own `taproom_t_<uuid>` database beside it.

pub mod lambda;
mod nginx;
pub use lambda::Moto;
pub use nginx::Nginx;

use dropshot::HttpServer;
use std::path::PathBuf;
use taproom_server::runtime::config::Config;
use taproom_server::runtime::registry::PeerUrls;
use taproom_server::users::{self, UsersContext};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// Tasks in DynamoDB (a private moto server), every other service on SQLite.
    DynamoDb,
    /// As `DynamoDb`, with the tasks service in Lambda mode under cargo-lambda's runtime
    /// emulator, called through API Gateway events of this payload version.
    Lambda(lambda::Payload),
}

impl Backend {
    /// Whether tasks are kept in DynamoDB.
    fn dynamodb(self) -> bool {
        matches!(self, Backend::DynamoDb | Backend::Lambda(_))
    }
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(base: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(base).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The services' shared events secret in tests (long enough to be accepted).
pub const EVENTS_TOKEN: &str = "test events token, 32 bytes or more";

/// The key-encryption key of the tests' users services on PostgreSQL (32 bytes, base64).
pub const TEST_SIGNING_KEK: &str = "dGVzdCBzaWduaW5nIGtleS1lbmNyeXB0aW9uIGtleSE=";

/// A change to the test configuration.
type Adjust = std::sync::Arc<dyn Fn(&mut Config) + Send + Sync>;

/// One fresh database for a test, removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    dir: tempfile::TempDir,
    pg_name: Option<String>,
    adjust: Option<Adjust>,
    /// The DynamoDB endpoint of the tasks (moto), on `Backend::DynamoDb` and `Lambda`.
    pub moto: Option<Moto>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let pg_name = (backend == Backend::Postgres)
            .then(|| format!("taproom_t_{}", uuid::Uuid::new_v4().simple()));
        TestDb {
            backend,
            dir: tempfile::tempdir().expect("temp dir"),
            pg_name,
            adjust: None,
            moto: backend.dynamodb().then(Moto::start),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The URL a service named `service` should use.
    pub fn url(&self, service: &str) -> String {
        if let (Some(moto), "tasks") = (&self.moto, service) {
            return format!(
                "dynamodb://tasks-{}?region=us-east-1&endpoint={}",
                uuid::Uuid::new_v4().simple(),
                moto.endpoint
            );
        }
        match &self.pg_name {
            Some(name) => with_database(&test_database_url(), &format!("{name}_{service}")),
            None => format!(
                "sqlite://{}/{service}.db?mode=rwc",
                self.dir.path().display()
            ),
        }
    }

    /// Configuration for services on ephemeral ports against this database.
    pub fn config(&self) -> Config {
        let mut config = Config {
            data_dir: self.data_dir(),
            database_url: None,
            bind_address: "127.0.0.1".parse().unwrap(),
            gateway_port: 0,
            gateway: false,
            events_token: Some(EVENTS_TOKEN.into()),
            nats_url: None,
            nats_creds_file: None,
            nats_stream_max_age_secs: 3 * 86400,
            nats_stream_max_bytes: 16 << 20,
            outbox_retention_secs: 86400,
            event_dedup_retention_secs: 7 * 86400,
            idempotency_retention_secs: 86400,
            prune_interval_secs: 600,
            outbox_relay: true,
            outbox_poll_ms: 500,
            outbox_claim_ms: 3000,
            telemetry: true,
            otel_exporter_otlp_endpoint: None,
            service_timeout_ms: 2000,
            database_max_connections: 5,
            request_body_max_bytes: 1024 * 1024,
            shutdown_timeout_secs: 5,
            sqlite_synchronous: Default::default(),
            limits: Default::default(),
            sandbox: Default::default(),
            token_ttl_secs: 3600,
            // Tests sign in far more often than any client should; the tests of the
            // limits set their own.
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            credentials_rate_per_minute: 1_000_000,
            credentials_burst: 1_000_000,
            login_failures_per_address: 5,
            login_failures_per_account: 100,
            password_hash_concurrency: 0,
            password_hash_queue: 10_000,
            signing_key_file: None,
            // PostgreSQL needs a key-encryption key; SQLite makes one in DATA_DIR.
            signing_key_encryption_key: (self.backend == Backend::Postgres)
                .then(|| TEST_SIGNING_KEK.to_string()),
            refresh_token_ttl_secs: 30 * 24 * 3600,
            cors_allowed_origins: vec!["https://app.example".into()],
            log_level: std::env::var("TEST_LOG_LEVEL").unwrap_or_else(|_| "critical".into()),
            log_format: taproom_server::runtime::server::LogFormat::Text,
            services: Default::default(),
        };
        // Every service on a free port, on its own database of this test.
        for def in taproom_server::SERVICES {
            let service = config.service_mut(def.name);
            service.port = 0;
            service.database_url = Some(self.url(def.name));
            service.url = String::new();
        }
        if let Some(adjust) = &self.adjust {
            adjust(&mut config);
        }
        config
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.clone() else {
            return;
        };
        // Drop runs outside any runtime guarantee; use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                use sqlx::Executor;
                let mut conn =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&test_database_url())
                        .await
                        .ok()?;
                for def in taproom_server::SERVICES {
                    // The name is ours (a UUID), not input.
                    let service = def.name;
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}_{service}\" WITH (FORCE)");
                    let _ = conn.execute(sqlx::AssertSqlSafe(sql)).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// The users service, running.
pub struct Users {
    pub db: TestDb,
    pub base_url: String,
    pub client: taproom_client::users::Client,
    server: Option<HttpServer<UsersContext>>,
}

impl Users {
    pub async fn start(backend: Backend) -> Users {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with the test configuration changed by `adjust`.
    pub async fn start_with(
        backend: Backend,
        adjust: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Users {
        let mut db = TestDb::new(backend);
        db.adjust = Some(std::sync::Arc::new(adjust));
        Self::start_on(db).await
    }

    /// Starts on `db` as it is (a test may have prepared it).
    pub async fn start_on(db: TestDb) -> Users {
        let server = Self::launch(&db).await;
        let base_url = format!("http://{}", server.local_addr());
        Users {
            client: taproom_client::users::Client::new(&base_url, Default::default()),
            base_url,
            db,
            server: Some(server),
        }
    }

    async fn launch(db: &TestDb) -> HttpServer<UsersContext> {
        let config = db.config();
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        users::start(&config, &Default::default(), &log)
            .await
            .expect("users service starts")
    }

    /// Stops the service (its port refuses connections afterwards).
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.close().await.expect("clean shutdown");
        }
    }

    /// Stops the service and starts it again on the same database (new port).
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.close().await.expect("clean shutdown");
        }
        let server = Self::launch(&self.db).await;
        self.base_url = format!("http://{}", server.local_addr());
        self.client = taproom_client::users::Client::new(&self.base_url, Default::default());
        self.server = Some(server);
    }

    /// Peer URLs for a service that only calls users.
    pub fn peers(&self) -> PeerUrls {
        PeerUrls::from([("users", self.base_url.clone())])
    }

    /// A client that sends `token` as its bearer token.
    pub fn client_with_token(&self, token: &str) -> taproom_client::users::Client {
        taproom_client::users::Client::new_with_client(
            &self.base_url,
            bearer_client(token),
            Default::default(),
        )
    }

    /// Logs in through `create_token` (JSON credentials); the access token.
    pub async fn login(&self, login: &str, password: &str) -> String {
        let body = taproom_client::users::types::Credentials {
            username: Some(login.parse().unwrap()),
            email: None,
            password: password.parse().unwrap(),
        };
        self.client
            .create_token()
            .body(body)
            .send()
            .await
            .expect("login")
            .into_inner()
            .access_token
    }

    /// The token of a new admin (made as `server admin create` does).
    pub async fn admin_token(&self) -> String {
        let name = format!("admin_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let password = "admin password 123";
        users::create_admin(
            &self.db.config(),
            &name,
            &format!("{name}@example.com"),
            password.into(),
        )
        .await
        .expect("admin created");
        self.login(&name, password).await
    }

    /// A typed client and a raw HTTP client, both logged in as a new admin.
    pub async fn admin(&self) -> (taproom_client::users::Client, reqwest::Client) {
        let token = self.admin_token().await;
        (self.client_with_token(&token), bearer_client(&token))
    }

    /// Signs `claims` as the users service would, with its own private key read from its
    /// database: for tokens the API would never issue (expired ones, say).
    pub async fn sign(&self, claims: serde_json::Value) -> String {
        let (kid, der) = users::signing_key(&self.db.config())
            .await
            .expect("the signing key opens");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid);
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
        .unwrap()
    }

    /// Registers `name` (password "a user password") and logs in: their id and token.
    pub async fn register(&self, name: &str) -> (uuid::Uuid, String) {
        let password = "a user password";
        let body = serde_json::json!({"username": name, "email": format!("{name}@example.com"), "password": password});
        let created: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/users", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = uuid::Uuid::parse_str(created["id"].as_str().expect("user created")).unwrap();
        (id, self.login(name, password).await)
    }

    /// Raw HTTP, for requests the typed client cannot even express (malformed JSON,
    /// wrong content types, unknown fields).
    pub fn raw(&self) -> reqwest::Client {
        reqwest::Client::new()
    }
}

/// The tasks service, running beside its own users service (whose keys it trusts).
pub struct Tasks {
    pub users: Users,
    pub base_url: String,
    pub client: taproom_client::tasks::Client,
    _server: TasksServer,
}

/// The tasks service as a test runs it.
enum TasksServer {
    InProcess(HttpServer<taproom_server::tasks::TasksContext>),
    /// `server lambda tasks`, behind the emulator and a stand-in for API Gateway.
    Lambda(lambda::Function),
}

impl Tasks {
    pub async fn start(backend: Backend) -> Tasks {
        let users = Users::start(backend).await;
        let config = users.db.config();
        let server = match backend {
            Backend::Lambda(payload) => {
                let url = config.database_url("tasks").expect("tasks database URL");
                TasksServer::Lambda(lambda::Function::start(payload, &url, &users.base_url).await)
            }
            _ => {
                let log =
                    taproom_server::runtime::server::logger(&config.log_level, config.log_format)
                        .expect("logger");
                let server = taproom_server::tasks::start(&config, &users.peers(), &log)
                    .await
                    .expect("tasks service starts");
                TasksServer::InProcess(server)
            }
        };
        let base_url = match &server {
            TasksServer::InProcess(s) => format!("http://{}", s.local_addr()),
            TasksServer::Lambda(f) => f.base_url.clone(),
        };
        Tasks {
            client: taproom_client::tasks::Client::new(&base_url, Default::default()),
            base_url,
            users,
            _server: server,
        }
    }

    /// A new user, registered and logged in: their id, a tasks client with their token,
    /// and a raw HTTP client with it.
    pub async fn user(
        &self,
        name: &str,
    ) -> (uuid::Uuid, taproom_client::tasks::Client, reqwest::Client) {
        let (id, token) = self.users.register(name).await;
        let client = taproom_client::tasks::Client::new_with_client(
            &self.base_url,
            bearer_client(&token),
            Default::default(),
        );
        (id, client, bearer_client(&token))
    }
}

/// The shop: users, beers, promotions and orders, each on its own database, wired as
/// `server all` wires them.
pub struct Shop {
    pub users: Users,
    pub beers_url: String,
    /// An anonymous beers client (reads are public).
    pub beers: taproom_client::beers::Client,
    pub promotions_url: String,
    pub orders_url: String,
    beers_server: Option<HttpServer<taproom_server::beers::BeersContext>>,
    promotions_server: Option<HttpServer<taproom_server::promotions::PromotionsContext>>,
    orders_server: Option<HttpServer<taproom_server::orders::OrdersContext>>,
}

impl Shop {
    pub async fn start(backend: Backend) -> Shop {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        adjust: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Shop {
        let users = Users::start_with(backend, adjust).await;
        let config = users.db.config();
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let beers_server = taproom_server::beers::start(&config, &users.peers(), &log)
            .await
            .expect("beers service starts");
        let beers_url = format!("http://{}", beers_server.local_addr());
        let promotions_server = taproom_server::promotions::start(&config, &users.peers(), &log)
            .await
            .expect("promotions service starts");
        let promotions_url = format!("http://{}", promotions_server.local_addr());
        let mut shop = Shop {
            beers: taproom_client::beers::Client::new(&beers_url, Default::default()),
            orders_url: String::new(),
            beers_url,
            promotions_url,
            users,
            beers_server: Some(beers_server),
            promotions_server: Some(promotions_server),
            orders_server: None,
        };
        shop.start_orders().await;
        shop
    }

    /// Where orders finds its peers.
    pub fn peers(&self) -> PeerUrls {
        let mut peers = self.users.peers();
        peers.insert("beers", self.beers_url.clone());
        peers.insert("promotions", self.promotions_url.clone());
        peers
    }

    /// (Re)starts orders on its database, with the test configuration.
    pub async fn start_orders(&mut self) {
        self.stop_orders().await;
        let config = self.users.db.config();
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let server = taproom_server::orders::start(&config, &self.peers(), &log)
            .await
            .expect("orders service starts");
        self.orders_url = format!("http://{}", server.local_addr());
        self.orders_server = Some(server);
    }

    /// A tasks service beside the shop, and the built-in gateway of `server all` in front
    /// of every service: the tasks server, the gateway, and the gateway's URL.
    pub async fn behind_gateway(
        &self,
    ) -> (
        HttpServer<taproom_server::tasks::TasksContext>,
        HttpServer<taproom_server::gateway::Gateway>,
        String,
    ) {
        self.behind_gateway_with(Vec::new()).await
    }

    /// `behind_gateway` with further upstreams (exercises, scores) started by the caller.
    pub async fn behind_gateway_with(
        &self,
        more: Vec<(&'static str, String)>,
    ) -> (
        HttpServer<taproom_server::tasks::TasksContext>,
        HttpServer<taproom_server::gateway::Gateway>,
        String,
    ) {
        let config = self.users.db.config();
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let tasks = taproom_server::tasks::start(&config, &self.users.peers(), &log)
            .await
            .expect("tasks service starts");
        let mut upstreams = vec![
            ("users", self.users.base_url.clone()),
            ("beers", self.beers_url.clone()),
            ("promotions", self.promotions_url.clone()),
            ("orders", self.orders_url.clone()),
            ("tasks", format!("http://{}", tasks.local_addr())),
        ];
        upstreams.extend(more);
        let gateway =
            taproom_server::gateway::start(&config, upstreams, &log).expect("gateway starts");
        let url = format!("http://{}", gateway.local_addr());
        (tasks, gateway, url)
    }

    /// Stops orders (and its outbox relay).
    pub async fn stop_orders(&mut self) {
        if let Some(server) = self.orders_server.take() {
            server.close().await.expect("clean shutdown");
        }
    }

    /// Stops promotions: its port refuses connections until `start_promotions`.
    pub async fn stop_promotions(&mut self) {
        if let Some(server) = self.promotions_server.take() {
            server.close().await.expect("clean shutdown");
        }
    }

    /// Starts promotions again on its database and its old port.
    pub async fn start_promotions(&mut self) {
        let port = port_of(&self.promotions_url);
        let mut config = self.users.db.config();
        config.service_mut("promotions").port = port;
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let server = taproom_server::promotions::start(&config, &self.users.peers(), &log)
            .await
            .expect("promotions service restarts");
        self.promotions_server = Some(server);
    }

    /// A promotions client logged in as a new admin.
    pub async fn promotions_admin(&self) -> taproom_client::promotions::Client {
        let token = self.users.admin_token().await;
        taproom_client::promotions::Client::new_with_client(
            &self.promotions_url,
            bearer_client(&token),
            Default::default(),
        )
    }

    /// Stops the beers service: its port refuses connections from now on.
    pub async fn stop_beers(&mut self) {
        if let Some(server) = self.beers_server.take() {
            server.close().await.expect("clean shutdown");
        }
    }

    /// A beers client logged in as a new admin.
    pub async fn beers_admin(&self) -> taproom_client::beers::Client {
        let token = self.users.admin_token().await;
        taproom_client::beers::Client::new_with_client(
            &self.beers_url,
            bearer_client(&token),
            Default::default(),
        )
    }

    /// An orders client logged in as a new admin.
    pub async fn orders_admin(&self) -> taproom_client::orders::Client {
        let token = self.users.admin_token().await;
        taproom_client::orders::Client::new_with_client(
            &self.orders_url,
            bearer_client(&token),
            Default::default(),
        )
    }

    /// A new customer, registered and logged in: their id, an orders client with their
    /// token, and a raw HTTP client with it.
    pub async fn customer(
        &self,
        name: &str,
    ) -> (uuid::Uuid, taproom_client::orders::Client, reqwest::Client) {
        let (id, token) = self.users.register(name).await;
        let client = taproom_client::orders::Client::new_with_client(
            &self.orders_url,
            bearer_client(&token),
            Default::default(),
        );
        (id, client, bearer_client(&token))
    }
}

/// The port of a base URL such as `http://127.0.0.1:5005`.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the URL has a port")
}

/// Exercises and scores beside their own users service, each on its own database,
/// wired as `server all` wires them. The sandbox limits are the test configuration's
/// (short, so that attacks end quickly), changed by `adjust`.
pub struct Exercises {
    pub users: Users,
    pub url: String,
    pub scores_url: String,
    exercises_server: Option<HttpServer<taproom_server::exercises::ExercisesContext>>,
    scores_server: Option<HttpServer<taproom_server::scores::ScoresContext>>,
}

impl Exercises {
    /// Sandbox limits for tests: two workers, 2 s of CPU, 4 s of wall-clock time.
    pub fn test_sandbox(config: &mut Config) {
        config.sandbox.sandbox_workers = 2;
        config.sandbox.sandbox_cpu_secs = 2;
        config.sandbox.sandbox_wall_ms = 4000;
    }

    pub async fn start(backend: Backend) -> Exercises {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        adjust: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Exercises {
        let users = Users::start_with(backend, move |config| {
            Self::test_sandbox(config);
            adjust(config);
        })
        .await;
        let mut world = Exercises {
            users,
            url: String::new(),
            scores_url: String::new(),
            exercises_server: None,
            scores_server: None,
        };
        world.start_scores().await;
        world.start_exercises().await;
        world
    }

    /// (Re)starts exercises on its database (its queue and outbox as they are).
    pub async fn start_exercises(&mut self) {
        self.stop_exercises().await;
        let config = self.users.db.config();
        let mut peers = self.users.peers();
        peers.insert("scores", self.scores_url.clone());
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let server = taproom_server::exercises::start(&config, &peers, &log)
            .await
            .expect("exercises starts");
        self.url = format!("http://{}", server.local_addr());
        self.exercises_server = Some(server);
    }

    /// Stops exercises (its workers and relay).
    pub async fn stop_exercises(&mut self) {
        if let Some(server) = self.exercises_server.take() {
            server.close().await.expect("clean shutdown");
        }
    }

    /// Starts scores, on its old port once it has one (exercises delivers there).
    pub async fn start_scores(&mut self) {
        let mut config = self.users.db.config();
        if !self.scores_url.is_empty() {
            config.service_mut("scores").port = port_of(&self.scores_url);
        }
        let log = taproom_server::runtime::server::logger(&config.log_level, config.log_format)
            .expect("logger");
        let server = taproom_server::scores::start(&config, &self.users.peers(), &log)
            .await
            .expect("scores starts");
        self.scores_url = format!("http://{}", server.local_addr());
        self.scores_server = Some(server);
    }

    /// Stops scores: its port refuses connections until `start_scores`.
    pub async fn stop_scores(&mut self) {
        if let Some(server) = self.scores_server.take() {
            server.close().await.expect("clean shutdown");
        }
    }

    pub fn exercises(&self, token: &str) -> taproom_client::exercises::Client {
        taproom_client::exercises::Client::new_with_client(
            &self.url,
            bearer_client(token),
            Default::default(),
        )
    }

    pub fn scores(&self, token: &str) -> taproom_client::scores::Client {
        taproom_client::scores::Client::new_with_client(
            &self.scores_url,
            bearer_client(token),
            Default::default(),
        )
    }
}

/// Whether a submission's status is final (graded).
pub fn is_final(status: taproom_client::exercises::types::SubmissionStatus) -> bool {
    use taproom_client::exercises::types::SubmissionStatus;
    !matches!(
        status,
        SubmissionStatus::Pending | SubmissionStatus::Running
    )
}

/// Polls `get_submission` until the submission is graded (or a minute passes).
pub async fn graded(
    client: &taproom_client::exercises::Client,
    exercise: uuid::Uuid,
    id: uuid::Uuid,
) -> taproom_client::exercises::types::Submission {
    for _ in 0..600 {
        let s = client
            .get_submission()
            .exercise_id(exercise)
            .submission_id(id)
            .send()
            .await
            .expect("get_submission")
            .into_inner();
        if is_final(s.status) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("submission {id} was not graded within a minute");
}

/// A reqwest client that sends `Authorization: Bearer <token>` on every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("token is header text");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// [`on_both_databases`], and with feature `aws` also `dynamodb::name`, `lambda_v1::name`
/// and `lambda_v2::name`: the tasks suite on every store and in Lambda mode.
#[macro_export]
macro_rules! on_every_tasks_store {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_databases!($($name),*);
        #[cfg(feature = "aws")]
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::DynamoDb).await }
            )*
        }
        #[cfg(feature = "aws")]
        mod lambda_v1 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Lambda($crate::lambda::Payload::V1)).await
                }
            )*
        }
        #[cfg(feature = "aws")]
        mod lambda_v2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Lambda($crate::lambda::Payload::V2)).await
                }
            )*
        }
    };
}

/// Declares each `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`, so the whole suite runs on both databases.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::Postgres).await }
            )*
        }
    };
}

/// The status and problem body of a typed call that must have failed.
pub fn problem<T: std::fmt::Debug, P: std::fmt::Debug>(
    result: Result<T, taproom_client::users::Error<P>>,
) -> (u16, P) {
    match result {
        Err(taproom_client::users::Error::ErrorResponse(rv)) => {
            (rv.status().as_u16(), rv.into_inner())
        }
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// A private NATS server with JetStream on a free port and a temporary store, for tests
/// that stop and restart it (`NATS_SERVER` names the binary; default `nats-server`).
pub struct Nats {
    pub url: String,
    port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// Further `nats-server` arguments (e.g. `--user`, `--pass`).
    args: Vec<String>,
}

impl Nats {
    pub async fn start() -> Nats {
        Self::start_with(&[]).await
    }

    /// Starts with further `nats-server` arguments, e.g. credentials it requires.
    pub async fn start_with(args: &[&str]) -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store: tempfile::tempdir().expect("temp dir"),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        nats.restart().await;
        nats
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store, and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = std::process::Command::new(&binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} (install nats-server, or set NATS_SERVER): {e}")
            });
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` until it returns true, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within {secs} s: {what}");
}

/// A running `chromedriver` (`CHROMEDRIVER` names another binary), stopped when dropped.
pub struct Chromedriver(std::process::Child);

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver on a free port; the driver and its WebDriver URL.
pub async fn start_chromedriver() -> (Chromedriver, String) {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let driver = Chromedriver(
        std::process::Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary:?} ({e}): install chromium and chromium-driver (see README)")
            }),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            return (driver, url);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on port {port}");
}
