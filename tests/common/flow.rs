//! Driving the authorize page like a browser: GET the page, submit its form.

use super::Gate;

/// A running authgate the flow talks to: in-process ([`Gate`]) or a process
/// ([`super::process::Instance`]).
pub trait Target {
    /// `https://…/path`.
    fn url(&self, path: &str) -> String;
    /// An HTTPS client that trusts the instance and does not follow redirects.
    fn client(&self) -> reqwest::Client;
}

impl Target for Gate {
    fn url(&self, path: &str) -> String {
        Gate::url(self, path)
    }
    fn client(&self) -> reqwest::Client {
        Gate::client(self)
    }
}

/// The query string for `path` with `params`.
pub fn url(gate: &impl Target, path: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    gate.url(&format!("{path}?{}", q.finish()))
}

/// The hidden fields of the consent form, unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|chunk| {
            let name = chunk
                .split("name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = chunk
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let unescape = |s: &str| {
                s.replace("&quot;", "\"")
                    .replace("&#x2f;", "/")
                    .replace("&#x27;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            };
            (name.to_owned(), unescape(value))
        })
        .collect()
}

/// The `name=value` of the CSRF cookie a page sets (`__Host-authgate-csrf`), for the
/// `Cookie` header of the form's submission, as a browser would send it.
pub fn csrf_cookie(page: &reqwest::Response) -> String {
    let set = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__Host-authgate-csrf="))
        .expect("the page sets its CSRF cookie");
    set.split(';').next().unwrap().to_owned()
}

/// GETs the page at `path`, logs in and decides; returns the form submission's response.
pub async fn consent(
    gate: &impl Target,
    path: &str,
    params: &[(&str, &str)],
    user: &str,
    password: &str,
    decision: &str,
) -> reqwest::Response {
    let page = gate
        .client()
        .get(url(gate, path, params))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "the authorize page should render");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    // So that the browser's Origin on the POST is the page's, not `null`.
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    // The POST redirects to the client: the CSP must let the form go there.
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let cookie = csrf_cookie(&page);
    let html = page.text().await.unwrap();
    let mut form = hidden_fields(&html);
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    form.push(("decision".into(), decision.into()));
    gate.client()
        .post(gate.url(path))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The redirect's base URI and query parameters.
pub fn location(resp: &reqwest::Response) -> (String, Vec<(String, String)>) {
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    let (base, query) = loc.split_once('?').unwrap();
    (
        base.to_owned(),
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    )
}

/// One query parameter.
pub fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
