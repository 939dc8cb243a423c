//! The authorization code flow end to end: authorize page → login + consent → redirect
//! with code and state → token (PKCE) → API call through the gateway.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use base64::Engine;
use common::{flow, json, post_form, Gate, Upstream};
use sha2::Digest;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const CB: &str = "https://app.example/cb";
const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";
const LOOPBACK: &str = "http://127.0.0.1:53682/cb";

struct Env {
    gate: Gate,
    up: Upstream,
    now: Arc<AtomicI64>,
}

async fn env() -> Env {
    let up = Upstream::start().await;
    let alice = authgate::oauth::password::hash("alice-pw").unwrap();
    let rest = format!(
        r#"
[[client]]
id = "web"
name = "Web App"
secret = "web-secret"
grants = ["authorization_code", "refresh_token"]
scopes = "usage.r,account.r,links.wd"
redirect_uris = ["{CB}", "{OOB}"]
refresh_tokens = true
pkce = "required"
[[client]]
id = "rise"
secret = "rise-secret"
grants = ["authorization_code"]
scopes = "location[orders.write,customer_list.write],profile"
redirect_uris = ["https://rise.example/oauth_callback"]
access_token_ttl = "never"
token_response_extra = true
reuse_tokens = true
[[client]]
id = "other"
secret = "other-secret"
grants = ["authorization_code"]
scopes = "usage.r"
redirect_uris = ["https://other.example/cb"]
[[client]]
id = "mobile"
public = true
grants = ["authorization_code", "refresh_token"]
scopes = "usage.r"
redirect_uris = ["{LOOPBACK}"]
refresh_tokens = true
[[user]]
name = "alice"
password_hash = "{alice}"
scopes = "usage.r,links.wd,location[orders.write],profile"
[user.resources]
account_id = "3r4s3"
location_id = "3r4s3-1"
account_name = "Bella Pizza"
location_name = "Paris"
[[route]]
path = "/links"
upstream = "{}"
perimeter = "links"
[[route]]
path = "/location"
upstream = "{}"
perimeter = "orders"
level = "location"
token_headers = ["x-access-token"]
"#,
        up.url(),
        up.url()
    );
    let now = Arc::new(AtomicI64::new(2_000_000_000));
    let n = now.clone();
    let gate = Gate::start_with_clock(
        "http_mode = \"serve\"",
        "",
        &rest,
        Arc::new(move || n.load(Ordering::SeqCst)),
    )
    .await;
    Env { gate, up, now }
}

fn authorize_url(gate: &Gate, params: &[(&str, &str)]) -> String {
    flow::url(gate, "/oauth/authorize", params)
}

fn web_params<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("scope", "usage.r,account.r,links.wd"),
        ("state", "xyz"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        p.retain(|(n, _)| n != k);
        p.push((k, v));
    }
    p
}

/// The issuer, as the metadata document names it.
async fn issuer(gate: &Gate) -> String {
    let resp = gate
        .client()
        .get(gate.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    json(resp).await["issuer"].as_str().unwrap().to_owned()
}

async fn consent(
    gate: &Gate,
    params: &[(&str, &str)],
    user: &str,
    pw: &str,
    decision: &str,
) -> reqwest::Response {
    flow::consent(gate, "/oauth/authorize", params, user, pw, decision).await
}

use flow::{hidden_fields, location as location_params, param};

async fn exchange(
    gate: &Gate,
    who: (&str, &str),
    code: &str,
    redirect: &str,
    verifier: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    post_form(gate, "/oauth/token", Some(who), &form).await
}

#[tokio::test]
async fn the_whole_flow_with_pkce_refresh_and_an_api_call() {
    let Env { gate, up, .. } = env().await;
    let page = gate
        .client()
        .get(authorize_url(&gate, &web_params(&[])))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' https://app.example;"),
        "{csp}"
    );
    let resp = consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await;
    assert_eq!(resp.status(), 303);
    let (base, p) = location_params(&resp);
    assert_eq!(base, CB);
    assert_eq!(param(&p, "state"), Some("xyz"));
    // RFC 9207: the response names the issuer; no scope unless the client asks for it.
    assert_eq!(param(&p, "iss"), Some(issuer(&gate).await.as_str()));
    assert_eq!(param(&p, "scope"), None);
    let code = param(&p, "code").unwrap().to_owned();
    assert!(code.starts_with("agac_"));

    let resp = exchange(&gate, ("web", "web-secret"), &code, CB, Some(VERIFIER)).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    let access = v["access_token"].as_str().unwrap().to_owned();
    assert!(v["refresh_token"].as_str().unwrap().starts_with("agrt_"));
    // alice may not grant account.r: the token carries what she could grant.
    let i = json(
        post_form(
            &gate,
            "/oauth/introspect",
            Some(("web", "web-secret")),
            &[("token", &access)],
        )
        .await,
    )
    .await;
    assert_eq!(i["scope"], "usage.r,links.wd");
    assert_eq!(i["sub"], "alice");

    let resp = gate
        .client()
        .delete(gate.url("/links/1"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(resp).await["headers"]["x-authgate-location-id"],
        "3r4s3-1"
    );
    assert_eq!(up.hits(), 1);

    // Second use of the code: refused, and the tokens it issued are revoked at once.
    let resp = exchange(&gate, ("web", "web-secret"), &code, CB, Some(VERIFIER)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"], "invalid_grant");
    let resp = gate
        .client()
        .delete(gate.url("/links/1"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn open_redirect_attempts_get_an_error_page_never_a_redirect() {
    let Env { gate, .. } = env().await;
    for bad in [
        "https://app.example/cb/evil",
        "https://app.example/cbx",
        "https://app.example:444/cb",
        "https://evil@app.example/cb",
        "https://app.example/cb#frag",
        "https://evil.example/cb",
        "http://app.example/cb",
    ] {
        let resp = gate
            .client()
            .get(authorize_url(&gate, &web_params(&[("redirect_uri", bad)])))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert!(
            resp.headers().get("location").is_none(),
            "{bad} was redirected to"
        );
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let resp = gate
        .client()
        .get(authorize_url(
            &gate,
            &web_params(&[("client_id", "nobody")]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn request_errors_redirect_with_error_and_state() {
    let Env { gate, .. } = env().await;
    let iss = issuer(&gate).await;
    // S256 challenges other than 43 base64url characters could never be redeemed.
    let s256_44 = format!("{CHALLENGE}A");
    let s256_128 = "A".repeat(128);
    let s256_dot = CHALLENGE.replace('-', ".");
    let cases = [
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "photos.r")], "invalid_scope"),
        (vec![("scope", "a[b")], "invalid_scope"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (
            vec![("code_challenge", s256_44.as_str())],
            "invalid_request",
        ),
        (
            vec![("code_challenge", s256_128.as_str())],
            "invalid_request",
        ),
        (
            vec![("code_challenge", s256_dot.as_str())],
            "invalid_request",
        ),
    ];
    for (extra, error) in cases {
        let resp = gate
            .client()
            .get(authorize_url(&gate, &web_params(&extra)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{extra:?}");
        let (base, p) = location_params(&resp);
        assert_eq!(base, CB);
        assert_eq!(param(&p, "error"), Some(error), "{extra:?}");
        assert_eq!(param(&p, "state"), Some("xyz"));
        assert_eq!(param(&p, "iss"), Some(iss.as_str()));
        assert!(param(&p, "error_description").is_some());
    }
    // Without response_type, for a client that does not default it.
    let mut none = web_params(&[]);
    none.retain(|(k, _)| *k != "response_type");
    let resp = gate
        .client()
        .get(authorize_url(&gate, &none))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location_params(&resp).1, "error"),
        Some("invalid_request")
    );
    // PKCE is required for this client.
    let mut no_pkce = web_params(&[]);
    no_pkce.retain(|(k, _)| !k.starts_with("code_challenge"));
    let resp = gate
        .client()
        .get(authorize_url(&gate, &no_pkce))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location_params(&resp).1, "error"),
        Some("invalid_request")
    );
    // A client without the grant.
    let resp = gate
        .client()
        .get(authorize_url(
            &gate,
            &[
                ("response_type", "code"),
                ("client_id", "rise"),
                ("redirect_uri", "https://rise.example/oauth_callback"),
                ("scope", "profile"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "rise may use the code grant without PKCE (confidential, optional)"
    );
}

#[tokio::test]
async fn deny_wrong_password_and_csrf() {
    let Env { gate, .. } = env().await;
    let resp = consent(&gate, &web_params(&[]), "alice", "alice-pw", "deny").await;
    let (_, p) = location_params(&resp);
    assert_eq!(param(&p, "error"), Some("access_denied"));
    assert_eq!(param(&p, "state"), Some("xyz"));
    assert_eq!(param(&p, "iss"), Some(issuer(&gate).await.as_str()));

    let resp = consent(&gate, &web_params(&[]), "alice", "wrong", "approve").await;
    assert_eq!(resp.status(), 401);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password"));
    let resp = consent(&gate, &web_params(&[]), "mallory", "x", "approve").await;
    assert_eq!(resp.status(), 401);

    // A form whose CSRF token is missing, or belongs to another request (with the
    // page's own cookie: only the token is wrong).
    let page = gate
        .client()
        .get(authorize_url(&gate, &web_params(&[])))
        .send()
        .await
        .unwrap();
    let cookie = flow::csrf_cookie(&page);
    let page = page.text().await.unwrap();
    let mut form = hidden_fields(&page);
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "alice-pw".into()));
    form.push(("decision".into(), "approve".into()));
    let mut tampered = form.clone();
    for f in tampered.iter_mut() {
        if f.0 == "state" {
            f.1 = "other-request".into();
        }
    }
    let resp = gate
        .client()
        .post(gate.url("/oauth/authorize"))
        .header("cookie", &cookie)
        .form(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    form.retain(|(k, _)| k != "csrf_token");
    let resp = gate
        .client()
        .post(gate.url("/oauth/authorize"))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

/// A rendered page: its CSRF cookie (`name=value`) and its form, filled in.
async fn page_form(gate: &Gate, user: &str, pw: &str) -> (String, Vec<(String, String)>) {
    let page = gate
        .client()
        .get(authorize_url(gate, &web_params(&[])))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cookie = flow::csrf_cookie(&page);
    let mut form = hidden_fields(&page.text().await.unwrap());
    form.push(("username".into(), user.into()));
    form.push(("password".into(), pw.into()));
    form.push(("decision".into(), "approve".into()));
    (cookie, form)
}

/// Submits `form` with `cookie` (and `origin`, if any).
async fn submit(
    gate: &Gate,
    cookie: Option<&str>,
    origin: Option<&str>,
    form: &[(String, String)],
) -> reqwest::Response {
    let mut req = gate.client().post(gate.url("/oauth/authorize")).form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

/// Login CSRF: a form fetched by an attacker (its value and its cookie jar) is refused in
/// anybody else's browser; every value works once; and only the issuer's origin may
/// post it.
#[tokio::test]
async fn csrf_values_are_bound_to_the_browser_spent_once_and_posted_from_the_issuer() {
    let Env { gate, .. } = env().await;
    let (attacker_cookie, attacker_form) = page_form(&gate, "alice", "alice-pw").await;
    let (victim_cookie, victim_form) = page_form(&gate, "alice", "alice-pw").await;
    assert_ne!(attacker_cookie, victim_cookie, "each browser its own nonce");

    // Replayed from another cookie jar, or with none: refused, nothing issued.
    for cookie in [Some(victim_cookie.as_str()), None] {
        let resp = submit(&gate, cookie, None, &attacker_form).await;
        assert_eq!(resp.status(), 400, "{cookie:?}");
        assert!(resp.headers().get("location").is_none());
    }
    // In its own browser the form works, once.
    let resp = submit(&gate, Some(&victim_cookie), None, &victim_form).await;
    assert_eq!(resp.status(), 303);
    let again = submit(&gate, Some(&victim_cookie), None, &victim_form).await;
    assert_eq!(again.status(), 400, "a second submit of the same value");
    assert!(again.headers().get("location").is_none());
    assert!(again.text().await.unwrap().contains("sent already"));

    // A wrong password spends the value too; the page shown again has a fresh one,
    // bound to the same cookie.
    let (cookie, mut form) = page_form(&gate, "alice", "wrong").await;
    let retry = submit(&gate, Some(&cookie), None, &form).await;
    assert_eq!(retry.status(), 401);
    assert_eq!(flow::csrf_cookie(&retry), cookie, "the same nonce");
    let fresh = hidden_fields(&retry.text().await.unwrap());
    for f in form.iter_mut() {
        if f.0 == "password" {
            f.1 = "alice-pw".into();
        }
    }
    assert_eq!(
        submit(&gate, Some(&cookie), None, &form).await.status(),
        400
    );
    let mut form: Vec<(String, String)> = fresh;
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "alice-pw".into()));
    form.push(("decision".into(), "approve".into()));
    assert_eq!(
        submit(&gate, Some(&cookie), None, &form).await.status(),
        303
    );

    // Another origin (or an opaque one) may not post, and spends nothing; the
    // issuer's may.
    let (cookie, form) = page_form(&gate, "alice", "alice-pw").await;
    for origin in ["https://evil.example", "null"] {
        let resp = submit(&gate, Some(&cookie), Some(origin), &form).await;
        assert_eq!(resp.status(), 403, "{origin}");
        assert!(resp.headers().get("location").is_none());
    }
    let iss = issuer(&gate).await;
    let resp = submit(&gate, Some(&cookie), Some(&iss), &form).await;
    assert_eq!(resp.status(), 303, "from the issuer's origin");
    assert!(param(&location_params(&resp).1, "code").is_some());
}

#[tokio::test]
async fn pkce_codes_bound_to_client_and_expiry() {
    let Env { gate, now, .. } = env().await;
    let code_of =
        |resp: &reqwest::Response| param(&location_params(resp).1, "code").unwrap().to_owned();
    let who = ("web", "web-secret");

    let c = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    let resp = exchange(&gate, who, &c, CB, None).await;
    assert_eq!(
        json(resp).await["error"],
        "invalid_request",
        "missing verifier"
    );
    let c = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    let resp = exchange(
        &gate,
        who,
        &c,
        CB,
        Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX"),
    )
    .await;
    assert_eq!(json(resp).await["error"], "invalid_grant", "wrong verifier");
    let c = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    let resp = exchange(
        &gate,
        ("other", "other-secret"),
        &c,
        "https://other.example/cb",
        Some(VERIFIER),
    )
    .await;
    assert_eq!(
        json(resp).await["error"],
        "invalid_grant",
        "another client's code"
    );
    let c = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    let resp = exchange(&gate, who, &c, "https://app.example/other", Some(VERIFIER)).await;
    assert_eq!(
        json(resp).await["error"],
        "invalid_grant",
        "redirect_uri mismatch"
    );

    let c = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    now.fetch_add(600, Ordering::SeqCst);
    let resp = exchange(&gate, who, &c, CB, Some(VERIFIER)).await;
    assert_eq!(
        json(resp).await["error"],
        "invalid_grant",
        "expired after code_ttl"
    );
}

#[tokio::test]
async fn out_of_band_code_is_shown_on_a_page() {
    let Env { gate, .. } = env().await;
    let resp = consent(
        &gate,
        &web_params(&[("redirect_uri", OOB)]),
        "alice",
        "alice-pw",
        "approve",
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());
    let html = resp.text().await.unwrap();
    let code = html
        .split("id=\"code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(code.starts_with("agac_"));
    let resp = exchange(&gate, ("web", "web-secret"), &code, OOB, Some(VERIFIER)).await;
    assert_eq!(resp.status(), 200);
}

/// HubRise (seed 001): prefill parameters, access-level scope, tokens that never
/// expire, bound resource ids and names in the token response, X-Access-Token calls.
#[tokio::test]
async fn hubrise_style_flow() {
    let Env { gate, up, .. } = env().await;
    let params = [
        ("response_type", "code"),
        ("client_id", "rise"),
        ("redirect_uri", "https://rise.example/oauth_callback"),
        ("scope", "location[orders.write,customer_list.write,]"),
        ("country", "FR"),
        ("account_name", "Aux Délices"),
        ("location_name", "Paris"),
    ];
    let page = gate
        .client()
        .get(authorize_url(&gate, &params))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Aux Délices") && page.contains("Country"),
        "prefill shown"
    );
    let resp = consent(&gate, &params, "alice", "alice-pw", "approve").await;
    let code = param(&location_params(&resp).1, "code").unwrap().to_owned();
    let resp = exchange(
        &gate,
        ("rise", "rise-secret"),
        &code,
        "https://rise.example/oauth_callback",
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert!(v.get("expires_in").is_none(), "HubRise tokens never expire");
    assert_eq!(v["account_id"], "3r4s3");
    assert_eq!(v["location_id"], "3r4s3-1");
    assert_eq!(v["account_name"], "Bella Pizza");
    assert_eq!(v["location_name"], "Paris");
    let token = v["access_token"].as_str().unwrap();
    let resp = gate
        .client()
        .post(gate.url("/location/orders"))
        .header("x-access-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(resp).await["headers"]["x-authgate-location-id"],
        "3r4s3-1"
    );
    assert_eq!(up.hits(), 1);
    // Only the granted part: alice may grant orders.write but not customer_list.write.
    let i = json(
        post_form(
            &gate,
            "/oauth/introspect",
            Some(("rise", "rise-secret")),
            &[("token", token)],
        )
        .await,
    )
    .await;
    assert_eq!(i["scope"], "location[orders.write]");
}

#[test]
fn rfc_7636_example_holds() {
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    assert_eq!(computed, CHALLENGE);
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_user_and_recover() {
    let Env { gate, now, .. } = env().await;
    for _ in 0..5 {
        let resp = consent(&gate, &web_params(&[]), "alice", "guess", "approve").await;
        assert_eq!(resp.status(), 401);
    }
    // Over the limit: refused even with the right password, with a Retry-After.
    let resp = consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await;
    assert_eq!(resp.status(), 429);
    let wait: i64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 900, "{wait}");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Too many failed attempts"));
    now.fetch_add(900, Ordering::SeqCst);
    let resp = consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await;
    assert_eq!(resp.status(), 303, "the window is over");
}

/// HubRise connection reuse: the same user and location get the same token again (with
/// the new grant); a device_id keys its own token; a revoked one is replaced.
#[tokio::test]
async fn connection_reuse_and_device_ids() {
    let Env { gate, .. } = env().await;
    let cb = "https://rise.example/oauth_callback";
    let who = ("rise", "rise-secret");
    let authorize = |extra: Vec<(&'static str, &'static str)>| {
        let gate = &gate;
        async move {
            let mut params = vec![
                ("response_type", "code"),
                ("client_id", "rise"),
                ("redirect_uri", cb),
                ("scope", "location[orders.write],profile"),
            ];
            params.extend(extra);
            let resp = consent(gate, &params, "alice", "alice-pw", "approve").await;
            let code = param(&location_params(&resp).1, "code").unwrap().to_owned();
            let resp = exchange(gate, who, &code, cb, None).await;
            assert_eq!(resp.status(), 200);
            json(resp).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = authorize(vec![]).await;
    assert_eq!(
        authorize(vec![]).await,
        first,
        "same user and location: same token"
    );
    let till = authorize(vec![("device_id", "till-2")]).await;
    assert_ne!(till, first, "a device gets its own token");
    assert_eq!(authorize(vec![("device_id", "till-2")]).await, till);
    // Re-authorizing with a narrower scope narrows the reused token.
    let narrowed = {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "rise"),
            ("redirect_uri", cb),
            ("scope", "profile"),
        ];
        params.push(("device_id", "till-2"));
        let resp = consent(&gate, &params, "alice", "alice-pw", "approve").await;
        let code = param(&location_params(&resp).1, "code").unwrap().to_owned();
        json(exchange(&gate, who, &code, cb, None).await).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(narrowed, till);
    let i = json(post_form(&gate, "/oauth/introspect", Some(who), &[("token", &till)]).await).await;
    assert_eq!(i["scope"], "profile");
    // Revoked: the next authorization of that connection gets a new token.
    assert_eq!(
        post_form(&gate, "/oauth/revoke", Some(who), &[("token", &first)])
            .await
            .status(),
        200
    );
    let again = authorize(vec![]).await;
    assert_ne!(again, first);
    let i =
        json(post_form(&gate, "/oauth/introspect", Some(who), &[("token", &again)]).await).await;
    assert_eq!(i["active"], true);

    // Once the sweep has deleted the revoked rows, neither a revoked generation nor a
    // revoked first token comes back: the connection moves on to a new one.
    let store = gate.store().await;
    for revoked in [&again, &till] {
        assert_eq!(
            post_form(&gate, "/oauth/revoke", Some(who), &[("token", revoked)])
                .await
                .status(),
            200
        );
    }
    assert!(store.sweep(i64::MAX, 0, 100).await.unwrap().unwrap() >= 3);
    let after_sweep = authorize(vec![]).await;
    let till_after_sweep = authorize(vec![("device_id", "till-2")]).await;
    for (new, old) in [(&after_sweep, &again), (&till_after_sweep, &till)] {
        assert_ne!(new, old, "a swept, revoked token was handed out again");
        assert_ne!(new, &first);
    }
    for old in [&first, &again, &till] {
        let i =
            json(post_form(&gate, "/oauth/introspect", Some(who), &[("token", old)]).await).await;
        assert_eq!(i["active"], false);
    }
}

fn code_of(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), 303);
    param(&location_params(resp).1, "code").unwrap().to_owned()
}

async fn active(gate: &Gate, who: (&str, &str), token: &str) -> bool {
    let resp = post_form(gate, "/oauth/introspect", Some(who), &[("token", token)]).await;
    json(resp).await["active"] == true
}

/// RFC 6749 §4.1.3 / RFC 9700 §4.5: a code is bound to its client. Another client
/// presenting it learns nothing, spends nothing and revokes nothing; only the owner's
/// second use is a replay.
#[tokio::test]
async fn another_clients_code_is_neither_spent_nor_revoked_by_it() {
    let Env { gate, .. } = env().await;
    let web = ("web", "web-secret");
    let thief = ("other", "other-secret");
    let code = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    let resp = exchange(&gate, thief, &code, CB, Some(VERIFIER)).await;
    assert_eq!(resp.status(), 400);
    let v = json(resp).await;
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(
        v["error_description"], "the authorization code is invalid or expired",
        "answered like an unknown code"
    );
    // Still the owner's to redeem.
    let resp = exchange(&gate, web, &code, CB, Some(VERIFIER)).await;
    assert_eq!(
        resp.status(),
        200,
        "the other client's attempt spent the code"
    );
    let access = json(resp).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A spent code from another client: no replay revocation of the owner's tokens.
    let resp = exchange(&gate, thief, &code, CB, Some(VERIFIER)).await;
    assert_eq!(json(resp).await["error"], "invalid_grant");
    assert!(
        active(&gate, web, &access).await,
        "another client revoked the owner's tokens"
    );
    // The owner's own second use is a replay: refused, and its tokens are revoked.
    let resp = exchange(&gate, web, &code, CB, Some(VERIFIER)).await;
    assert_eq!(json(resp).await["error"], "invalid_grant");
    assert!(!active(&gate, web, &access).await);
}

/// A wrong verifier or redirect_uri is invalid_grant. From a public client (whose
/// client_id anybody can send) it leaves the code usable; from a confidential client,
/// which authenticated, it spends the code.
#[tokio::test]
async fn a_wrong_verifier_burns_only_a_confidential_clients_code() {
    let Env { gate, .. } = env().await;
    let mobile = |extra: &[(&'static str, &'static str)]| {
        let mut p = vec![
            ("response_type", "code"),
            ("client_id", "mobile"),
            ("redirect_uri", LOOPBACK),
            ("scope", "usage.r"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        p.extend_from_slice(extra);
        p
    };
    let redeem = |code: String, redirect: &'static str, verifier: &'static str| {
        let gate = &gate;
        async move {
            post_form(
                gate,
                "/oauth/token",
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", "mobile"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let code = code_of(&consent(&gate, &mobile(&[]), "alice", "alice-pw", "approve").await);
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX";
    let resp = redeem(code.clone(), LOOPBACK, wrong).await;
    assert_eq!(json(resp).await["error"], "invalid_grant");
    let resp = redeem(code.clone(), "http://127.0.0.1:1/cb", VERIFIER).await;
    assert_eq!(json(resp).await["error"], "invalid_grant");
    let resp = redeem(code.clone(), LOOPBACK, VERIFIER).await;
    assert_eq!(
        resp.status(),
        200,
        "a guess burned the public client's code"
    );
    let v = json(resp).await;
    assert!(v["refresh_token"].as_str().unwrap().starts_with("agrt_"));

    let web = ("web", "web-secret");
    let code = code_of(&consent(&gate, &web_params(&[]), "alice", "alice-pw", "approve").await);
    let resp = exchange(&gate, web, &code, CB, Some(wrong)).await;
    assert_eq!(json(resp).await["error"], "invalid_grant");
    let resp = exchange(&gate, web, &code, CB, Some(VERIFIER)).await;
    assert_eq!(json(resp).await["error"], "invalid_grant", "spent");
}

/// RFC 6749 §4.1.3: the token request repeats redirect_uri only when the authorization
/// request carried it, and then exactly.
#[tokio::test]
async fn redirect_uri_is_required_at_the_token_endpoint_only_when_sent_before() {
    let Env { gate, .. } = env().await;
    let who = ("other", "other-secret");
    let without = [
        ("response_type", "code"),
        ("client_id", "other"),
        ("scope", "usage.r"),
    ];
    let token = |code: String, redirect: Option<&'static str>| {
        let gate = &gate;
        async move {
            let mut form = vec![("grant_type", "authorization_code"), ("code", &code)];
            if let Some(r) = redirect {
                form.push(("redirect_uri", r));
            }
            post_form(gate, "/oauth/token", Some(who), &form).await
        }
    };
    // Left out at authorize: not needed at the token endpoint…
    let code = code_of(&consent(&gate, &without, "alice", "alice-pw", "approve").await);
    assert_eq!(token(code, None).await.status(), 200);
    // …but if sent, it must be the registered one the code went to.
    let code = code_of(&consent(&gate, &without, "alice", "alice-pw", "approve").await);
    assert_eq!(
        json(token(code.clone(), Some("https://evil.example/cb")).await).await["error"],
        "invalid_grant"
    );
    let code = code_of(&consent(&gate, &without, "alice", "alice-pw", "approve").await);
    assert_eq!(
        token(code, Some("https://other.example/cb")).await.status(),
        200
    );
    // Sent at authorize: required, and exactly.
    let mut with = without.to_vec();
    with.push(("redirect_uri", "https://other.example/cb"));
    let code = code_of(&consent(&gate, &with, "alice", "alice-pw", "approve").await);
    let resp = token(code, None).await;
    assert_eq!(json(resp).await["error"], "invalid_grant");
}

/// A config file with the `web` client and the users `names` (password: name + "-pw").
fn users_file(dir: &std::path::Path, names: &[&str]) -> String {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        authgate::certs::generate(&cert, &key, &names, false).unwrap();
    }
    let mut text = format!(
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nhttp_mode = \"serve\"\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [store]\nurl = \"sqlite://{}\"\n[reload]\nwatch = \"off\"\n\
         [[client]]\nid = \"web\"\nsecret = \"web-secret\"\n\
         grants = [\"authorization_code\", \"refresh_token\"]\nscopes = \"profile\"\n\
         redirect_uris = [\"{CB}\"]\nrefresh_tokens = true\n",
        dir.join("store.db").display()
    );
    for name in names {
        let hash = authgate::oauth::password::hash(&format!("{name}-pw")).unwrap();
        text.push_str(&format!(
            "[[user]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\n"
        ));
    }
    text
}

/// Access and refresh token of `user` for the `web` client.
async fn tokens_of(gate: &Gate, user: &str) -> (String, String) {
    let params = [
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("scope", "profile"),
    ];
    let code = code_of(&consent(gate, &params, user, &format!("{user}-pw"), "approve").await);
    let resp = exchange(gate, ("web", "web-secret"), &code, CB, None).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    let get = |k: &str| v[k].as_str().unwrap().to_owned();
    (get("access_token"), get("refresh_token"))
}

async fn refresh(gate: &Gate, refresh_token: &str) -> reqwest::Response {
    post_form(
        gate,
        "/oauth/token",
        Some(("web", "web-secret")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Removing a `[[user]]` from the file and reloading ends that user's grants, like
/// `authgate user remove` does for stored users; other users keep theirs.
#[tokio::test]
async fn removing_a_file_user_revokes_their_tokens_at_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, users_file(dir.path(), &["bob", "carol"])).unwrap();
    let text_without_bob = users_file(dir.path(), &["carol"]);
    let gate = Gate::from_file(&path, dir).await;
    let web = ("web", "web-secret");
    let (bob_access, bob_refresh) = tokens_of(&gate, "bob").await;
    let (carol_access, _) = tokens_of(&gate, "carol").await;
    assert!(active(&gate, web, &bob_access).await);

    std::fs::write(&path, text_without_bob).unwrap();
    gate.reloader.reload("test").await.unwrap();
    assert!(
        !active(&gate, web, &bob_access).await,
        "the removed user's token survived the reload"
    );
    assert_eq!(
        json(refresh(&gate, &bob_refresh).await).await["error"],
        "invalid_grant"
    );
    assert!(
        active(&gate, web, &carol_access).await,
        "other users keep theirs"
    );
}

/// A refresh checks that the grant's user still exists: one removed while authgate was
/// down (no reload saw it go) cannot refresh, and the grant ends.
#[tokio::test]
async fn a_refresh_for_a_user_who_no_longer_exists_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, users_file(dir.path(), &["bob", "carol"])).unwrap();
    let text_without_bob = users_file(dir.path(), &["carol"]);
    let keep = tempfile::tempdir().unwrap();
    let gate = Gate::from_file(&path, keep).await;
    let (bob_access, bob_refresh) = tokens_of(&gate, "bob").await;
    let (_, carol_refresh) = tokens_of(&gate, "carol").await;
    gate.shutdown().await;

    std::fs::write(&path, text_without_bob).unwrap();
    let gate = Gate::from_file(&path, dir).await;
    let resp = refresh(&gate, &bob_refresh).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"], "invalid_grant");
    assert!(
        !active(&gate, ("web", "web-secret"), &bob_access).await,
        "the refused refresh ended the grant"
    );
    assert_eq!(refresh(&gate, &carol_refresh).await.status(), 200);
}

/// A `[[user]]` removed from the file while authgate was stopped: at start, the tokens
/// and unspent codes acting for them are revoked, as a reload would have done. Users of
/// the store, and the subject a client acts for, keep theirs.
#[tokio::test]
async fn a_user_removed_while_stopped_loses_their_tokens_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    // "svc" acts for dave, who is no user: its tokens are not orphans.
    let svc = "[[client]]\nid = \"svc\"\nsecret = \"svc-secret\"\nsubject = \"dave\"\n\
               scopes = \"profile\"\n";
    let with_bob = users_file(dir.path(), &["bob", "carol"]) + svc;
    let without_bob = users_file(dir.path(), &["carol"]) + svc;
    std::fs::write(&path, &with_bob).unwrap();
    let keep = tempfile::tempdir().unwrap();
    let gate = Gate::from_file(&path, keep).await;
    let erin = authgate::store::UserRecord {
        name: "erin".into(),
        password_hash: authgate::oauth::password::hash("erin-pw").unwrap(),
        settings: serde_json::json!({}),
        created_at: 1,
    };
    gate.store().await.insert_user(&erin).await.unwrap();
    let (bob_access, bob_refresh) = tokens_of(&gate, "bob").await;
    let params = [
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("scope", "profile"),
    ];
    let bob_code = code_of(&consent(&gate, &params, "bob", "bob-pw", "approve").await);
    let (carol_access, _) = tokens_of(&gate, "carol").await;
    let (erin_access, _) = tokens_of(&gate, "erin").await;
    let dave_access = common::token(&gate, "svc", "svc-secret").await;
    gate.shutdown().await;

    std::fs::write(&path, without_bob).unwrap();
    let gate = Gate::from_file(&path, dir).await;
    let web = ("web", "web-secret");
    assert!(
        !active(&gate, web, &bob_access).await,
        "the removed user's access token survived the start"
    );
    assert_eq!(
        json(refresh(&gate, &bob_refresh).await).await["error"],
        "invalid_grant"
    );
    let resp = exchange(&gate, web, &bob_code, CB, None).await;
    assert_eq!(json(resp).await["error"], "invalid_grant", "their code too");
    assert!(
        active(&gate, web, &carol_access).await,
        "file users keep theirs"
    );
    assert!(
        active(&gate, web, &erin_access).await,
        "store users keep theirs"
    );
    assert!(
        active(&gate, ("svc", "svc-secret"), &dave_access).await,
        "a client's subject keeps its tokens"
    );
}
