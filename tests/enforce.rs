//! Enforcement on proxied routes: token extraction, the cached token table, scope per
//! route and method, identity headers, and the RFC 6750 responses.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::{json, post_form, token, Gate, Upstream};

fn config(upstream: &str) -> String {
    format!(
        r#"
[oauth]
access_token_ttl = "60s"
[[client]]
id = "hubic-app"
secret = "s1"
scopes = "usage.r,account.r,links.wd"
subject = "alice"
[[client]]
id = "hubrise-app"
secret = "s2"
scopes = "location[orders.write,customer_list.write],profile"
[[client]]
id = "hubspot-app"
secret = "s3"
scopes = "crm.objects.contacts.read oauth"
[[route]]
path = "/links"
upstream = "{upstream}"
perimeter = "links"
[[route]]
path = "/account"
upstream = "{upstream}"
perimeter = "account"
pass_token = true
[[route]]
path = "/orders"
upstream = "{upstream}"
perimeter = "orders"
level = "location"
token_headers = ["x-access-token"]
[[route]]
path = "/contacts"
upstream = "{upstream}"
scopes = ["crm.objects.contacts.read"]
allow_query_token = true
[[route]]
path = "/any"
upstream = "{upstream}"
scopes = []
[[route]]
path = "/public"
upstream = "{upstream}"
public = true
"#
    )
}

async fn setup() -> (Gate, Upstream, Arc<AtomicI64>) {
    let up = Upstream::start().await;
    let now = Arc::new(AtomicI64::new(2_000_000_000));
    let n = now.clone();
    let gate = Gate::start_with_clock(
        "http_mode = \"serve\"",
        "",
        &config(&up.url()),
        Arc::new(move || n.load(Ordering::SeqCst)),
    )
    .await;
    (gate, up, now)
}

async fn call(
    gate: &Gate,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gate
        .client()
        .request(method.parse().unwrap(), gate.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn statuses_and_challenges() {
    let (gate, up, _) = setup().await;
    let t = token(&gate, "hubic-app", "s1").await;

    let resp = call(&gate, "GET", "/links/x", &[]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"authgate\""
    );
    assert!(resp.headers().contains_key("strict-transport-security"));
    assert_eq!(json(resp).await["error"], "unauthorized");

    let resp = call(
        &gate,
        "GET",
        "/links/x",
        &[("authorization", "Bearer agat_nonsense")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"authgate\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(json(resp).await["error"], "invalid_token");

    let resp = call(&gate, "GET", "/links/x", &[("authorization", &bearer(&t))]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"authgate\", error=\"insufficient_scope\", scope=\"links.r\""
    );
    assert!(resp.headers().contains_key("strict-transport-security"));
    assert_eq!(json(resp).await["error"], "insufficient_scope");

    let resp = call(
        &gate,
        "GET",
        "/links/x",
        &[("authorization", "Bearer a"), ("x-access-token", "b")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"], "invalid_request");
    let resp = call(&gate, "GET", &format!("/links/x?access_token={t}"), &[]).await;
    assert_eq!(
        resp.status(),
        400,
        "query tokens are refused where not allowed"
    );

    assert_eq!(up.hits(), 0, "no refused request reached the upstream");
}

#[tokio::test]
async fn perimeter_rights_follow_the_method() {
    let (gate, up, _) = setup().await;
    let t = bearer(&token(&gate, "hubic-app", "s1").await);
    for (method, status) in [
        ("GET", 403),
        ("HEAD", 403),
        ("POST", 200),
        ("PUT", 200),
        ("PATCH", 200),
        ("DELETE", 200),
    ] {
        let resp = call(&gate, method, "/links/1", &[("authorization", &t)]).await;
        assert_eq!(resp.status(), status, "{method}");
    }
    assert_eq!(
        call(&gate, "GET", "/account/me", &[("authorization", &t)])
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&gate, "POST", "/account/me", &[("authorization", &t)])
            .await
            .status(),
        403
    );
    assert_eq!(up.hits(), 5);
}

#[tokio::test]
async fn identity_headers_replace_spoofs_and_the_token_is_removed() {
    let (gate, _up, _) = setup().await;
    let t = token(&gate, "hubic-app", "s1").await;
    let resp = call(
        &gate,
        "DELETE",
        "/links/1",
        &[
            ("authorization", &bearer(&t)),
            ("x-authgate-client-id", "evil"),
            ("x-authgate-role", "admin"),
        ],
    )
    .await;
    let v = json(resp).await;
    let h = &v["headers"];
    assert_eq!(h["x-authgate-client-id"], "hubic-app");
    assert_eq!(h["x-authgate-subject"], "alice");
    assert_eq!(h["x-authgate-scope"], "usage.r,account.r,links.wd");
    assert!(h.get("x-authgate-role").is_none());
    assert!(
        h.get("authorization").is_none(),
        "the token is not forwarded by default"
    );
    // pass_token = true forwards it.
    let v = json(
        call(
            &gate,
            "GET",
            "/account/me",
            &[("authorization", &bearer(&t))],
        )
        .await,
    )
    .await;
    assert_eq!(v["headers"]["authorization"], bearer(&t));
}

#[tokio::test]
async fn hubrise_access_levels_and_x_access_token() {
    let (gate, _up, _) = setup().await;
    let t = token(&gate, "hubrise-app", "s2").await;
    // This route accepts only X-Access-Token.
    assert_eq!(
        call(&gate, "POST", "/orders", &[("authorization", &bearer(&t))])
            .await
            .status(),
        401
    );
    assert_eq!(
        call(&gate, "POST", "/orders", &[("x-access-token", &t)])
            .await
            .status(),
        200
    );
    let resp = call(&gate, "GET", "/orders", &[("x-access-token", &t)]).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"location[orders.read]\""));
    // Routes with default headers take both.
    assert_eq!(
        call(&gate, "GET", "/any", &[("x-access-token", &t)])
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&gate, "GET", "/any", &[("authorization", &bearer(&t))])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn hubspot_scopes_and_query_tokens_where_allowed() {
    let (gate, _up, _) = setup().await;
    let hs = token(&gate, "hubspot-app", "s3").await;
    let other = token(&gate, "hubic-app", "s1").await;
    assert_eq!(
        call(
            &gate,
            "GET",
            "/contacts/v1/lists",
            &[("authorization", &bearer(&hs))]
        )
        .await
        .status(),
        200
    );
    let resp = call(
        &gate,
        "GET",
        "/contacts/v1/lists",
        &[("authorization", &bearer(&other))],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"crm.objects.contacts.read\""));
    assert_eq!(
        call(&gate, "GET", &format!("/contacts/x?access_token={hs}"), &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn expiry_is_exact_and_revocation_is_immediate() {
    let (gate, _up, now) = setup().await;
    let start = now.load(Ordering::SeqCst);
    let t = bearer(&token(&gate, "hubic-app", "s1").await);
    assert_eq!(
        call(&gate, "POST", "/links/1", &[("authorization", &t)])
            .await
            .status(),
        200
    );
    now.store(start + 59, Ordering::SeqCst);
    assert_eq!(
        call(&gate, "POST", "/links/1", &[("authorization", &t)])
            .await
            .status(),
        200
    );
    now.store(start + 60, Ordering::SeqCst);
    assert_eq!(
        call(&gate, "POST", "/links/1", &[("authorization", &t)])
            .await
            .status(),
        401,
        "expired at its second"
    );

    now.store(start, Ordering::SeqCst);
    let raw = token(&gate, "hubic-app", "s1").await;
    assert_eq!(
        call(
            &gate,
            "POST",
            "/links/1",
            &[("authorization", &bearer(&raw))]
        )
        .await
        .status(),
        200
    );
    let resp = post_form(
        &gate,
        "/oauth/revoke",
        Some(("hubic-app", "s1")),
        &[("token", &raw)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        call(
            &gate,
            "POST",
            "/links/1",
            &[("authorization", &bearer(&raw))]
        )
        .await
        .status(),
        401,
        "revoked: refused on the very next request"
    );
}

#[tokio::test]
async fn public_routes_need_no_token_and_refusals_never_reach_the_upstream() {
    let (gate, up, _) = setup().await;
    assert_eq!(call(&gate, "GET", "/public/x", &[]).await.status(), 200);
    let v = json(call(&gate, "GET", "/public/x", &[("x-authgate-subject", "root")]).await).await;
    assert!(
        v["headers"].get("x-authgate-subject").is_none(),
        "spoofed identity stripped on public routes too"
    );
    for _ in 0..200 {
        assert_eq!(
            call(
                &gate,
                "GET",
                "/any",
                &[("authorization", "Bearer agat_garbage")]
            )
            .await
            .status(),
            401
        );
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn encoded_or_odd_paths_cannot_slip_into_a_laxer_route() {
    let (gate, up, _) = setup().await;
    let t = bearer(&token(&gate, "hubic-app", "s1").await);
    // %6C is "l": canonically /links/1, which needs links.r for GET (not granted).
    let resp = call(&gate, "GET", "/%6Cinks/1", &[("authorization", &t)]).await;
    assert_eq!(resp.status(), 403);
    // The canonical path is what the upstream sees.
    let resp = call(&gate, "DELETE", "/%6Cinks/1", &[("authorization", &t)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["uri"], "/links/1");
    // (reqwest itself normalizes %2e%2e before sending; the unit tests cover it.)
    for path in ["//links/1", "/account/x%2F..%2Flinks", "/links;x=1"] {
        let resp = call(&gate, "GET", path, &[("authorization", &t)]).await;
        assert_eq!(resp.status(), 400, "{path}");
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_query_token_does_not_reach_the_upstream() {
    let (gate, _up, _) = setup().await;
    let hs = token(&gate, "hubspot-app", "s3").await;
    let resp = call(
        &gate,
        "GET",
        &format!("/contacts/x?a=1&access_token={hs}&b=2"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["uri"], "/contacts/x?a=1&b=2");
}
