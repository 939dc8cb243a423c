//! The HTML pages of the authorize endpoint: login + consent, the out-of-band code page,
//! and the error page. Rendered with minijinja, auto-escaped; they work without
//! JavaScript, label every field, and refuse to be framed.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use minijinja::Environment;
use serde::Serialize;

use crate::body::{self, Body};

const BASE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}\
label{display:block;margin-top:.75rem}input[type=text],input[type=password]{width:100%;padding:.4rem}\
.actions{margin-top:1.25rem;display:flex;gap:.75rem}button{padding:.5rem 1rem}\
.error{color:#a00}.code{font-family:monospace;font-size:1.1rem;word-break:break-all;background:#eee;padding:.5rem}";

const CONSENT: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize {{ client_name }}</title><style>{{ style }}</style></head>
<body>
<main>
<h1>Authorize {{ client_name }}</h1>
<p><strong>{{ client_name }}</strong> asks for access to your account:</p>
<ul>{% for s in scopes %}<li>{{ s }}</li>{% else %}<li>basic access (no specific permissions)</li>{% endfor %}</ul>
{% if prefill %}<p>Suggested:</p><ul>{% for p in prefill %}<li>{{ p.0 }}: {{ p.1 }}</li>{% endfor %}</ul>{% endif %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
{% for f in hidden %}<input type="hidden" name="{{ f.0 }}" value="{{ f.1 }}">{% endfor %}
<label for="username">User name</label>
<input type="text" id="username" name="username" autocomplete="username" value="{{ username }}" required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</div>
</form>
</main>
</body>
</html>"#;

const OOB: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Authorization code</title><style>{{ style }}</style></head>
<body><main>
<h1>Authorization code</h1>
<p>Copy this code and paste it into {{ client_name }}:</p>
<p class="code" id="code">{{ code }}</p>
<p>It can be used once, within {{ minutes }} minutes.</p>
</main></body></html>"#;

const ERROR: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Authorization error</title><style>{{ style }}</style></head>
<body><main>
<h1>This authorization request cannot be completed</h1>
<p class="error" role="alert">{{ message }}</p>
<p>Go back to the application and try again.</p>
</main></body></html>"#;

/// Compiled templates.
pub struct Pages {
    env: Environment<'static>,
}

/// What the consent page shows.
#[derive(Serialize)]
pub struct Consent<'a> {
    pub client_name: &'a str,
    pub scopes: Vec<String>,
    pub prefill: Vec<(&'static str, String)>,
    pub hidden: Vec<(&'static str, String)>,
    pub action: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Origin of the redirect URI the form's POST will redirect to; browsers apply
    /// `form-action` to that redirect, so the CSP must allow it.
    #[serde(skip)]
    pub redirect_origin: Option<String>,
}

impl Pages {
    /// Compiles the templates.
    pub fn new() -> Pages {
        let mut env = Environment::new();
        for (name, source) in [
            ("consent.html", CONSENT),
            ("oob.html", OOB),
            ("error.html", ERROR),
        ] {
            // The templates are constants of this file; a syntax error in them is a bug
            // caught by the tests below, so failing loudly at startup is right.
            if let Err(e) = env.add_template(name, source) {
                panic!("built-in template {name} does not compile: {e}");
            }
        }
        Pages { env }
    }

    fn render(
        &self,
        name: &str,
        ctx: minijinja::Value,
        status: StatusCode,
        form_target: Option<&str>,
    ) -> Response<Body> {
        let html = self
            .env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, template = name, "page rendering failed");
                "<!doctype html><title>Error</title><p>Internal error.</p>".to_owned()
            });
        let mut resp = Response::new(body::full(html));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        let form_action = match form_target {
            Some(origin) => format!("form-action 'self' {origin}; "),
            None => "form-action 'self'; ".to_owned(),
        };
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; {form_action}frame-ancestors 'none'; base-uri 'none'"
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        // Not `no-referrer`: under it a browser sends `Origin: null` with the form's
        // POST (Fetch: serializing a request origin), and the authorize endpoint refuses
        // forms without the issuer's origin. `same-origin` still sends nothing to other
        // sites, the redirect to the client included.
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        resp
    }

    /// The login + consent page.
    pub fn consent(&self, c: &Consent<'_>, status: StatusCode) -> Response<Body> {
        let mut ctx = minijinja::Value::from_serialize(c);
        ctx = minijinja::context! { style => BASE_STYLE, ..ctx };
        self.render("consent.html", ctx, status, c.redirect_origin.as_deref())
    }

    /// The page showing an out-of-band code.
    pub fn oob(&self, client_name: &str, code: &str, minutes: u64) -> Response<Body> {
        self.render(
            "oob.html",
            minijinja::context! { style => BASE_STYLE, client_name, code, minutes },
            StatusCode::OK,
            None,
        )
    }

    /// An error page (bad client or redirect URI: never redirect).
    pub fn error(&self, message: &str, status: StatusCode) -> Response<Body> {
        self.render(
            "error.html",
            minijinja::context! { style => BASE_STYLE, message },
            status,
            None,
        )
    }
}

impl Default for Pages {
    fn default() -> Pages {
        Pages::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(resp: Response<Body>) -> String {
        String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn pages_render_escaped_with_protective_headers() {
        let pages = Pages::new();
        let consent = Consent {
            client_name: "<script>alert(1)</script>",
            scopes: vec!["read access to links".into()],
            prefill: vec![("Account name", "Aux Délices".into())],
            hidden: vec![("state", "\"><x".into())],
            action: "/oauth/authorize",
            username: "",
            error: Some("wrong user name or password"),
            redirect_origin: Some("https://app.example".into()),
        };
        let resp = pages.consent(&consent, StatusCode::UNAUTHORIZED);
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.contains("form-action 'self' https://app.example;"),
            "{csp}"
        );
        let html = text(resp).await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"&quot;&gt;&lt;x\""), "{html}");
        assert!(html.contains("<label for=\"password\">"));
        assert!(html.contains("Aux Délices"));
        let html = text(pages.oob("App", "agac_x", 10)).await;
        assert!(html.contains("agac_x"));
        let html = text(pages.error("<b>bad</b>", StatusCode::BAD_REQUEST)).await;
        assert!(html.contains("&lt;b&gt;bad"));
    }
}
