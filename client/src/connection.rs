//! One place to say how to reach Taproom: where each service is, how long to wait, which
//! bearer token and request id to send. A [`Connection`] hands out every service's
//! generated `Client`, all sharing one HTTP connection pool.

use crate::{beers, orders, promotions, tasks, users};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use std::time::Duration;

/// A Taproom service, to give it its own URL with [`ConnectionBuilder::service_url`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Users,
    Beers,
    Orders,
    Tasks,
    Promotions,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Users,
        Service::Beers,
        Service::Orders,
        Service::Tasks,
        Service::Promotions,
    ];

    /// Where `server all` serves it unless told otherwise.
    pub fn default_url(self) -> &'static str {
        match self {
            Service::Users => "http://127.0.0.1:5001",
            Service::Beers => "http://127.0.0.1:5002",
            Service::Orders => "http://127.0.0.1:5003",
            Service::Tasks => "http://127.0.0.1:5004",
            Service::Promotions => "http://127.0.0.1:5005",
        }
    }
}

/// Settings for a [`Connection`]; start with [`Connection::builder`].
///
/// Cheap to clone: keep one without a token, and derive a connection with a token from it
/// after logging in.
#[derive(Clone)]
pub struct ConnectionBuilder {
    urls: [String; 5],
    timeout: Duration,
    bearer_token: Option<String>,
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
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl Default for ConnectionBuilder {
    fn default() -> Self {
        ConnectionBuilder {
            urls: Service::ALL.map(|s| s.default_url().to_string()),
            timeout: Duration::from_secs(10),
            bearer_token: None,
            request_id: None,
        }
    }
}

impl ConnectionBuilder {
    /// Every service at this one base URL (e.g. a gateway routing by path).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.urls = Service::ALL.map(|_| url.clone());
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
    /// [`users::Client::create_token`].
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
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
        Ok(Connection {
            settings: self,
            http,
        })
    }
}

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
/// timeout, bearer token and request id.
///
/// Inside [`CallContext::scope`](crate::CallContext::scope), the context's token and
/// request id take precedence.
#[derive(Clone, Debug)]
pub struct Connection {
    settings: ConnectionBuilder,
    http: reqwest::Client,
}

impl Connection {
    /// Settings starting from `server all`'s defaults (services on 127.0.0.1, ports
    /// 5001–5005, no token, 10 s timeout).
    pub fn builder() -> ConnectionBuilder {
        ConnectionBuilder::default()
    }

    /// This connection's settings, to derive another, e.g. with a token.
    pub fn to_builder(&self) -> ConnectionBuilder {
        self.settings.clone()
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

    /// Accounts and tokens.
    ///
    /// ```no_run
    /// use taproom_client::{users, Connection};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let anonymous = Connection::builder().build()?;
    /// let users = anonymous.users();
    /// // Constrained fields are newtypes: parsing checks the spec's rules before sending.
    /// let me = users
    ///     .create_user()
    ///     .body(users::types::CreateUser {
    ///         username: "ada_l".parse()?,
    ///         email: "ada@example.com".parse()?,
    ///         password: "correct horse battery".parse()?,
    ///         first_name: Some("Ada".parse()?),
    ///         last_name: None,
    ///     })
    ///     .send()
    ///     .await?
    ///     .into_inner();
    /// let token = users
    ///     .create_token()
    ///     .body(users::types::Credentials {
    ///         username: Some("ada_l".parse()?),
    ///         email: None,
    ///         password: "correct horse battery".parse()?,
    ///     })
    ///     .send()
    ///     .await?
    ///     .into_inner();
    /// // Every service accepts the token.
    /// let signed_in = anonymous.to_builder().bearer_token(token.access_token).build()?;
    /// let who = signed_in.users().get_current_user().send().await?.into_inner();
    /// assert_eq!(who.id, me.id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn users(&self) -> users::Client {
        users::Client::new_with_client(self.url(Service::Users), self.http.clone())
    }

    /// The beer catalogue: anyone may browse it, admins change it.
    ///
    /// ```no_run
    /// use taproom_client::{beers, Connection};
    ///
    /// # async fn example(admin_token: String) -> Result<(), Box<dyn std::error::Error>> {
    /// let page = Connection::builder()
    ///     .build()?
    ///     .beers()
    ///     .list_beers()
    ///     .q("ipa")
    ///     .limit(10u32)
    ///     .send()
    ///     .await?
    ///     .into_inner();
    /// for beer in &page.items {
    ///     println!("{} {} at {}", beer.sku, beer.name, beer.price);
    /// }
    /// // Prices are decimal strings with two places, never floats.
    /// let admin = Connection::builder().bearer_token(admin_token).build()?;
    /// let created = admin
    ///     .beers()
    ///     .create_beer()
    ///     .body(beers::types::CreateBeer {
    ///         sku: "IPA-330".parse()?,
    ///         name: "Hoppy Days IPA".parse()?,
    ///         price: "4.50".parse()?,
    ///         style: Some("IPA".parse()?),
    ///         image_url: None,
    ///     })
    ///     .send()
    ///     .await?
    ///     .into_inner();
    /// println!("added {}", created.id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn beers(&self) -> beers::Client {
        beers::Client::new_with_client(self.url(Service::Beers), self.http.clone())
    }

    /// Each user's orders, checked out idempotently.
    ///
    /// ```no_run
    /// use std::num::NonZeroU32;
    /// use taproom_client::{orders, Connection};
    ///
    /// # async fn example(token: String, beer_id: uuid::Uuid) -> Result<(), Box<dyn std::error::Error>> {
    /// let orders = Connection::builder().bearer_token(token).build()?.orders();
    /// let order = orders.create_order().send().await?.into_inner();
    /// orders
    ///     .add_order_item()
    ///     .order_id(order.id)
    ///     .body(orders::types::AddItem {
    ///         beer_id,
    ///         quantity: NonZeroU32::new(3).unwrap(),
    ///     })
    ///     .send()
    ///     .await?;
    /// // The same key on a retry returns the first answer instead of checking out twice.
    /// let key = uuid::Uuid::new_v4().to_string();
    /// let closed = orders
    ///     .checkout_order()
    ///     .order_id(order.id)
    ///     .idempotency_key(key.as_str())
    ///     .body(orders::types::Checkout {
    ///         expected_total: None,
    ///         promo_code: Some("SPRING-10".parse()?),
    ///     })
    ///     .send()
    ///     .await?
    ///     .into_inner();
    /// println!("paid {} ({} off)", closed.total.as_str(), closed.discount.as_str());
    /// # Ok(())
    /// # }
    /// ```
    pub fn orders(&self) -> orders::Client {
        orders::Client::new_with_client(self.url(Service::Orders), self.http.clone())
    }

    /// Each user's to-do tasks.
    ///
    /// ```no_run
    /// use taproom_client::{tasks, Connection};
    ///
    /// # async fn example(token: String) -> Result<(), Box<dyn std::error::Error>> {
    /// let tasks = Connection::builder()
    ///     .bearer_token(token)
    ///     .request_id("my-batch-job-42")
    ///     .build()?
    ///     .tasks();
    /// let task = tasks
    ///     .create_task()
    ///     .body(tasks::types::CreateTask {
    ///         title: "Buy hops".parse()?,
    ///         description: None,
    ///     })
    ///     .send()
    ///     .await?
    ///     .into_inner();
    /// let open = tasks.list_tasks().done(false).send().await?.into_inner();
    /// assert!(open.items.iter().any(|t| t.id == task.id));
    /// # Ok(())
    /// # }
    /// ```
    pub fn tasks(&self) -> tasks::Client {
        tasks::Client::new_with_client(self.url(Service::Tasks), self.http.clone())
    }

    /// Promo codes and how often each user may still use them.
    ///
    /// ```no_run
    /// use taproom_client::Connection;
    ///
    /// # async fn example(token: String) -> Result<(), Box<dyn std::error::Error>> {
    /// let promotions = Connection::builder().bearer_token(token).build()?.promotions();
    /// let answer = promotions.check_eligibility().code("SPRING-10").send().await;
    /// match answer {
    ///     Ok(e) => println!("eligible: {} ({} of {} uses)", e.eligible, e.uses, e.max_uses),
    ///     // Errors from the service carry its RFC 9457 problem as a typed value.
    ///     Err(taproom_client::promotions::Error::ErrorResponse(problem)) => {
    ///         println!("{} {}: {:?}", problem.status, problem.title, problem.detail)
    ///     }
    ///     Err(other) => return Err(other.into()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn promotions(&self) -> promotions::Client {
        promotions::Client::new_with_client(self.url(Service::Promotions), self.http.clone())
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
        assert_eq!(c.url(Service::Users), "http://127.0.0.1:5001");
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
