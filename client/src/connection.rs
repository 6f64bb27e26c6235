//! One place to say how to reach Taproom: where each service is, how long to wait, which
//! bearer token and request id to send. A [`Connection`] hands out every service's
//! generated `Client`, all sharing one HTTP connection pool.

use crate::session::{Session, SharedTokens};
use crate::{users, Service};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use std::sync::Arc;
use std::time::Duration;

/// Where `server all`'s built-in gateway answers for every service's public operations.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:5000";

/// Declares [`Service`] and one accessor on [`Connection`] per service. Invoked once, by
/// the generated `generated/mod.rs`, with every spec in `openapi/`: a new service needs
/// no line here.
macro_rules! services {
    ($($(#[$doc:meta])* $module:ident => $variant:ident),* $(,)?) => {
        /// A Taproom service, to give it its own URL with
        /// [`ConnectionBuilder::service_url`](crate::ConnectionBuilder::service_url).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Service {
            $($variant,)*
        }

        impl Service {
            /// Every service.
            pub const ALL: &'static [Service] = &[$(Service::$variant,)*];

            /// The service's name, as in `openapi/<name>.yaml`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Service::$variant => stringify!($module),)*
                }
            }
        }

        impl $crate::Connection {
            $(
                $(#[$doc])*
                pub fn $module(&self) -> $crate::$module::Client {
                    $crate::$module::Client::new_with_client(
                        self.url(Service::$variant),
                        self.http().clone(),
                        self.session.clone(),
                    )
                }
            )*
        }

        // The generated clients' hooks (`cargo xtask gen` asks for them).
        $(
            impl progenitor_client::ClientHooks<$crate::Session> for $crate::$module::Client {
                async fn pre<E>(
                    &self,
                    request: &mut reqwest::Request,
                    _: &progenitor_client::OperationInfo,
                ) -> Result<(), progenitor_client::Error<E>> {
                    $crate::context::apply(request);
                    Ok(())
                }

                async fn exec(
                    &self,
                    request: reqwest::Request,
                    info: &progenitor_client::OperationInfo,
                ) -> reqwest::Result<reqwest::Response> {
                    $crate::context::observed(info.operation_id, request, |request| {
                        self.inner.exec(&self.client, request)
                    })
                    .await
                }
            }
        )*
    };
}
pub(crate) use services;

/// Settings for a [`Connection`]; start with [`Connection::builder`].
///
/// Cheap to clone: keep one without a token, and derive a connection with a token from it
/// after logging in.
#[derive(Clone)]
pub struct ConnectionBuilder {
    /// By `Service as usize`.
    urls: Vec<String>,
    timeout: Duration,
    bearer_token: Option<String>,
    /// A login's tokens, shared with every connection derived from this one.
    tokens: Option<Arc<SharedTokens>>,
    request_id: Option<String>,
}

// Hand-written so that a token never ends up in a log line through `{:?}`.
impl std::fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionBuilder")
            .field("urls", &self.urls)
            .field("timeout", &self.timeout)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("tokens", &self.tokens.as_ref().map(|_| "<redacted>"))
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl Default for ConnectionBuilder {
    fn default() -> Self {
        ConnectionBuilder {
            urls: vec![DEFAULT_BASE_URL.to_string(); Service::ALL.len()],
            timeout: Duration::from_secs(10),
            bearer_token: None,
            tokens: None,
            request_id: None,
        }
    }
}

impl ConnectionBuilder {
    /// Every service at this one base URL (a gateway routing by path, as the default).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.urls = vec![url; Service::ALL.len()];
        self
    }

    /// One service's base URL, e.g. `http://beers.internal:8080`.
    pub fn service_url(mut self, service: Service, url: impl Into<String>) -> Self {
        self.urls[service as usize] = url.into();
        self
    }

    /// Bound on each request, connecting included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sent as `Authorization: Bearer <token>` on every request; get one from
    /// [`users::Client::create_token`](crate::users::Client::create_token).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self.tokens = None;
        self
    }

    /// A login's tokens, from
    /// [`users::Client::create_token`](crate::users::Client::create_token) (or
    /// [`Connection::log_in`]): the access token is sent on every request and replaced
    /// through `refresh_token` when it is about to expire or a service refuses it (the
    /// refused request is then sent once more). Access tokens last minutes; the session
    /// lasts as long as its refresh token keeps being used.
    pub fn tokens(mut self, token: &users::types::Token) -> Self {
        self.tokens = Some(SharedTokens::new(token));
        self.bearer_token = None;
        self
    }

    /// Sent as `X-Request-Id` on every request, so the services log your id (1–128 of
    /// `[A-Za-z0-9._:-]`; anything else is replaced by a fresh id).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    pub fn build(self) -> Result<Connection, ConnectionError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ConnectionError::InvalidHeader("bearer token"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        if let Some(id) = &self.request_id {
            let value = HeaderValue::from_str(id)
                .map_err(|_| ConnectionError::InvalidHeader("request id"))?;
            headers.insert("x-request-id", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .build()
            .map_err(ConnectionError::Http)?;
        let session = match &self.tokens {
            Some(tokens) => Session::new(
                tokens.clone(),
                &self.urls[Service::Users as usize],
                http.clone(),
            ),
            None => Session::default(),
        };
        Ok(Connection {
            settings: self,
            http,
            session,
        })
    }
}

/// Why [`Connection::log_in`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogInError {
    /// The users service refused (wrong credentials: 401; throttled: 429) or could not
    /// be reached.
    Refused(Box<users::Error<users::types::Problem>>),
    /// The connection could not be set up with the new tokens.
    Connection(ConnectionError),
}

impl std::fmt::Display for LogInError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogInError::Refused(e) => write!(f, "logging in: {e}"),
            LogInError::Connection(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LogInError {}

/// Why [`ConnectionBuilder::build`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The bearer token or request id cannot be sent as an HTTP header.
    InvalidHeader(&'static str),
    /// The HTTP client could not be set up.
    Http(reqwest::Error),
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::InvalidHeader(what) => {
                write!(f, "the {what} is not a valid HTTP header value")
            }
            ConnectionError::Http(e) => write!(f, "setting up the HTTP client: {e}"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectionError::Http(e) => Some(e),
            ConnectionError::InvalidHeader(_) => None,
        }
    }
}

/// How to reach the services: hands out each service's client, all with the same
/// timeout, bearer token (or login session, refreshed as needed) and request id.
///
/// Inside [`CallContext::scope`](crate::CallContext::scope), the context's token and
/// request id take precedence.
#[derive(Clone, Debug)]
pub struct Connection {
    settings: ConnectionBuilder,
    http: reqwest::Client,
    /// Every client handed out shares it (`services!` passes it on).
    pub(crate) session: Session,
}

impl Connection {
    /// Settings starting from `server all`'s defaults (every service through its
    /// gateway at [`DEFAULT_BASE_URL`], no token, 10 s timeout).
    pub fn builder() -> ConnectionBuilder {
        ConnectionBuilder::default()
    }

    /// This connection's settings, to derive another, e.g. with a token. A login's
    /// session stays shared: both connections use (and refresh) the same tokens.
    pub fn to_builder(&self) -> ConnectionBuilder {
        self.settings.clone()
    }

    /// Logs in with `credentials` (`create_token`): a connection like this one with the
    /// login's session (see [`ConnectionBuilder::tokens`]).
    pub async fn log_in(
        &self,
        credentials: users::types::Credentials,
    ) -> Result<Connection, LogInError> {
        let token = self
            .users()
            .create_token()
            .body(credentials)
            .send()
            .await
            .map_err(|e| LogInError::Refused(Box::new(e)))?
            .into_inner();
        self.to_builder()
            .tokens(&token)
            .build()
            .map_err(LogInError::Connection)
    }

    /// Ends the login's session (`logout`): its refresh tokens stop working, here and
    /// in every connection sharing it; the current access token lasts until it expires.
    /// Nothing to do without a session.
    pub async fn log_out(&self) -> Result<(), users::Error<users::types::Problem>> {
        let Some((_, Some(refresh_token))) = self.session.current() else {
            return Ok(());
        };
        self.users()
            .logout()
            .body(users::types::RefreshRequest { refresh_token })
            .send()
            .await?;
        self.session.forget_refresh();
        Ok(())
    }

    /// The access token this connection sends now (a session's current one), if any.
    pub fn access_token(&self) -> Option<String> {
        self.session
            .current()
            .map(|(access, _)| access)
            .or_else(|| self.settings.bearer_token.clone())
    }

    /// The session's current refresh token, to keep the session across restarts
    /// (give it back with [`ConnectionBuilder::tokens`]). Treat it like a password.
    pub fn refresh_token(&self) -> Option<String> {
        self.session.current().and_then(|(_, refresh)| refresh)
    }

    /// The service's base URL.
    pub fn url(&self, service: Service) -> &str {
        &self.settings.urls[service as usize]
    }

    /// The underlying HTTP client, for calls outside the API (it carries the same
    /// headers and timeout).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_default_to_server_all_and_can_be_changed() {
        let c = Connection::builder()
            .service_url(Service::Beers, "http://beers:8080")
            .build()
            .unwrap();
        assert_eq!(c.url(Service::Users), DEFAULT_BASE_URL);
        assert_eq!(c.url(Service::Beers), "http://beers:8080");
        let c = c.to_builder().base_url("http://gateway").build().unwrap();
        assert!(Service::ALL.iter().all(|s| c.url(*s) == "http://gateway"));
    }

    #[test]
    fn a_token_is_never_shown_and_must_be_a_header_value() {
        let b = Connection::builder().bearer_token("secret-token");
        assert!(!format!("{b:?}").contains("secret-token"));
        let c = b.build().unwrap();
        assert!(!format!("{c:?}").contains("secret-token"));
        assert!(matches!(
            Connection::builder().bearer_token("a\nb").build(),
            Err(ConnectionError::InvalidHeader("bearer token"))
        ));
    }
}
