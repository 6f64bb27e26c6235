//! Who is calling, by network address, and how often they may: the client's address as
//! seen through the proxies this deployment trusts, and the per-address rate limits an
//! operation declares with `x-rate-limit` (a token bucket per address; excess gets 429
//! with `Retry-After`). The generator makes the limit the operation's first argument, so
//! a limited operation does no work at all, not even authentication, for a caller over
//! its limit.

use super::extract::service_context;
use super::{Problem, ServiceContext};
use async_trait::async_trait;
use dropshot::{
    ApiEndpointBodyContentType, ExtractorMetadata, RequestContext, ServerContext, SharedExtractor,
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::num::NonZeroU32;

/// Addresses tracked before idle buckets are dropped: a bound on the limiter's memory
/// whatever the number of distinct addresses an attacker sends from.
const TRACKED_ADDRESSES: usize = 100_000;

/// Client addresses and their rate limits, one per service instance.
pub struct Clients {
    trusted_proxies: Vec<IpNet>,
    /// `x-rate-limit: credentials`: operations that check or create a password.
    credentials: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl Clients {
    pub fn new(config: &super::config::Config) -> Clients {
        let per_minute =
            NonZeroU32::new(config.credentials_rate_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.credentials_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Clients {
            trusted_proxies: config.trusted_proxies.clone(),
            credentials: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
        }
    }

    /// The client's address: the connection's peer, or, when that peer is a trusted
    /// proxy, the right-most address of `X-Forwarded-For` that is not one (each proxy
    /// appends the address it saw, so only the right end can be believed).
    pub fn address(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|hop| hop.trim().parse::<IpAddr>())
            .collect::<Result<_, _>>()
            // A chain with a hop that is not an address was not written by our proxies.
            .unwrap_or_default();
        forwarded
            .iter()
            .rev()
            .find(|ip| !trusted(ip))
            .copied()
            .unwrap_or(peer)
    }

    /// The address of a request's client.
    pub fn of<X: ServerContext>(&self, rqctx: &RequestContext<X>) -> IpAddr {
        self.address(rqctx.request.remote_addr().ip(), rqctx.request.headers())
    }

    /// Takes one request from `address`'s credentials bucket, or tells how many seconds
    /// until one is free.
    pub fn admit_credentials(&self, address: IpAddr) -> Result<(), u64> {
        if self.credentials.len() > TRACKED_ADDRESSES {
            self.credentials.retain_recent();
        }
        self.credentials.check_key(&address).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            wait.as_secs() + 1
        })
    }
}

/// `x-rate-limit: credentials`: the caller's address is within its limit for operations
/// that check or create a password.
pub struct CredentialsLimit<C>(PhantomData<fn() -> C>);

#[async_trait]
impl<C: ServiceContext> SharedExtractor for CredentialsLimit<C> {
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        let clients = service_context::<C, X>(rqctx)?.clients();
        clients
            .admit_credentials(clients.of(rqctx))
            .map(|()| CredentialsLimit(PhantomData))
            .map_err(|wait| {
                Problem::new(
                    429,
                    "Too many sign-in or sign-up attempts from your address; try again later.",
                )
                .request(&rqctx.request_id)
                .header(http::header::RETRY_AFTER, &wait.to_string())
                .into_http_error()
            })
    }

    fn metadata(_: ApiEndpointBodyContentType) -> ExtractorMetadata {
        ExtractorMetadata {
            extension_mode: dropshot::ExtensionMode::None,
            parameters: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(trusted: &str) -> Clients {
        let mut config = super::super::config::Config::from_env().unwrap();
        config.trusted_proxies = trusted
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        config.credentials_rate_per_minute = 1;
        config.credentials_burst = 2;
        Clients::new(&config)
    }

    fn forwarded(chain: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", chain.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let c = clients("10.0.0.0/8");
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        // From an untrusted peer the header is whatever the client wrote.
        assert_eq!(c.address(client, &forwarded("198.51.100.1")), client);
        // Through a trusted proxy: the right-most untrusted hop, not a spoofed left one.
        assert_eq!(
            c.address(
                "10.1.2.3".parse().unwrap(),
                &forwarded("198.51.100.1, 203.0.113.7, 10.9.9.9")
            ),
            client
        );
        // A chain with garbage is not believed.
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(c.address(proxy, &forwarded("203.0.113.7, nonsense")), proxy);
        assert_eq!(c.address(proxy, &http::HeaderMap::new()), proxy);
    }

    #[test]
    fn each_address_has_its_own_bucket() {
        let c = clients("");
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        assert!(c.admit_credentials(a).is_ok());
        assert!(c.admit_credentials(a).is_ok());
        let wait = c.admit_credentials(a).unwrap_err();
        assert!((1..=61).contains(&wait), "{wait}");
        assert!(c.admit_credentials(b).is_ok());
    }
}
