//! Forward-auth mode: `GET forward_auth.path` (e.g. `/auth/verify`) decides on a request
//! that another proxy (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`)
//! holds, with the same routes, token check, rate limits and scope rules as proxying.
//!
//! The original request is described by headers of the proxy, of one family chosen by
//! `forward_auth.headers` (only that family is read, so a client's own header of the
//! other family, passed along by the proxy, cannot choose what is decided):
//! - `x-forwarded` (Traefik, Caddy): `X-Forwarded-Method`, `X-Forwarded-Uri`,
//!   `X-Forwarded-Host`;
//! - `x-original` (nginx, set with `proxy_set_header`): `X-Original-Method`,
//!   `X-Original-URI`, `X-Original-Host`.
//!
//! The method and the URI are required (400 without); the host falls back to `Host`.
//! The token comes from `Authorization` or `X-Access-Token`, as on proxied routes.
//!
//! Answers: 200 with the identity headers (`X-Authgate-Client-Id`, …) for the proxy to
//! copy upstream; 401 or 403 with the RFC 6750 `WWW-Authenticate` challenge; 403 when no
//! route covers the URI (nginx treats any status but 2xx, 401 and 403 as an error).

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName};
use http::{Method, Request, Response, Uri};

use super::path::canonical_path;
use super::{decide, Gateway, RequestCtx, Snapshot};
use crate::body::{self, Body};
use crate::config::OriginalHeaders;
use crate::error::GatewayError;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-original-host");

/// What the proxy asks about.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    path: String,
    query: Option<String>,
    host: Option<String>,
}

fn get<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn original<B>(req: &Request<B>, family: OriginalHeaders) -> Result<Original, GatewayError> {
    let h = req.headers();
    let (method_h, uri_h, host_h) = match family {
        OriginalHeaders::XForwarded => (&X_FORWARDED_METHOD, &X_FORWARDED_URI, &X_FORWARDED_HOST),
        OriginalHeaders::XOriginal => (&X_ORIGINAL_METHOD, &X_ORIGINAL_URI, &X_ORIGINAL_HOST),
    };
    let method = get(h, method_h).ok_or(GatewayError::NoOriginalUri)?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| GatewayError::BadRequest("the original method is not a method"))?;
    let uri_text = get(h, uri_h).ok_or(GatewayError::NoOriginalUri)?;
    let uri: Uri = uri_text
        .parse()
        .map_err(|_| GatewayError::BadRequest("the original URI is not a URI"))?;
    if !uri.path().starts_with('/') {
        return Err(GatewayError::BadRequest(
            "the original URI must be a path starting with /",
        ));
    }
    let host = get(h, host_h)
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .or_else(|| h.get(http::header::HOST).and_then(|v| v.to_str().ok()))
        .map(|host| {
            if super::host::is_valid(host) {
                Ok(super::route_host(host))
            } else {
                Err(GatewayError::BadRequest(
                    "the original host is not a valid host",
                ))
            }
        })
        .transpose()?;
    Ok(Original {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        host,
    })
}

/// Answers a forward-auth request.
pub(super) async fn verify(
    gateway: &Gateway,
    snap: &Snapshot,
    req: &Request<crate::body::Incoming>,
    client_ip: IpAddr,
    ctx: &mut RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    let o = original(req, snap.config.forward_auth.headers)?;
    let path = canonical_path(&o.path)?.unwrap_or(o.path);
    let route = snap
        .router
        .find(o.host.as_deref(), &path)
        .ok_or(GatewayError::Forbidden(
            "no route covers this host and path",
        ))?;
    ctx.route = Some(route.index);
    // The proxy forwards the client's request as it came: authgate cannot strip an
    // override here, so one on a route that does not authorize overrides is refused.
    let rc = &snap.config.routes[route.index];
    let overridden = super::method_override::requested(req.headers(), o.query.as_deref())?;
    if overridden.is_some() && rc.method_override == crate::config::MethodOverride::Strip {
        return Err(GatewayError::Forbidden(
            "method override headers or parameters are refused on this route",
        ));
    }
    let caller = decide(
        &gateway.tokens,
        snap,
        route.index,
        &o.method,
        req.headers(),
        o.query.as_deref(),
        client_ip,
        ctx,
    )
    .await?;
    if let (Some(method), Some(caller)) = (&overridden, &caller) {
        super::authorize::check(&rc.access, method, &caller.token)?;
    }
    let mut resp = Response::new(body::empty());
    snap.identity
        .apply(resp.headers_mut(), caller.as_ref(), false);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/auth/verify");
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_original_request_comes_from_one_header_family_only() {
        let traefik = req(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/api/items/1?x=2"),
            ("x-forwarded-host", "API.example:8443"),
            ("x-original-uri", "/pub"),
            ("x-original-method", "GET"),
            ("host", "authgate"),
        ]);
        let o = original(&traefik, OriginalHeaders::XForwarded).unwrap();
        assert_eq!(
            o,
            Original {
                method: Method::DELETE,
                path: "/api/items/1".into(),
                query: Some("x=2".into()),
                host: Some("api.example".into()),
            }
        );
        // nginx mode reads only X-Original-*: a client's X-Forwarded-Uri is ignored.
        let nginx = req(&[
            ("x-original-uri", "/api/items"),
            ("x-original-method", "POST"),
            ("x-forwarded-uri", "/pub"),
            ("x-forwarded-method", "GET"),
            ("host", "api.example"),
        ]);
        let o = original(&nginx, OriginalHeaders::XOriginal).unwrap();
        assert_eq!((o.method, o.path.as_str()), (Method::POST, "/api/items"));
        assert_eq!(o.host.as_deref(), Some("api.example"));
        // Both the method and the URI are required.
        for missing in [
            req(&[("x-original-uri", "/a")]),
            req(&[("x-original-method", "GET")]),
        ] {
            assert_eq!(
                original(&missing, OriginalHeaders::XOriginal).unwrap_err(),
                GatewayError::NoOriginalUri
            );
        }
        let bad = [
            req(&[
                ("x-original-uri", "api/items"),
                ("x-original-method", "GET"),
            ]),
            req(&[("x-original-uri", "/a"), ("x-original-method", "GE T")]),
        ];
        for r in bad {
            assert!(original(&r, OriginalHeaders::XOriginal).is_err());
        }
    }
}
