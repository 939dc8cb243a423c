//! The token, revocation, introspection and metadata endpoints, driven over HTTPS.

mod common;

use common::{json, post_form, Gate};

use authgate::store::{TokenKind, TokenRecord};
use authgate::token::{self, Codec, Kind};

const CLIENTS: &str = r#"
[oauth]
token_paths = ["/oauth/token", "/oauth/v1/token"]
access_token_ttl = "30m"
[[client]]
id = "svc"
secret = "svc-secret"
grants = ["client_credentials"]
scopes = "usage.r,account.r,links.wd"
subject = "user-1"
[[client]]
id = "app"
secret = "app secret:with+specials"
grants = ["client_credentials", "refresh_token"]
scopes = "crm.objects.contacts.read crm.objects.contacts.write oauth"
refresh_tokens = true
[[client]]
id = "keeper"
secret = "keeper-secret"
grants = ["refresh_token"]
scopes = "profile"
rotate_refresh_tokens = false
[[client]]
id = "never"
secret = "never-secret"
grants = ["client_credentials"]
scopes = "profile"
access_token_ttl = "never"
[[client]]
id = "phone"
public = true
grants = ["refresh_token"]
scopes = "profile"
"#;

async fn gate() -> Gate {
    Gate::start("http_mode = \"serve\"", "", CLIENTS).await
}

async fn cc(gate: &Gate, id: &str, secret: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    post_form(gate, "/oauth/token", Some((id, secret)), &form).await
}

async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let v = json(resp).await;
    assert_eq!(v["error"], code, "{v}");
    assert!(v["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    v
}

#[tokio::test]
async fn client_credentials_with_basic_and_with_form() {
    let gate = gate().await;
    let resp = cc(&gate, "svc", "svc-secret", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    assert!(resp.headers().contains_key("strict-transport-security"));
    let v = json(resp).await;
    let token = v["access_token"].as_str().unwrap();
    assert!(token.starts_with("agat_") && token.len() == token::TOKEN_LEN);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 1800);
    assert!(v.get("refresh_token").is_none());
    // No scope requested: the client's whole allowance, named in the response in the
    // client's own (hubiC comma) style.
    assert_eq!(v["scope"], "usage.r,account.r,links.wd");

    // client_secret_post at an alias path, with special characters in the secret.
    let resp = post_form(
        &gate,
        "/oauth/v1/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "app secret:with+specials"),
            ("scope", "crm.objects.contacts.read"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    // Granted exactly as requested: no scope member.
    assert!(v.get("scope").is_none(), "{v}");

    // Basic with the same special characters, form-url-encoded per RFC 6749 §2.3.1.
    let resp = cc(&gate, "app", "app%20secret%3Awith%2Bspecials", &[]).await;
    assert_eq!(resp.status(), 200);

    // Tokens that never expire have no expires_in.
    let v = json(cc(&gate, "never", "never-secret", &[]).await).await;
    assert!(v.get("expires_in").is_none(), "{v}");
}

#[tokio::test]
async fn scope_is_narrowed_to_the_allowance_or_refused() {
    let gate = gate().await;
    let v = json(
        cc(
            &gate,
            "svc",
            "svc-secret",
            &[("scope", "usage.r,links.rwd,photos.r")],
        )
        .await,
    )
    .await;
    assert_eq!(v["scope"], "usage.r,links.wd");
    assert_error(
        cc(&gate, "svc", "svc-secret", &[("scope", "photos.r")]).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_error(
        cc(&gate, "svc", "svc-secret", &[("scope", "a[b.r")]).await,
        400,
        "invalid_scope",
    )
    .await;
}

#[tokio::test]
async fn requests_that_are_not_forms_or_repeat_parameters_are_refused() {
    let gate = gate().await;
    let c = gate.client();
    let resp = c
        .post(gate.url("/oauth/token"))
        .basic_auth("svc", Some("svc-secret"))
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .await
        .unwrap();
    let v = assert_error(resp, 400, "invalid_request").await;
    assert!(v["error_description"].as_str().unwrap().contains("JSON"));

    let resp = c
        .post(gate.url("/oauth/token"))
        .basic_auth("svc", Some("svc-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=usage.r&scope=links.w")
        .send()
        .await
        .unwrap();
    let v = assert_error(resp, 400, "invalid_request").await;
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("scope is repeated"));

    let resp = c.get(gate.url("/oauth/token")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");

    let resp = c
        .post(gate.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "x".repeat(20_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    let resp = post_form(&gate, "/oauth/token", Some(("svc", "svc-secret")), &[]).await;
    let v = assert_error(resp, 400, "invalid_request").await;
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("grant_type"));
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(("svc", "svc-secret")),
        &[("grant_type", "password")],
    )
    .await;
    assert_error(resp, 400, "unsupported_grant_type").await;
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(("svc", "svc-secret")),
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
    )
    .await;
    assert_error(resp, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn client_authentication_failures() {
    let gate = gate().await;
    let c = gate.client();
    let raw_basic = |value: &'static str| {
        c.post(gate.url("/oauth/token"))
            .header("authorization", value)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    for value in ["Basic ***not-base64***", "Basic bm8tY29sb24=", "Basic //79"] {
        let resp = raw_basic(value).await.unwrap();
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Basic realm=\"authgate\", charset=\"UTF-8\""
        );
        assert_error(resp, 401, "invalid_client").await;
    }
    let resp = cc(&gate, "svc", "wrong", &[]).await;
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_error(resp, 401, "invalid_client").await;
    assert_error(cc(&gate, "nobody", "x", &[]).await, 401, "invalid_client").await;

    // Form credentials: 401, still with a challenge (RFC 9110 §15.5.2).
    let resp = post_form(
        &gate,
        "/oauth/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", "nope"),
        ],
    )
    .await;
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_error(resp, 401, "invalid_client").await;
    let resp = post_form(
        &gate,
        "/oauth/token",
        None,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_error(resp, 401, "invalid_client").await;
    // Both methods at once.
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(("svc", "svc-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", "svc-secret"),
        ],
    )
    .await;
    assert_error(resp, 400, "invalid_request").await;
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(("svc", "svc-secret")),
        &[("grant_type", "client_credentials"), ("client_id", "app")],
    )
    .await;
    assert_error(resp, 400, "invalid_request").await;
}

/// Puts a refresh token for `client` straight into the store (refresh tokens are issued
/// by the authorization code grant, which comes with the authorize endpoint).
async fn seed_refresh(gate: &Gate, client: &str, scope: &str, expires_at: Option<i64>) -> String {
    let store = gate.store().await;
    let codec = Codec::new(store.token_key().await.unwrap());
    let value = codec.mint(Kind::Refresh).expose().to_owned();
    let now = (authgate::oauth::system_clock())();
    let record = TokenRecord {
        hash: token::hash(&value),
        kind: TokenKind::Refresh,
        client_id: client.into(),
        subject: Some("alice".into()),
        scope: scope.into(),
        family: token::random_id(),
        parent: None,
        extra: serde_json::Map::new(),
        issued_at: now,
        expires_at,
        revoked_at: None,
        used_at: None,
    };
    store.insert_tokens(&[record]).await.unwrap();
    // The grant acts for a user, who must exist for a refresh (a second call finds
    // them there already).
    let user = authgate::store::UserRecord {
        name: "alice".into(),
        password_hash: authgate::oauth::password::DUMMY_HASH.into(),
        settings: serde_json::json!({}),
        created_at: 0,
    };
    match store.insert_user(&user).await {
        Ok(()) | Err(authgate::store::StoreError::Conflict(_)) => {}
        Err(e) => panic!("{e}"),
    }
    value
}

async fn introspect(gate: &Gate, who: (&str, &str), token: &str) -> serde_json::Value {
    let resp = post_form(gate, "/oauth/introspect", Some(who), &[("token", token)]).await;
    assert_eq!(resp.status(), 200);
    json(resp).await
}

const APP: (&str, &str) = ("app", "app secret:with+specials");

#[tokio::test]
async fn refresh_rotates_and_a_replay_revokes_the_grant() {
    let gate = gate().await;
    let scope = "crm.objects.contacts.read crm.objects.contacts.write";
    let r1 = seed_refresh(&gate, "app", scope, None).await;
    let refresh = |token: String, extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", Box::leak(token.into_boxed_str()) as &str),
        ];
        form.extend(extra);
        let gate = &gate;
        async move { post_form(gate, "/oauth/token", Some(APP), &form).await }
    };
    let resp = refresh(r1.clone(), vec![]).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    let a2 = v["access_token"].as_str().unwrap().to_owned();
    let r2 = v["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(v["expires_in"], 1800);
    let i = introspect(&gate, APP, &a2).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], "alice");
    assert_eq!(i["scope"], scope);

    // Narrower scope is allowed, wider is not.
    let v = json(refresh(r2.clone(), vec![("scope", "crm.objects.contacts.read")]).await).await;
    assert_eq!(v["scope"], "crm.objects.contacts.read");
    let r3 = v["refresh_token"].as_str().unwrap().to_owned();
    assert_error(
        refresh(r3.clone(), vec![("scope", "oauth")]).await,
        400,
        "invalid_scope",
    )
    .await;

    // Replaying r1 (already used) revokes every token of the grant.
    assert_error(refresh(r1, vec![]).await, 400, "invalid_grant").await;
    assert_eq!(introspect(&gate, APP, &a2).await["active"], false);
    assert_error(refresh(r3, vec![]).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn refresh_failures_are_invalid_grant() {
    let gate = gate().await;
    let form = |t: &str| {
        vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("refresh_token".to_string(), t.to_string()),
        ]
    };
    let send = |who: (&'static str, &'static str), t: String| {
        let gate = &gate;
        async move {
            let f = form(&t);
            let pairs: Vec<(&str, &str)> =
                f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            post_form(gate, "/oauth/token", Some(who), &pairs).await
        }
    };
    let expired = seed_refresh(&gate, "app", "oauth", Some(1)).await;
    assert_error(send(APP, expired).await, 400, "invalid_grant").await;
    let others = seed_refresh(&gate, "keeper", "profile", None).await;
    assert_error(send(APP, others).await, 400, "invalid_grant").await;
    assert_error(send(APP, "agrt_garbage".into()).await, 400, "invalid_grant").await;
    let forged = format!("agrt_{}", "A".repeat(51));
    assert_error(send(APP, forged).await, 400, "invalid_grant").await;
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(APP),
        &[("grant_type", "refresh_token")],
    )
    .await;
    assert_error(resp, 400, "invalid_request").await;

    // Without rotation the same refresh token keeps working and none is returned.
    let keep = seed_refresh(&gate, "keeper", "profile", None).await;
    for _ in 0..2 {
        let resp = send(("keeper", "keeper-secret"), keep.clone()).await;
        assert_eq!(resp.status(), 200);
        assert!(json(resp).await.get("refresh_token").is_none());
    }
}

#[tokio::test]
async fn revocation_and_introspection_are_scoped_to_the_client() {
    let gate = gate().await;
    let token = json(cc(&gate, "svc", "svc-secret", &[]).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = introspect(&gate, ("svc", "svc-secret"), &token).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "svc");
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(i["sub"], "user-1");
    assert!(i["exp"].as_i64().unwrap() - i["iat"].as_i64().unwrap() == 1800);
    assert!(i["iss"].as_str().unwrap().starts_with("https://"));
    // Another client learns nothing, and cannot revoke it.
    assert_eq!(
        introspect(&gate, APP, &token).await,
        serde_json::json!({"active": false})
    );
    let resp = post_form(&gate, "/oauth/revoke", Some(APP), &[("token", &token)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        introspect(&gate, ("svc", "svc-secret"), &token).await["active"],
        true
    );
    // The owner can; unknown and garbage tokens are 200 too (RFC 7009 §2.2).
    for t in [token.as_str(), "agat_unknown", "whatever"] {
        let resp = post_form(
            &gate,
            "/oauth/revoke",
            Some(("svc", "svc-secret")),
            &[("token", t), ("token_type_hint", "access_token")],
        )
        .await;
        assert_eq!(resp.status(), 200, "{t}");
    }
    assert_eq!(
        introspect(&gate, ("svc", "svc-secret"), &token).await["active"],
        false
    );
    assert_eq!(
        introspect(&gate, ("svc", "svc-secret"), "garbage").await["active"],
        false
    );
    // Both endpoints need client authentication and a token.
    let resp = post_form(&gate, "/oauth/revoke", None, &[("token", &token)]).await;
    assert_error(resp, 401, "invalid_client").await;
    let resp = post_form(&gate, "/oauth/introspect", Some(("svc", "svc-secret")), &[]).await;
    assert_error(resp, 400, "invalid_request").await;
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens() {
    let gate = gate().await;
    let r = seed_refresh(&gate, "keeper", "profile", None).await;
    let who = ("keeper", "keeper-secret");
    let v = json(
        post_form(
            &gate,
            "/oauth/token",
            Some(who),
            &[("grant_type", "refresh_token"), ("refresh_token", &r)],
        )
        .await,
    )
    .await;
    let access = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&gate, who, &access).await["active"], true);
    let resp = post_form(
        &gate,
        "/oauth/revoke",
        Some(who),
        &[("token", &r), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect(&gate, who, &access).await["active"], false);
    assert_eq!(introspect(&gate, who, &r).await["active"], false);
    // A revoked refresh token cannot be exchanged.
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(who),
        &[("grant_type", "refresh_token"), ("refresh_token", &r)],
    )
    .await;
    assert_error(resp, 400, "invalid_grant").await;
}

#[tokio::test]
async fn metadata_lists_what_is_supported() {
    let gate = gate().await;
    let resp = gate
        .client()
        .get(gate.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    let issuer = v["issuer"].as_str().unwrap();
    assert_eq!(v["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(v["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
    assert_eq!(
        v["introspection_endpoint"],
        format!("{issuer}/oauth/introspect")
    );
    assert_eq!(
        v["grant_types_supported"],
        serde_json::json!(["authorization_code", "client_credentials", "refresh_token"])
    );
    assert_eq!(
        v["authorization_endpoint"],
        format!("{issuer}/oauth/authorize")
    );
    assert_eq!(v["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        v["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        v["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(v["authorization_response_iss_parameter_supported"], true);
}

/// Unknown client, wrong secret, missing or malformed credentials, a public client
/// sending a secret: one answer at every endpoint, so that client ids cannot be told
/// apart from the outside.
#[tokio::test]
async fn client_authentication_failures_read_the_same() {
    let gate = gate().await;
    let mut seen = std::collections::BTreeSet::new();
    for path in ["/oauth/token", "/oauth/revoke", "/oauth/introspect"] {
        let extra = [("grant_type", "client_credentials"), ("token", "x")];
        let basic_attempts = [("nobody", "x"), ("svc", "wrong"), ("phone", "a-secret")];
        let form_attempts = [
            vec![("client_id", "nobody")],
            vec![("client_id", "svc")],
            vec![],
        ];
        let attempts = basic_attempts
            .iter()
            .map(|b| (Some(*b), vec![]))
            .chain(form_attempts.into_iter().map(|f| (None, f)));
        for (basic, mut form) in attempts {
            form.extend_from_slice(&extra);
            let resp = post_form(&gate, path, basic, &form).await;
            let v = assert_error(resp, 401, "invalid_client").await;
            seen.insert(v["error_description"].as_str().unwrap().to_owned());
        }
        let resp = gate
            .client()
            .post(gate.url(path))
            .header("authorization", "Basic bm8tY29sb24=")
            .form(&extra)
            .send()
            .await
            .unwrap();
        let v = assert_error(resp, 401, "invalid_client").await;
        seen.insert(v["error_description"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// A public client (no secret) may revoke its tokens (RFC 7009 §5) but not introspect
/// them (RFC 7662 §2.1), and the metadata says exactly that.
#[tokio::test]
async fn public_clients_revoke_but_do_not_introspect_as_the_metadata_says() {
    let gate = gate().await;
    let v = json(
        gate.client()
            .get(gate.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let with_none = serde_json::json!(["client_secret_basic", "client_secret_post", "none"]);
    assert_eq!(v["token_endpoint_auth_methods_supported"], with_none);
    assert_eq!(v["revocation_endpoint_auth_methods_supported"], with_none);
    assert_eq!(
        v["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );

    let r = seed_refresh(&gate, "phone", "profile", None).await;
    let resp = post_form(
        &gate,
        "/oauth/introspect",
        None,
        &[("client_id", "phone"), ("token", &r)],
    )
    .await;
    assert_error(resp, 401, "invalid_client").await;
    let resp = post_form(
        &gate,
        "/oauth/revoke",
        None,
        &[("client_id", "phone"), ("token", &r)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let stored = gate
        .store()
        .await
        .get_token(&token::hash(&r))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.revoked_at.is_some(), "the public client revoked it");
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\nurl = \"sqlite://{}\"\n{CLIENTS}",
        dir.path().join("keep.db").display()
    );
    let gate = Gate::start("http_mode = \"serve\"", "", &store).await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(
            json(cc(&gate, "svc", "svc-secret", &[]).await).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    gate.shutdown().await;
    let gate = Gate::start("http_mode = \"serve\"", "", &store).await;
    for t in &tokens {
        assert_eq!(
            introspect(&gate, ("svc", "svc-secret"), t).await["active"],
            true
        );
    }
}

/// Hub (seed 003), following its documented steps with `config/examples/hub.toml`.
#[tokio::test]
async fn hub_example_follows_the_seed() {
    let up = common::Upstream::start().await;
    let gate = Gate::example(
        "hub",
        &[
            ("HUB_CLIENT_SECRET", "hub-secret-123"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &up.url()),
        ],
    )
    .await;
    async fn steps(gate: &Gate) -> reqwest::Response {
        post_form(
            gate,
            "/oauth/create_token",
            None,
            &[
                ("client_id", "hub-reporting"),
                ("client_secret", "hub-secret-123"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await
    }
    let resp = steps(&gate).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains; preload"
    );
    let v = json(resp).await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(
        v.get("refresh_token").is_none(),
        "Hub has no refresh tokens"
    );
    let first = v["access_token"].as_str().unwrap().to_owned();
    // "Refreshing" is asking again: a new token.
    let second = json(steps(&gate).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    // The token acts as the client's user, with that user's roles.
    let i = introspect(&gate, ("hub-reporting", "hub-secret-123"), &first).await;
    assert_eq!(i["sub"], "user-42");
    assert_eq!(i["scope"], "orders.read reports.read");
    // "add an Authorization header with this bearer token": the API call goes through,
    // and the upstream learns the user and their roles.
    let resp = gate
        .client()
        .get(gate.url("/api/orders"))
        .header("authorization", format!("Bearer {second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-authgate-subject"], "user-42");
    assert_eq!(
        echoed["headers"]["x-authgate-scope"],
        "orders.read reports.read"
    );
    assert_eq!(
        gate.client()
            .get(gate.url("/api/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The default /oauth/token path is not served by this configuration.
    let resp = post_form(
        &gate,
        "/oauth/token",
        None,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn oauth_endpoints_refuse_plain_http_unless_a_trusted_proxy_terminated_tls() {
    let gate = Gate::start(
        "http_mode = \"serve\"\ntrusted_proxies = [\"127.0.0.1\"]",
        "",
        CLIENTS,
    )
    .await;
    let c = gate.client();
    let resp = c
        .post(gate.http_url("/oauth/token"))
        .basic_auth("svc", Some("svc-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(json(resp).await["error_description"]
        .as_str()
        .unwrap()
        .contains("HTTPS"));
    let resp = c
        .post(gate.http_url("/oauth/token"))
        .header("x-forwarded-proto", "https")
        .basic_auth("svc", Some("svc-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn redirect_mode_serves_requests_a_trusted_proxy_received_over_https() {
    let gate = Gate::start(
        "http_mode = \"redirect\"\ntrusted_proxies = [\"127.0.0.1\"]",
        "",
        CLIENTS,
    )
    .await;
    let c = gate.client();
    let resp = c
        .get(gate.http_url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    let resp = c
        .get(gate.http_url("/.well-known/oauth-authorization-server"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "no redirect loop behind a TLS-terminating balancer"
    );
}

#[tokio::test]
async fn removing_a_client_from_the_file_revokes_its_tokens_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\nurl = \"sqlite://{}\"\n",
        dir.path().join("orphans.db").display()
    );
    let gate = Gate::start("http_mode = \"serve\"", "", &format!("{store}{CLIENTS}")).await;
    let token = json(cc(&gate, "svc", "svc-secret", &[]).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = json(cc(&gate, "never", "never-secret", &[]).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    gate.shutdown().await;
    // Restart without the "svc" client.
    let without_svc = CLIENTS.replace(
        "[[client]]\nid = \"svc\"\nsecret = \"svc-secret\"\ngrants = [\"client_credentials\"]\nscopes = \"usage.r,account.r,links.wd\"\nsubject = \"user-1\"\n",
        "",
    );
    assert_ne!(without_svc, CLIENTS);
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!("{store}{without_svc}"),
    )
    .await;
    let s = gate.store().await;
    let gone = s
        .get_token(&authgate::token::hash(&token))
        .await
        .unwrap()
        .unwrap();
    assert!(
        gone.revoked_at.is_some(),
        "the removed client's token was revoked"
    );
    let still = s
        .get_token(&authgate::token::hash(&kept))
        .await
        .unwrap()
        .unwrap();
    assert!(
        still.revoked_at.is_none(),
        "other clients' tokens are untouched"
    );
}
