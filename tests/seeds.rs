//! The token side of the seed systems that also have an authorize page (hubiC, HubSpot),
//! with their example configs, and a real OAuth client library (the `oauth2` crate)
//! driving authgate's endpoints.
//!
//! Refresh tokens come from the authorization code grant, which arrives with the
//! authorize endpoint; until then these tests put one in the store directly.

mod common;

use common::{json, post_form, Gate};

use authgate::store::{TokenKind, TokenRecord};
use authgate::token::{self, Codec, Kind};

async fn seed_refresh(gate: &Gate, client: &str, scope: &str) -> String {
    let store = gate.store().await;
    let codec = Codec::new(store.token_key().await.unwrap());
    let value = codec.mint(Kind::Refresh).expose().to_owned();
    let record = TokenRecord {
        hash: token::hash(&value),
        kind: TokenKind::Refresh,
        client_id: client.into(),
        subject: Some("user@example.com".into()),
        scope: scope.into(),
        family: token::random_id(),
        parent: None,
        extra: serde_json::Map::new(),
        issued_at: (authgate::oauth::system_clock())(),
        expires_at: None,
        revoked_at: None,
        used_at: None,
    };
    store.insert_tokens(&[record]).await.unwrap();
    // The grant acts for a user, who must exist for a refresh (a second call finds
    // them there already).
    let user = authgate::store::UserRecord {
        name: "user@example.com".into(),
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

/// `config/examples/hubic.toml` with its three routes pointed at `up`.
async fn hubic_gate(up: &common::Upstream) -> Gate {
    let url = up.url();
    Gate::example(
        "hubic",
        &[
            ("HUBIC_CLIENT_SECRET", "hubic-secret"),
            ("HUBIC_DEMO_PASSWORD", "demo-password"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &url),
            ("AUTHGATE_ROUTE__1__UPSTREAM", &url),
            ("AUTHGATE_ROUTE__2__UPSTREAM", &url),
        ],
    )
    .await
}

/// `config/examples/hubspot.toml` with its route pointed at `up`.
async fn hubspot_gate(up: &common::Upstream) -> Gate {
    Gate::example(
        "hubspot",
        &[
            ("HUBSPOT_CLIENT_SECRET", "hs-secret"),
            ("HUBSPOT_DEMO_PASSWORD", "demo-password"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &up.url()),
        ],
    )
    .await
}

/// hubiC: refresh with Basic, then with form credentials; JSON refused; the refresh
/// token stays valid (no new one in the response).
#[tokio::test]
async fn hubic_token_side_and_api_calls() {
    let up = common::Upstream::start().await;
    let gate = hubic_gate(&up).await;
    let refresh = seed_refresh(&gate, "api_hubic_sandbox", "usage.r,account.r,links.wd").await;
    let creds = ("api_hubic_sandbox", "hubic-secret");

    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(creds),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 6 * 3600);
    assert!(v["access_token"].as_str().unwrap().starts_with("agat_"));
    assert!(v.get("refresh_token").is_none());

    // "make your first call on hubic API … in the HTTP Authorization header, with the
    // keyword Bearer": GET account (account.r), DELETE a link (links.wd), but no link
    // listing (links.r was not granted).
    let bearer = format!("Bearer {}", v["access_token"].as_str().unwrap());
    let c = gate.client();
    let resp = c
        .get(gate.url("/1.0/account"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-authgate-subject"], "user@example.com");
    let resp = c
        .delete(gate.url("/1.0/account/links/x"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(gate.url("/1.0/account/links"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"links.r\""));
    assert_eq!(
        c.get(gate.url("/1.0/account/usage"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let resp = post_form(
        &gate,
        "/oauth/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", creds.0),
            ("client_secret", creds.1),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200, "refresh with form credentials");

    let resp = gate
        .client()
        .post(gate.url("/oauth/token"))
        .basic_auth(creds.0, Some(creds.1))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"grant_type": "refresh_token", "refresh_token": refresh})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v = json(resp).await;
    assert_eq!(v["error"], "invalid_request");
    assert!(v["error_description"].as_str().unwrap().contains("JSON"));
}

/// HubSpot: credentials in the body at /oauth/v1/token; 30-minute tokens; the refresh
/// token is not rotated.
#[tokio::test]
async fn hubspot_token_side_and_api_calls() {
    let up = common::Upstream::start().await;
    let gate = hubspot_gate(&up).await;
    let refresh = seed_refresh(&gate, "hubspot-app", "crm.objects.contacts.read").await;
    let resp = post_form(
        &gate,
        "/oauth/v1/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "hubspot-app"),
            ("client_secret", "hs-secret"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(v["expires_in"], 1800);
    // Not rotated: the response has no new refresh token, the old one goes on working.
    assert!(v.get("refresh_token").is_none(), "{v}");
    assert!(v.get("scope").is_none());

    // "GET …/contacts/v1/lists/all/contacts/all Authorization: Bearer …", within the
    // scopes defined at the outset: reading works, writing does not.
    let bearer = format!("Bearer {}", v["access_token"].as_str().unwrap());
    let c = gate.client();
    let path = "/contacts/v1/lists/all/contacts/all";
    let resp = c
        .get(gate.url(path))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(gate.url(path))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"crm.objects.contacts.write\""));
    assert_eq!(up.hits(), 1);
}

use common::flow;

/// hubiC (seed 000), every documented step: authorize (with state) → code → token with
/// Basic → API call with Bearer → refresh with Basic; errors come back as error and
/// error_description on the redirect URI.
#[tokio::test]
async fn hubic_documented_flow() {
    let up = common::Upstream::start().await;
    let gate = hubic_gate(&up).await;
    let cb = "https://app.example.com/hubic/callback";
    let params = [
        ("client_id", "api_hubic_sandbox"),
        ("redirect_uri", cb),
        ("scope", "usage.r,account.r,links.wd"),
        ("response_type", "code"),
        ("state", "RandomString_Xa3"),
    ];
    let resp = flow::consent(
        &gate,
        "/oauth/auth",
        &params,
        "demo@hubic.example",
        "demo-password",
        "approve",
    )
    .await;
    assert_eq!(resp.status(), 303);
    let (base, p) = flow::location(&resp);
    assert_eq!(base, cb);
    assert_eq!(flow::param(&p, "state"), Some("RandomString_Xa3"));
    // "Look at our url, there is some interesting parameters: Code, Scope, State".
    assert_eq!(flow::param(&p, "scope"), Some("usage.r,account.r,links.wd"));
    let code = flow::param(&p, "code").unwrap().to_owned();

    let creds = ("api_hubic_sandbox", "hubic-secret");
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(creds),
        &[
            ("grant_type", "authorization_code"),
            ("redirect_uri", cb),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    for field in ["access_token", "expires_in", "refresh_token", "token_type"] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
    let access = v["access_token"].as_str().unwrap().to_owned();
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let resp = gate
        .client()
        .get(gate.url("/1.0/account"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(resp).await["headers"]["x-authgate-subject"],
        "demo@hubic.example"
    );

    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(creds),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert!(
        v.get("access_token").is_some()
            && v.get("expires_in").is_some()
            && v.get("token_type").is_some()
    );

    // "User can refuse to give you access, or your scope can be malformed."
    for (extra, error) in [(("scope", "usage.r,links[x"), "invalid_scope")] {
        let mut bad = params.to_vec();
        bad.retain(|(k, _)| *k != extra.0);
        bad.push(extra);
        let resp = gate
            .client()
            .get(flow::url(&gate, "/oauth/auth", &bad))
            .send()
            .await
            .unwrap();
        let (_, p) = flow::location(&resp);
        assert_eq!(flow::param(&p, "error"), Some(error));
        assert!(flow::param(&p, "error_description").is_some());
    }
    let resp = flow::consent(
        &gate,
        "/oauth/auth",
        &params,
        "demo@hubic.example",
        "demo-password",
        "deny",
    )
    .await;
    let (_, p) = flow::location(&resp);
    assert_eq!(flow::param(&p, "error"), Some("access_denied"));
    assert!(flow::param(&p, "error_description").is_some());
}

/// HubSpot (seed 004): authorize with state → code → POST /oauth/v1/token with the
/// client credentials in the body → {access_token, refresh_token, expires_in: 1800} →
/// contacts API with Bearer → refresh.
#[tokio::test]
async fn hubspot_documented_flow() {
    let up = common::Upstream::start().await;
    let gate = hubspot_gate(&up).await;
    let cb = "https://monappli.com/callback";
    // The documented URL: client_id, scope, redirect_uri, and no response_type.
    let documented = [
        ("client_id", "hubspot-app"),
        ("scope", "crm.objects.contacts.read"),
        ("redirect_uri", cb),
    ];
    let resp = flow::consent(
        &gate,
        "/oauth/authorize",
        &documented,
        "marketing@example.com",
        "demo-password",
        "approve",
    )
    .await;
    assert_eq!(resp.status(), 303);
    let (base, p) = flow::location(&resp);
    assert_eq!(base, cb);
    assert!(flow::param(&p, "error").is_none(), "{p:?}");
    assert!(flow::param(&p, "code").is_some());
    // "add a setting state": it comes back.
    let mut params = documented.to_vec();
    params.push(("state", "from-settings-page"));
    let resp = flow::consent(
        &gate,
        "/oauth/authorize",
        &params,
        "marketing@example.com",
        "demo-password",
        "approve",
    )
    .await;
    let (_, p) = flow::location(&resp);
    assert_eq!(flow::param(&p, "state"), Some("from-settings-page"));
    let code = flow::param(&p, "code").unwrap().to_owned();
    let resp = post_form(
        &gate,
        "/oauth/v1/token",
        None,
        &[
            ("client_id", "hubspot-app"),
            ("client_secret", "hs-secret"),
            ("grant_type", "authorization_code"),
            ("redirect_uri", cb),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(v["expires_in"], 1800);
    let access = v["access_token"].as_str().unwrap().to_owned();
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let resp = gate
        .client()
        .get(gate.url("/contacts/v1/lists/all/contacts/all"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // "refresh_token=JETON_ACTUALISATION", the one from the first response, every time.
    for _ in 0..2 {
        let resp = post_form(
            &gate,
            "/oauth/v1/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "hubspot-app"),
                ("client_secret", "hs-secret"),
                ("refresh_token", &refresh),
            ],
        )
        .await;
        assert_eq!(resp.status(), 200);
        let v = json(resp).await;
        assert!(v["access_token"].as_str().unwrap().starts_with("agat_"));
        assert_eq!(v["expires_in"], 1800);
    }
}

/// HubRise (seed 001), as documented: no response_type or grant_type, prefill
/// parameters, code + credentials in the body, ids and names in the response, tokens
/// that never expire, X-Access-Token calls bound to the location; and the installed-app
/// (out-of-band) variant.
#[tokio::test]
async fn hubrise_documented_flow() {
    let up = common::Upstream::start().await;
    let gate = Gate::example(
        "hubrise",
        &[
            ("HUBRISE_CLIENT_SECRET", "hr-secret"),
            ("HUBRISE_DEMO_PASSWORD", "demo-password"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &up.url()),
            ("AUTHGATE_ROUTE__1__UPSTREAM", &up.url()),
        ],
    )
    .await;
    let cb = "https://pos.example.com/oauth_callback";
    let web = [
        ("redirect_uri", cb),
        ("client_id", "hubrise-pos"),
        ("scope", "location[orders.write,customer_list.write,]"),
        ("country", "FR"),
        ("account_name", "Aux Délices"),
        ("location_name", "Paris"),
    ];
    let resp = flow::consent(
        &gate,
        "/oauth2/v1/authorize",
        &web,
        "bella@example.com",
        "demo-password",
        "approve",
    )
    .await;
    assert_eq!(resp.status(), 303);
    let code = flow::param(&flow::location(&resp).1, "code")
        .unwrap()
        .to_owned();
    let token_request = |code: String| {
        let gate = &gate;
        async move {
            post_form(
                gate,
                "/oauth2/v1/token",
                None,
                &[
                    ("code", &code),
                    ("client_id", "hubrise-pos"),
                    ("client_secret", "hr-secret"),
                ],
            )
            .await
        }
    };
    let resp = token_request(code.clone()).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert!(v.get("expires_in").is_none());
    for (k, want) in [
        ("account_id", "3r4s3"),
        ("location_id", "3r4s3-1"),
        ("catalog_id", "psmlf"),
        ("customer_list_id", "xab66"),
        ("account_name", "Bella Pizza"),
        ("location_name", "Paris"),
        ("catalog_name", "Bella Pizza"),
        ("customer_list_name", "Bella Pizza"),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    let token = v["access_token"].as_str().unwrap().to_owned();
    // "Note that the request will fail if the authorisation code has expired, or has
    // already been used."
    assert_eq!(token_request(code).await.status(), 400);
    // The reuse revoked the token; authorize again for a new one.
    let resp = flow::consent(
        &gate,
        "/oauth2/v1/authorize",
        &web,
        "bella@example.com",
        "demo-password",
        "approve",
    )
    .await;
    let code = flow::param(&flow::location(&resp).1, "code")
        .unwrap()
        .to_owned();
    let token = {
        let _ = token;
        json(token_request(code).await).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // "Re-authorising the same location with the same client always returns the same
    // token"; a device_id forces a new one.
    let reauthorize = |extra: Option<(&'static str, &'static str)>| {
        let gate = &gate;
        let mut params = web.to_vec();
        params.extend(extra);
        async move {
            let resp = flow::consent(
                gate,
                "/oauth2/v1/authorize",
                &params,
                "bella@example.com",
                "demo-password",
                "approve",
            )
            .await;
            let code = flow::param(&flow::location(&resp).1, "code")
                .unwrap()
                .to_owned();
            let resp = post_form(
                gate,
                "/oauth2/v1/token",
                None,
                &[
                    ("code", &code),
                    ("client_id", "hubrise-pos"),
                    ("client_secret", "hr-secret"),
                ],
            )
            .await;
            json(resp).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(reauthorize(None).await, token);
    assert_ne!(reauthorize(Some(("device_id", "kiosk-1"))).await, token);
    let resp = gate
        .client()
        .get(gate.url("/v1/location"))
        .header("x-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "location details");
    assert_eq!(
        json(resp).await["headers"]["x-authgate-location-id"],
        "3r4s3-1"
    );
    let resp = gate
        .client()
        .post(gate.url("/v1/location/orders"))
        .header("x-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "orders.write was granted");
    let resp = gate
        .client()
        .get(gate.url("/v1/location"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "HubRise calls use X-Access-Token only");

    // Installed app: the code is shown in the browser.
    let mut oob = web.to_vec();
    oob[0] = ("redirect_uri", "urn:ietf:wg:oauth:2.0:oob");
    let resp = flow::consent(
        &gate,
        "/oauth2/v1/authorize",
        &oob,
        "bella@example.com",
        "demo-password",
        "approve",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    let code = html
        .split("id=\"code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(token_request(code).await.status(), 200);
}

mod oauth2_client {
    use super::*;
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthType, ClientId, ClientSecret, IntrospectionUrl, RefreshToken, RevocationUrl, Scope,
        StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
    };

    const CLIENTS: &str = r#"
[[client]]
id = "lib"
secret = "lib-secret"
grants = ["client_credentials", "refresh_token"]
scopes = "reports.read orders.rw"
refresh_tokens = true
"#;

    fn http(gate: &Gate) -> oauth2::reqwest::Client {
        oauth2::reqwest::Client::builder()
            .add_root_certificate(oauth2::reqwest::Certificate::from_pem(&gate.cert_pem).unwrap())
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn the_oauth2_crate_gets_refreshes_introspects_and_revokes() {
        let gate = Gate::start("http_mode = \"serve\"", "", CLIENTS).await;
        let http = http(&gate);
        let client = BasicClient::new(ClientId::new("lib".into()))
            .set_client_secret(ClientSecret::new("lib-secret".into()))
            .set_token_uri(TokenUrl::new(gate.url("/oauth/token")).unwrap())
            .set_revocation_url(RevocationUrl::new(gate.url("/oauth/revoke")).unwrap())
            .set_introspection_url(IntrospectionUrl::new(gate.url("/oauth/introspect")).unwrap());

        // Client credentials, HTTP Basic (the crate's default).
        let tok = client
            .exchange_client_credentials()
            .add_scope(Scope::new("reports.read".into()))
            .request_async(&http)
            .await
            .unwrap();
        assert!(tok.access_token().secret().starts_with("agat_"));
        assert_eq!(tok.expires_in().unwrap().as_secs(), 3600);
        assert!(tok.refresh_token().is_none());

        // Client credentials, credentials in the body.
        let body_client = client.clone().set_auth_type(AuthType::RequestBody);
        let tok2 = body_client
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .unwrap();
        let scopes: Vec<String> = tok2
            .scopes()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(scopes, vec!["reports.read", "orders.rw"]);

        // Refresh.
        let refresh = seed_refresh(&gate, "lib", "reports.read orders.rw").await;
        let refreshed = client
            .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
            .request_async(&http)
            .await
            .unwrap();
        assert!(refreshed.refresh_token().is_some());
        // The used refresh token is rejected (and the grant revoked).
        let replay = client
            .exchange_refresh_token(&RefreshToken::new(refresh))
            .request_async(&http)
            .await;
        assert!(replay.is_err());

        // Introspect, revoke, introspect again.
        let info = client
            .introspect(tok.access_token())
            .request_async(&http)
            .await
            .unwrap();
        assert!(info.active());
        assert_eq!(info.client_id().map(|c| c.as_str()), Some("lib"));
        client
            .revoke_token(StandardRevocableToken::AccessToken(
                tok.access_token().clone(),
            ))
            .unwrap()
            .request_async(&http)
            .await
            .unwrap();
        let info = client
            .introspect(tok.access_token())
            .request_async(&http)
            .await
            .unwrap();
        assert!(!info.active());
    }

    #[tokio::test]
    async fn the_oauth2_crate_reports_rfc_errors() {
        let gate = Gate::start("http_mode = \"serve\"", "", CLIENTS).await;
        let wrong = BasicClient::new(ClientId::new("lib".into()))
            .set_client_secret(ClientSecret::new("nope".into()))
            .set_token_uri(TokenUrl::new(gate.url("/oauth/token")).unwrap());
        let err = wrong
            .exchange_client_credentials()
            .request_async(&http(&gate))
            .await
            .unwrap_err();
        match err {
            oauth2::RequestTokenError::ServerResponse(r) => {
                assert_eq!(r.error().as_ref(), "invalid_client");
            }
            other => panic!("expected an RFC 6749 error, got {other:?}"),
        }
    }
}
