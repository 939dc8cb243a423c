//! # authgate
//!
//! An authenticating reverse proxy and OAuth 2.0 authorization server.
//!
//! ## Layout
//!
//! A request flows through these modules, in this order:
//!
//! | module            | job                                                                 |
//! |-------------------|---------------------------------------------------------------------|
//! | [`config`]        | raw TOML + `AUTHGATE_…` environment → validated [`config::Config`]  |
//! | [`server`]        | listeners, accept loop, connection limits, graceful drain           |
//! | [`conn_limit`]    | open connections per client address (`max_connections_per_ip`)     |
//! | [`connection`]    | one connection: protocol by ALPN, idle and stall timeouts           |
//! | [`parse_errors`]  | HSTS on hyper's own answers to unparseable requests (HTTPS, h1)     |
//! | [`tls`]           | certificates → rustls `ServerConfig` (SNI, ALPN h2 + http/1.1)      |
//! | [`gateway`]       | `handle()`: the per-request phases, read top to bottom              |
//! | [`oauth`]         | token, revocation, introspection, metadata endpoints; clients        |
//! | [`router`]        | host + longest path prefix → [`router::Route`]                      |
//! | [`gateway::forward`] | pooled upstream client, header rewriting, streamed bodies        |
//! | [`error`]         | the one place a [`error::GatewayError`] becomes an HTTP response    |
//! | [`health`]        | authgate's own `/healthz` and `/readyz`                              |
//! | [`hostname`]      | what a valid `host[:port]` is (requests and `route.host`)            |
//! | [`body`]          | the body type shared by all responses; size-limited request bodies  |
//! | [`certs`]         | self-signed development certificates (`authgate certs generate`)    |
//! | [`admin`]         | `authgate client …` / `token …` against the store                    |
//! | [`logging`]       | tracing setup, human or JSON                                         |
//! | [`scope`]         | scope grammar (`links.wd`, `location[orders.write]`), ∩, method→right |
//! | [`store`]         | clients, token hashes, settings: `Store` trait + SQLite backend     |
//! | [`token`]         | token format: kind prefix, 256 random bits, keyed checksum, hash    |
//! | [`token_table`]   | cached token table: checksum → cache (moka) → store, revocation evicts |
//! | [`secret`]        | secret types that never print and zero their memory                 |
//! | [`keyring`]       | keys from a file or the environment that seal secrets kept at rest  |
//! | [`workers`]       | thread-per-core connection workers                                   |
//! | [`request_id`]    | `X-Request-Id`: accepted or generated, in logs and error bodies      |
//! | [`metrics`]       | Prometheus metrics (`/metrics`, optionally on its own listener)      |
//! | [`ratelimit`]     | 429 rate limits per address, client id and route (governor)          |
//! | [`reload`]        | hot reload on SIGHUP and file change; certificate rotation           |
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod certs;
pub mod config;
pub mod conn_limit;
pub mod connection;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod health;
pub mod hostname;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod parse_errors;
pub mod ratelimit;
pub mod reload;
pub mod request_id;
pub mod router;
pub mod scope;
pub mod secret;
pub mod server;
pub mod store;
pub mod tls;
pub mod token;
pub mod token_table;
pub mod workers;
