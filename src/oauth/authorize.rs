//! `GET`/`POST /oauth/authorize` (RFC 6749 §4.1.1–4.1.2, RFC 7636): the login + consent
//! page and the issuing of authorization codes.
//!
//! Validation order (RFC 6749 §4.1.2.1): an unknown client, or a redirect URI that is
//! not an exact match of a registered one, gets an error page — never a redirect, so
//! authgate is no open redirector. Every other error redirects to the client with
//! `error`, `error_description` and `state` (for the out-of-band URI, a page shows it).
//!
//! The page's form carries the authorization request back with a CSRF value bound to
//! the browser's `__Host-` cookie, that request and an expiry, spent once in the store;
//! a POST from another origin is refused (see [`super::csrf`]).

use std::sync::Arc;

use crate::body::Incoming;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::client::{Client, GrantType, OOB};
use super::csrf;
use super::form::{printable, Form, MAX_FORM_BYTES};
use super::pages::Consent;
use super::OAuth;
use crate::body::{self, Body};
use crate::scope::{Scope, ScopeItem};
use crate::store::CodeRecord;
use crate::token::{self, Kind};

/// The authorization request parameters that travel through the form.
const CARRIED: [&str; 11] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "country",
    "account_name",
    "location_name",
    "device_id",
];

/// A failure before the redirect URI is trusted: shown as a page.
struct PageError(StatusCode, String);

/// A failure after it is trusted: sent back to the client.
struct Redirect {
    error: &'static str,
    description: String,
}

fn redirect_err(error: &'static str, description: impl Into<String>) -> Redirect {
    Redirect {
        error,
        description: description.into(),
    }
}

/// A validated authorization request.
struct AuthzRequest {
    client: Arc<Client>,
    redirect_uri: String,
    state: Option<String>,
    scope: Scope,
    /// `S256:<challenge>` or `plain:<challenge>`.
    challenge: Option<String>,
}

impl OAuth {
    pub(super) async fn authorize(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        who: &mut Option<String>,
    ) -> Response<Body> {
        let method = req.method().clone();
        // The browser's nonce: the cookie's, or a new one the page will set.
        let cookie = csrf::cookie_nonce(req.headers());
        if method == Method::POST {
            if let Err(origin) = csrf::origin_allowed(req.headers(), &self.cfg.issuer) {
                tracing::warn!(origin = %printable(&origin), %client_ip, "authorize form posted from another origin");
                return self.pages.error(
                    "This form was sent from another site. Start again from the application.",
                    StatusCode::FORBIDDEN,
                );
            }
        }
        let form = match read_params(req).await {
            Ok(f) => f,
            Err(PageError(status, msg)) => return self.pages.error(&msg, status),
        };
        // Client and redirect URI first: until both check out, never redirect.
        let (client, redirect_uri) = match self.trusted_target(&form).await {
            Ok(t) => t,
            Err(PageError(status, msg)) => return self.pages.error(&msg, status),
        };
        *who = Some(client.id.clone());
        let state = form.get("state").map(str::to_owned);
        let request = match self.validate(&form, client, redirect_uri.clone(), state.clone()) {
            Ok(r) => r,
            Err(e) => return self.send_error(&redirect_uri, state.as_deref(), e),
        };
        if method == Method::GET {
            let nonce = cookie.unwrap_or_else(csrf::new_nonce);
            return self.consent_page(&form, &request, &nonce, "", None, StatusCode::OK);
        }
        self.decide(&form, request, cookie, client_ip).await
    }

    async fn trusted_target(&self, form: &Form) -> Result<(Arc<Client>, String), PageError> {
        let bad = |m: &str| PageError(StatusCode::BAD_REQUEST, m.to_owned());
        let id = form
            .get("client_id")
            .ok_or_else(|| bad("client_id is missing."))?;
        let client = self
            .clients
            .get(id)
            .await
            .map_err(|_| {
                PageError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is unavailable; try again later.".into(),
                )
            })?
            .ok_or_else(|| bad("The application (client_id) is not known."))?;
        let redirect_uri = match form.get("redirect_uri") {
            Some(u) if client.redirect_uris.iter().any(|r| r == u) => u.to_owned(),
            Some(_) => return Err(bad(
                "The redirect_uri is not registered for this application (it must match exactly).",
            )),
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => return Err(bad("redirect_uri is missing.")),
        };
        Ok((client, redirect_uri))
    }

    fn validate(
        &self,
        form: &Form,
        client: Arc<Client>,
        redirect_uri: String,
        state: Option<String>,
    ) -> Result<AuthzRequest, Redirect> {
        match form.get("response_type") {
            Some("code") => {}
            None if client.default_response_code => {}
            None => return Err(redirect_err("invalid_request", "response_type is missing")),
            Some(other) => {
                return Err(redirect_err(
                    "unsupported_response_type",
                    format!("response_type {} is not supported", printable(other)),
                ))
            }
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(redirect_err(
                "unauthorized_client",
                "this client may not use the authorization code grant",
            ));
        }
        let requested = Scope::parse(form.get("scope").unwrap_or(""))
            .map_err(|e| redirect_err("invalid_scope", e.to_string()))?;
        let scope = if form.get("scope").is_some() {
            let s = requested.intersect(&client.scope);
            if s.is_empty() && !requested.is_empty() {
                return Err(redirect_err(
                    "invalid_scope",
                    "none of the requested scope is allowed for this client",
                ));
            }
            s
        } else {
            client.scope.clone()
        };
        let challenge = match (
            form.get("code_challenge"),
            form.get("code_challenge_method"),
        ) {
            (None, Some(_)) => {
                return Err(redirect_err(
                    "invalid_request",
                    "code_challenge_method without code_challenge",
                ))
            }
            (None, None) if client.pkce_required => return Err(redirect_err(
                "invalid_request",
                "this client must use PKCE: send code_challenge with code_challenge_method=S256",
            )),
            (None, None) => None,
            (Some(c), method) => {
                let well_formed = (43..=128).contains(&c.len())
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                if !well_formed {
                    return Err(redirect_err(
                        "invalid_request",
                        "code_challenge is malformed",
                    ));
                }
                // RFC 7636 §4.3: no method means plain.
                match method.unwrap_or("plain") {
                    // RFC 7636 §4.2: BASE64URL(SHA256(verifier)), 43 characters; any
                    // other challenge would make a code no verifier can redeem.
                    "S256" if !is_s256_challenge(c) => {
                        return Err(redirect_err(
                            "invalid_request",
                            "an S256 code_challenge is 43 base64url characters (a SHA-256 hash)",
                        ))
                    }
                    "S256" => Some(format!("S256:{c}")),
                    "plain" if self.cfg.allow_plain_pkce => Some(format!("plain:{c}")),
                    "plain" => {
                        return Err(redirect_err(
                            "invalid_request",
                            "code_challenge_method plain is not accepted: use S256",
                        ))
                    }
                    other => {
                        return Err(redirect_err(
                            "invalid_request",
                            format!(
                                "code_challenge_method {} is not supported",
                                printable(other)
                            ),
                        ))
                    }
                }
            }
        };
        Ok(AuthzRequest {
            client,
            redirect_uri,
            state,
            scope,
            challenge,
        })
    }

    /// What the CSRF value binds of the request: the carried parameters.
    fn csrf_data(form: &Form) -> String {
        let mut data = String::new();
        for name in CARRIED {
            data.push_str(form.get(name).unwrap_or(""));
            data.push('\n');
        }
        data
    }

    /// The login + consent page, with a form for the browser holding `nonce` (set as
    /// its cookie again, so it lives as long as the form).
    fn consent_page(
        &self,
        form: &Form,
        request: &AuthzRequest,
        nonce: &str,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Response<Body> {
        let ttl = self.cfg.code_ttl.as_secs();
        let expires = (self.clock)() + ttl as i64;
        let csrf = csrf::issue(&self.codec, nonce, &Self::csrf_data(form), expires);
        let mut hidden: Vec<(&'static str, String)> = CARRIED
            .iter()
            .filter_map(|n| form.get(n).map(|v| (*n, v.to_owned())))
            .collect();
        hidden.push(("csrf_token", csrf));
        let prefill = [
            ("country", "Country"),
            ("account_name", "Account name"),
            ("location_name", "Location name"),
        ]
        .iter()
        .filter_map(|(k, label)| form.get(k).map(|v| (*label, v.to_owned())))
        .collect();
        let consent = Consent {
            client_name: &request.client.name,
            scopes: describe(&request.scope),
            prefill,
            hidden,
            action: &self.cfg.authorize_path,
            username,
            error,
            redirect_origin: origin_of(&request.redirect_uri),
        };
        let mut resp = self.pages.consent(&consent, status);
        if let Some(cookie) = csrf::set_cookie(nonce, ttl) {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        resp
    }

    /// Checks and spends the form's CSRF value: `None` when it may go on, otherwise the
    /// page to answer.
    async fn refuse_form(
        &self,
        form: &Form,
        cookie: Option<&str>,
        client_ip: std::net::IpAddr,
    ) -> Option<Response<Body>> {
        let checked = csrf::verify(
            &self.codec,
            form.get("csrf_token"),
            cookie,
            &Self::csrf_data(form),
            (self.clock)(),
        );
        let refused = |text: &str| Some(self.pages.error(text, StatusCode::BAD_REQUEST));
        let checked = match checked {
            Ok(c) => c,
            Err(csrf::Refused::NoCookie) => {
                tracing::info!(%client_ip, "authorize form without its cookie");
                return refused("Your browser did not send this page's cookie back. Allow cookies for this site and start again from the application.");
            }
            Err(csrf::Refused::Invalid) => {
                tracing::info!(%client_ip, "authorize form with an invalid CSRF value");
                return refused("This form has expired or does not belong to this authorization request. Start again from the application.");
            }
        };
        match self.store.spend_nonce(&checked.hash, checked.expires).await {
            Ok(true) => None,
            Ok(false) => {
                tracing::warn!(%client_ip, "authorize form submitted again");
                refused("This form has been sent already. Start again from the application.")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record an authorize form as used");
                Some(self.pages.error(
                    "The service is unavailable; try again later.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ))
            }
        }
    }

    async fn decide(
        &self,
        form: &Form,
        request: AuthzRequest,
        cookie: Option<String>,
        client_ip: std::net::IpAddr,
    ) -> Response<Body> {
        if let Some(page) = self.refuse_form(form, cookie.as_deref(), client_ip).await {
            return page;
        }
        // The form checked out against the cookie: pages shown from here carry it on.
        let nonce = cookie.unwrap_or_default();
        let state = request.state.as_deref();
        if form.get("decision") == Some("deny") {
            return self.send_error(
                &request.redirect_uri,
                state,
                redirect_err("access_denied", "the user denied the request"),
            );
        }
        let username = form.get("username").unwrap_or("");
        if username.len() > 256 {
            return self.consent_page(
                form,
                &request,
                &nonce,
                "",
                Some("Wrong user name or password."),
                StatusCode::UNAUTHORIZED,
            );
        }
        if let Err(wait) = self.logins.attempt(username, client_ip) {
            tracing::warn!(user = %printable(username), %client_ip, "login rate limit reached");
            let minutes = (wait + 59) / 60;
            let text = format!("Too many failed attempts. Try again in {minutes} minute(s).");
            let mut resp = self.consent_page(
                form,
                &request,
                &nonce,
                username,
                Some(&text),
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        let password = form.get("password").unwrap_or("").to_owned();
        let user = self.find_user(username).await;
        // argon2 is slow on purpose: keep it off the async workers. An unknown user costs
        // the same as a known one.
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| super::password::DUMMY_HASH.to_owned());
        // argon2 takes ~19 MiB per check: bound how many run at once.
        let verified = match self.hashing.acquire().await {
            Ok(_permit) => {
                tokio::task::spawn_blocking(move || super::password::verify(&phc, &password))
                    .await
                    .unwrap_or(false)
            }
            Err(_) => false,
        };
        let Some(user) = user.filter(|_| verified) else {
            tracing::info!(client_id = %request.client.id, user = %printable(username), %client_ip, "login failed");
            return self.consent_page(
                form,
                &request,
                &nonce,
                username,
                Some("Wrong user name or password."),
                StatusCode::UNAUTHORIZED,
            );
        };
        self.logins.succeeded(username, client_ip);
        let granted = match &user.scope {
            Some(s) => request.scope.intersect(s),
            None => request.scope.clone(),
        };
        if granted.is_empty() && !request.scope.is_empty() {
            return self.send_error(
                &request.redirect_uri,
                state,
                redirect_err(
                    "invalid_scope",
                    "the user may not grant any of the requested scope",
                ),
            );
        }
        let now = (self.clock)();
        let code = self.codec.mint(Kind::Code);
        let record = CodeRecord {
            hash: token::hash(code.expose()),
            client_id: request.client.id.clone(),
            // Empty when the request relied on the one registered URI: then the token
            // request need not name it (RFC 6749 §4.1.3).
            redirect_uri: if form.get("redirect_uri").is_some() {
                request.redirect_uri.clone()
            } else {
                String::new()
            },
            code_challenge: request.challenge.clone(),
            scope: granted.to_string(),
            subject: user.name.clone(),
            extra: user
                .resources
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
            family: token::random_id(),
            expires_at: now + self.cfg.code_ttl.as_secs() as i64,
            device_id: form
                .get("device_id")
                .filter(|d| d.len() <= 128 && d.chars().all(|c| !c.is_control()))
                .map(str::to_owned),
        };
        if let Err(e) = self.store.insert_code(&record).await {
            tracing::error!(error = %e, "cannot store an authorization code");
            return self.send_error(
                &request.redirect_uri,
                state,
                redirect_err("temporarily_unavailable", "try again later"),
            );
        }
        tracing::info!(client_id = %request.client.id, user = %user.name, "authorization code issued");
        if request.redirect_uri == OOB {
            return self.pages.oob(
                &request.client.name,
                code.expose(),
                self.cfg.code_ttl.as_secs() / 60,
            );
        }
        let mut params = vec![("code", code.expose())];
        // hubiC's callback names the granted scope next to the code.
        let scope = granted.to_string();
        if request.client.callback_scope {
            params.push(("scope", &scope));
        }
        if let Some(s) = state {
            params.push(("state", s));
        }
        params.push(("iss", &self.cfg.issuer));
        see_other(&request.redirect_uri, &params)
    }

    fn send_error(&self, redirect_uri: &str, state: Option<&str>, e: Redirect) -> Response<Body> {
        if redirect_uri == OOB {
            return self.pages.error(
                &format!("{}: {}", e.error, e.description),
                StatusCode::BAD_REQUEST,
            );
        }
        let mut params = vec![
            ("error", e.error),
            ("error_description", e.description.as_str()),
        ];
        if let Some(s) = state {
            params.push(("state", s));
        }
        // RFC 9207: says which server answers, against mix-up attacks.
        params.push(("iss", &self.cfg.issuer));
        see_other(redirect_uri, &params)
    }
}

impl OAuth {
    /// A user by name: those in the file first, then those in the store. A store error
    /// counts as unknown (logged), so the page answers "wrong user name or password".
    async fn find_user(&self, name: &str) -> Option<crate::config::UserConfig> {
        if let Some(u) = self.users.iter().find(|u| u.name == name) {
            return Some(u.clone());
        }
        match self.store.get_user(name).await {
            Ok(Some(record)) => match user_from_record(record) {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::error!(user = %printable(name), error = %e, "stored user is invalid");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read users from the store");
                None
            }
        }
    }
}

/// A stored user as the page uses it.
pub fn user_from_record(
    record: crate::store::UserRecord,
) -> Result<crate::config::UserConfig, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        scopes: Option<String>,
        #[serde(default)]
        resources: std::collections::BTreeMap<String, String>,
    }
    let s: Settings = serde_json::from_value(record.settings).map_err(|e| e.to_string())?;
    Ok(crate::config::UserConfig {
        name: record.name,
        password_hash: record.password_hash,
        scope: s
            .scopes
            .map(|t| Scope::parse(&t))
            .transpose()
            .map_err(|e| e.to_string())?,
        resources: s.resources,
    })
}

/// Reads the request's parameters: the query for GET, the form for POST.
async fn read_params(req: Request<Incoming>) -> Result<Form, PageError> {
    let bad = |m: String| PageError(StatusCode::BAD_REQUEST, m);
    let parse = |bytes: &[u8]| Form::parse(bytes).map_err(|e| bad(e.description()));
    match *req.method() {
        Method::GET | Method::HEAD => parse(req.uri().query().unwrap_or("").as_bytes()),
        Method::POST => {
            let is_form = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !is_form {
                return Err(bad(
                    "The form must be sent as application/x-www-form-urlencoded.".into(),
                ));
            }
            let bytes = Limited::new(req.into_body(), MAX_FORM_BYTES)
                .collect()
                .await
                .map_err(|_| bad("The form is too large or could not be read.".into()))?
                .to_bytes();
            parse(&bytes)
        }
        _ => Err(PageError(
            StatusCode::METHOD_NOT_ALLOWED,
            "Use GET or POST.".into(),
        )),
    }
}

/// Whether `c` is what an S256 challenge is: the unpadded base64url encoding of 32
/// bytes (the decoder also refuses the 43rd character's unused bits being set).
fn is_s256_challenge(c: &str) -> bool {
    use base64::Engine;
    c.len() == 43
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// `scheme://authority` of a redirect URI, if it is plain enough to put in a CSP source
/// list (the out-of-band URI has none: its page is served from here).
fn origin_of(uri: &str) -> Option<String> {
    let parsed: http::Uri = uri.parse().ok()?;
    let origin = format!(
        "{}://{}",
        parsed.scheme_str()?,
        parsed.authority()?.as_str()
    );
    origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:/[]".contains(&b))
        .then_some(origin)
}

/// 303 to `uri` with `params` added to its query.
fn see_other(uri: &str, params: &[(&str, &str)]) -> Response<Body> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{sep}{}", out.finish());
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Scope items in plain words for the consent page.
fn describe(scope: &Scope) -> Vec<String> {
    let rights =
        |r: crate::scope::Rights| r.iter().map(|x| x.word()).collect::<Vec<_>>().join(", ");
    scope
        .items()
        .iter()
        .map(|item| match item {
            ScopeItem::Right {
                resource,
                rights: r,
                ..
            } => format!("{} access to {resource}", rights(*r)),
            ScopeItem::Level { level, grants } => {
                let inner: Vec<String> = grants
                    .iter()
                    .filter_map(|g| match g {
                        ScopeItem::Right {
                            resource,
                            rights: r,
                            ..
                        } => Some(format!("{} {resource}", rights(*r))),
                        _ => None,
                    })
                    .collect();
                if inner.is_empty() {
                    format!("access to one {level}")
                } else {
                    format!("on one {level}: {}", inner.join("; "))
                }
            }
            ScopeItem::Name(n) => n.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_in_plain_words() {
        let s = Scope::parse("usage.r,links.wd,location[orders.write],profile").unwrap();
        assert_eq!(
            describe(&s),
            vec![
                "read access to usage",
                "write, delete access to links",
                "on one location: write orders",
                "profile"
            ]
        );
    }

    #[test]
    fn s256_challenges_are_a_base64url_sha256() {
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        for bad in [
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cMA",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw.cM",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
            &"a".repeat(128),
        ] {
            assert!(!is_s256_challenge(bad), "{bad}");
        }
    }

    #[test]
    fn redirects_keep_existing_queries() {
        let r = see_other("https://app/cb?x=1", &[("code", "a b"), ("state", "s&t")]);
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "https://app/cb?x=1&code=a+b&state=s%26t"
        );
    }
}
