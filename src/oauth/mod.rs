//! The authorization server's own endpoints: token (RFC 6749), revocation (RFC 7009),
//! introspection (RFC 7662) and metadata (RFC 8414).
//!
//! Layers: [`form`] reads a request body, [`client_auth`] authenticates the client,
//! [`grants`] decides and stores what to issue, and the endpoint modules render JSON.
//! Failures are [`OAuthError`]s, turned into responses in one place ([`error`]).

mod account;
mod authorize;
pub mod client;
pub mod client_auth;
mod code_grant;
mod csrf;
pub mod error;
pub mod form;
pub mod grants;
mod introspect;
pub mod limiter;
mod metadata;
pub mod pages;
pub mod password;
pub mod reuse;
mod revoke;
mod token_endpoint;
mod users;

use std::sync::Arc;

use crate::body::Incoming;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::OAuthConfig;
use crate::store::Store;
use crate::token::Codec;
use client::Clients;
pub use error::OAuthError;
pub use users::{revoke_orphaned_subjects, revoke_removed_users};

/// Where the metadata document is served (RFC 8414 §3).
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// Unix seconds now; replaceable so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

/// One of authgate's OAuth endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Revoke,
    Introspect,
    Metadata,
    /// The account + secret grant (Hubler).
    AccountToken,
    /// The login + consent page.
    Authorize,
}

impl Endpoint {
    /// Whether a public client, which has no secret (`none`), may use the endpoint:
    /// the token endpoint (with PKCE) and revocation (RFC 7009 §5), not introspection,
    /// which needs a caller that authenticates (RFC 7662 §2.1).
    pub fn serves_public_clients(self) -> bool {
        matches!(self, Endpoint::Token | Endpoint::Revoke)
    }
}

/// The authorization server.
pub struct OAuth {
    cfg: OAuthConfig,
    clients: Clients,
    store: Arc<dyn Store>,
    codec: Codec,
    clock: Clock,
    accounts: Vec<crate::config::AccountConfig>,
    /// Revocations evict from the gateway's token table at once.
    tokens: Arc<crate::token_table::TokenTable>,
    users: Vec<crate::config::UserConfig>,
    /// Shared by every configuration, so a reload keeps login counts.
    pages: Arc<pages::Pages>,
    logins: Arc<limiter::LoginLimiter>,
    /// Account-grant attempts, counted like logins (by account id and address).
    account_attempts: Arc<limiter::LoginLimiter>,
    /// Failed client authentications (token, revoke, introspect).
    client_failures: Arc<limiter::FailureLimiter>,
    /// Bounds concurrent argon2 checks (memory-hard: ~19 MiB each).
    hashing: Arc<tokio::sync::Semaphore>,
    /// Request rate limits of this configuration.
    limits: Arc<crate::ratelimit::Limiters>,
    metrics: crate::metrics::OAuthMetrics,
}

impl OAuth {
    /// Builds the server over `store`, with the clients, accounts and users of `config`.
    pub fn new(
        config: &crate::config::Config,
        store: Arc<dyn Store>,
        codec: Codec,
        clock: Clock,
        tokens: Arc<crate::token_table::TokenTable>,
        metrics: crate::metrics::OAuthMetrics,
    ) -> OAuth {
        let login_limiter = || {
            Arc::new(limiter::LoginLimiter::new(
                config.oauth.login_attempts_per_user,
                config.oauth.login_attempts_per_ip,
                config.oauth.login_window.as_secs() as i64,
                clock.clone(),
            ))
        };
        OAuth {
            cfg: config.oauth.clone(),
            clients: Clients::new(&config.clients, store.clone()),
            store,
            codec,
            accounts: config.accounts.clone(),
            tokens,
            users: config.users.clone(),
            pages: Arc::new(pages::Pages::new()),
            logins: login_limiter(),
            account_attempts: login_limiter(),
            client_failures: Arc::new(limiter::FailureLimiter::new(
                config.rate_limits.client_failures,
                clock.clone(),
            )),
            hashing: Arc::new(tokio::sync::Semaphore::new(4)),
            limits: Arc::new(crate::ratelimit::Limiters::new(config)),
            metrics,
            clock: clock.clone(),
        }
    }

    /// The same server with the clients, accounts, users, endpoints and limits of
    /// `config` (a reload). Login failure counts carry over; `oauth.login_*` limits
    /// keep the values the process started with.
    pub fn reconfigured(
        &self,
        config: &crate::config::Config,
        limits: Arc<crate::ratelimit::Limiters>,
    ) -> OAuth {
        OAuth {
            cfg: config.oauth.clone(),
            clients: Clients::new(&config.clients, self.store.clone()),
            store: self.store.clone(),
            codec: self.codec.clone(),
            accounts: config.accounts.clone(),
            tokens: self.tokens.clone(),
            users: config.users.clone(),
            pages: self.pages.clone(),
            logins: self.logins.clone(),
            account_attempts: self.account_attempts.clone(),
            client_failures: self.client_failures.clone(),
            hashing: self.hashing.clone(),
            limits,
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The rate limits in force.
    pub fn limits(&self) -> &Arc<crate::ratelimit::Limiters> {
        &self.limits
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Which endpoint `path` is, if it is one.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        if self.cfg.token_paths.iter().any(|p| p == path) {
            Some(Endpoint::Token)
        } else if path == self.cfg.revoke_path {
            Some(Endpoint::Revoke)
        } else if path == self.cfg.introspect_path {
            Some(Endpoint::Introspect)
        } else if path == METADATA_PATH {
            Some(Endpoint::Metadata)
        } else if path == self.cfg.authorize_path {
            Some(Endpoint::Authorize)
        } else if self.cfg.account_token_path.as_deref() == Some(path) {
            Some(Endpoint::AccountToken)
        } else {
            None
        }
    }

    /// Serves `endpoint`. `client_id` is set once the client is authenticated (for the
    /// access log).
    pub async fn handle(
        &self,
        endpoint: Endpoint,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Response<Body> {
        let result = match endpoint {
            Endpoint::Token => self.token_endpoint(req, client_ip, client_id).await,
            Endpoint::Revoke => self.revoke(req, client_ip, client_id).await,
            Endpoint::Introspect => self.introspect(req, client_ip, client_id).await,
            Endpoint::Metadata => Ok(self.metadata(req.method())),
            Endpoint::AccountToken => return self.account_grant(req, client_ip, client_id).await,
            Endpoint::Authorize => return self.authorize(req, client_ip, client_id).await,
        };
        result.unwrap_or_else(|e| {
            match &e {
                OAuthError::Unavailable(cause) => {
                    tracing::error!(%cause, ?endpoint, "store unavailable")
                }
                other => tracing::info!(error = %other, ?endpoint, "oauth request refused"),
            }
            e.into_response()
        })
    }
}

impl OAuth {
    /// The common start of the token, revocation and introspection endpoints: read the
    /// form, authenticate the client, and note its id for the access log.
    async fn authenticated_form(
        &self,
        endpoint: Endpoint,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<(form::Form, Arc<client::Client>), OAuthError> {
        let (parts, form) = form::read(req).await?;
        let client = self
            .authenticate_client(endpoint, &parts.headers, &form, client_ip, client_id)
            .await?;
        Ok((form, client))
    }

    /// Authenticates the client of a form read already (failure counts and the
    /// per-client rate limit included), and notes its id for the access log.
    async fn authenticate_client(
        &self,
        endpoint: Endpoint,
        headers: &http::HeaderMap,
        form: &form::Form,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<Arc<client::Client>, OAuthError> {
        let claimed = client_auth::claimed_id(headers, form).unwrap_or_default();
        let limited = |secs: i64| {
            OAuthError::RateLimited(crate::ratelimit::Limited {
                retry_after: std::time::Duration::from_secs(secs.max(1) as u64),
            })
        };
        self.client_failures
            .check(&claimed, client_ip)
            .map_err(limited)?;
        self.limits
            .oauth_client(&claimed)
            .map_err(OAuthError::RateLimited)?;
        let client = client_auth::authenticate(&self.clients, headers, form)
            .await
            .and_then(|c| {
                if c.public && !endpoint.serves_public_clients() {
                    return Err(OAuthError::InvalidClient {
                        basic: false,
                        reason: format!("public client {} at the {endpoint:?} endpoint", c.id),
                    });
                }
                Ok(c)
            })
            .inspect_err(|e| {
                if matches!(e, OAuthError::InvalidClient { .. }) {
                    self.client_failures.failed(&claimed, client_ip);
                }
            })?;
        self.client_failures.succeeded(&claimed, client_ip);
        *client_id = Some(client.id.clone());
        Ok(client)
    }
}

impl OAuth {
    /// Counts an issued access token (`authgate_tokens_issued_total`).
    fn count_issued(&self, grant: &'static str, client_id: &str) {
        self.metrics
            .issued
            .get_or_create(&crate::metrics::IssuedLabels {
                grant,
                client_id: client_id.to_owned(),
            })
            .inc();
    }
}

/// A JSON response that must not be cached (RFC 6749 §5.1).
fn json_no_store(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(body::full(value.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
