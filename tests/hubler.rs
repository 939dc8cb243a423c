//! The account + secret grant, following Hubler's documentation (seed 002) with
//! `config/examples/hubler.toml`.

mod common;

use common::{json, Gate};

const ACCOUNT: &str = "5723073937d63a18396a1bae";
const USER: &str = "5723073937d63a18396a1baf";

async fn hubler() -> Gate {
    Gate::example("hubler", &[("HUBLER_ACCOUNT_SECRET", "hubble")]).await
}

#[tokio::test]
async fn the_token_opens_hublers_public_apis() {
    let up = common::Upstream::start().await;
    let gate = Gate::example(
        "hubler",
        &[
            ("HUBLER_ACCOUNT_SECRET", "hubble"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &up.url()),
        ],
    )
    .await;
    let body = format!(r#"{{"account":"{ACCOUNT}","secret":"hubble","user_id":"{USER}"}}"#);
    let token = json(post_json(&gate, &body).await).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = gate
        .client()
        .get(gate.url("/v1/employees"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-authgate-subject"], USER);
    assert_eq!(echoed["headers"]["x-authgate-account-id"], ACCOUNT);
    assert_eq!(echoed["headers"]["x-authgate-user-id"], USER);
    assert_eq!(
        gate.client()
            .get(gate.url("/v1/employees"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

async fn post_json(gate: &Gate, body: &str) -> reqwest::Response {
    gate.client()
        .post(gate.url("/v1/auth/token"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn expect(resp: reqwest::Response, status: u16, error: &str, text: &str) {
    assert_eq!(resp.status(), status);
    let v = json(resp).await;
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["error_description"], text, "{v}");
}

#[tokio::test]
async fn a_token_for_the_account_and_for_one_of_its_users() {
    let gate = hubler().await;
    let store = gate.store().await;
    for (body, subject) in [
        (
            format!(r#"{{"account":"{ACCOUNT}","secret":"hubble"}}"#),
            ACCOUNT,
        ),
        (
            format!(r#"{{"account":"{ACCOUNT}","secret":"hubble","user_id":"{USER}"}}"#),
            USER,
        ),
    ] {
        let resp = post_json(&gate, &body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let v = json(resp).await;
        assert_eq!(v["status"], "success");
        let token = v["token"].as_str().unwrap();
        assert!(token.starts_with("agat_"));
        let record = store
            .get_token(&authgate::token::hash(token))
            .await
            .unwrap()
            .expect("stored before the response");
        assert_eq!(record.subject.as_deref(), Some(subject));
        assert_eq!(record.scope, "employees.read timesheets.rw");
        assert_eq!(record.extra["account_id"], ACCOUNT);
    }
    // A form body works too.
    let resp = gate
        .client()
        .post(gate.url("/v1/auth/token"))
        .form(&[("account", ACCOUNT), ("secret", "hubble")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn every_documented_error() {
    let gate = hubler().await;
    let v = "Validation";
    let cases = [
        (
            r#"{"secret":"hubble"}"#.to_string(),
            400,
            "The request is missing an account.",
        ),
        (
            format!(r#"{{"account":"{ACCOUNT}"}}"#),
            400,
            "The request is missing a secret.",
        ),
        (
            format!(r#"{{"account":"{ACCOUNT}","secret":"hubble","scope":"x"}}"#),
            400,
            "The request includes an unsupported parameter scope.",
        ),
        (
            format!(r#"{{"account":"{ACCOUNT}","account":"{ACCOUNT}","secret":"hubble"}}"#),
            400,
            "The request repeats the parameter account.",
        ),
        (
            r#"{"account":"5723","secret":"hubble"}"#.into(),
            400,
            "The account must be object id.",
        ),
        (
            format!(r#"{{"account":"{ACCOUNT}","secret":12345}}"#),
            400,
            "The secret must be str",
        ),
        (
            r#"{"account":"000000000000000000000000","secret":"hubble"}"#.into(),
            400,
            "The account not found!",
        ),
        (
            format!(r#"{{"account":"{ACCOUNT}","secret":"wrong"}}"#),
            401,
            "User authentication failed: invalid account or secret.",
        ),
        (
            format!(
                r#"{{"account":"{ACCOUNT}","secret":"hubble","user_id":"ffffffffffffffffffffffff"}}"#
            ),
            401,
            "User authentication failed: the user does not belong to this account.",
        ),
        (
            "[1,2]".into(),
            400,
            "The request body must be a JSON object.",
        ),
        (
            "{not json".into(),
            400,
            "The request body must be a JSON object.",
        ),
    ];
    for (body, status, text) in cases {
        expect(post_json(&gate, &body).await, status, v, text).await;
    }
    // Repeated form parameter, other content types, methods, sizes.
    let c = gate.client();
    let resp = c
        .post(gate.url("/v1/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("account={ACCOUNT}&secret=hubble&secret=hubble"))
        .send()
        .await
        .unwrap();
    expect(resp, 400, v, "The request repeats the parameter secret.").await;
    let resp = c
        .post(gate.url("/v1/auth/token"))
        .body("<xml/>")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c.get(gate.url("/v1/auth/token")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = post_json(&gate, &format!(r#"{{"pad":"{}"}}"#, "x".repeat(20_000))).await;
    assert_eq!(resp.status(), 413);
}

const GRANT: &str = "urn:authgate:params:oauth:grant-type:account-secret";

/// POSTs `form` to the token endpoint, with optional Basic credentials.
async fn token_form(
    gate: &Gate,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    common::post_form(gate, "/oauth/token", basic, form).await
}

/// An RFC 6749 §5.2 error: status, `error`, no caching; returns the description.
async fn rfc_error(resp: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let v = json(resp).await;
    assert_eq!(v["error"], code, "{v}");
    v["error_description"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_token_endpoint_serves_the_grant_as_an_extension_grant() {
    let up = common::Upstream::start().await;
    let gate = Gate::example(
        "hubler",
        &[
            ("HUBLER_ACCOUNT_SECRET", "hubble"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &up.url()),
            ("AUTHGATE_CLIENT__0__ID", "svc"),
            ("AUTHGATE_CLIENT__0__SECRET", "svc-secret"),
        ],
    )
    .await;
    // The metadata lists it.
    let meta = json(
        gate.client()
            .get(gate.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let grants = meta["grant_types_supported"].as_array().unwrap();
    assert!(grants.iter().any(|g| g == GRANT), "{meta}");

    // RFC 6749 §5.1 response; the token is the Hubler path's kind of token.
    let ok = token_form(
        &gate,
        None,
        &[
            ("grant_type", GRANT),
            ("account", ACCOUNT),
            ("secret", "hubble"),
            ("user_id", USER),
            ("unknown_extension", "ignored"),
        ],
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let v = json(ok).await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["scope"], "employees.read timesheets.rw");
    assert!(
        v.get("refresh_token").is_none() && v.get("status").is_none(),
        "{v}"
    );
    let token = v["access_token"].as_str().unwrap().to_owned();
    let record = gate
        .store()
        .await
        .get_token(&authgate::token::hash(&token))
        .await
        .unwrap()
        .expect("stored before the response");
    assert_eq!(record.client_id, format!("account:{ACCOUNT}"));
    assert_eq!(record.subject.as_deref(), Some(USER));
    assert_eq!(record.extra["account_id"], ACCOUNT);
    let api = gate
        .client()
        .get(gate.url("/v1/employees"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert_eq!(json(api).await["headers"]["x-authgate-user-id"], USER);

    // The scope is narrowed to the account's; exactly as asked: no scope member.
    let v = json(
        token_form(
            &gate,
            None,
            &[
                ("grant_type", GRANT),
                ("account", ACCOUNT),
                ("secret", "hubble"),
                ("scope", "employees.read"),
            ],
        )
        .await,
    )
    .await;
    assert!(
        v["access_token"].is_string() && v.get("scope").is_none(),
        "{v}"
    );

    let with = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![("grant_type", GRANT)];
        form.extend_from_slice(extra);
        form
    };
    type Case = (Vec<(&'static str, &'static str)>, u16, &'static str);
    let cases: [Case; 8] = [
        (with(&[("secret", "hubble")]), 400, "invalid_request"),
        (
            with(&[("account", "5723"), ("secret", "hubble")]),
            400,
            "invalid_request",
        ),
        (with(&[("account", ACCOUNT)]), 400, "invalid_request"),
        (
            with(&[("account", ACCOUNT), ("secret", "hubble"), ("user_id", "u")]),
            400,
            "invalid_request",
        ),
        (
            with(&[
                ("account", ACCOUNT),
                ("secret", "hubble"),
                ("user_id", "ffffffffffffffffffffffff"),
            ]),
            400,
            "invalid_grant",
        ),
        (
            with(&[("account", ACCOUNT), ("secret", "hubble"), ("scope", "a[b")]),
            400,
            "invalid_scope",
        ),
        (
            with(&[
                ("account", ACCOUNT),
                ("secret", "hubble"),
                ("scope", "payroll.write"),
            ]),
            400,
            "invalid_scope",
        ),
        (
            with(&[("account", ACCOUNT), ("secret", "x"), ("secret", "y")]),
            400,
            "invalid_request",
        ),
    ];
    for (form, status, code) in cases {
        rfc_error(token_form(&gate, None, &form).await, status, code).await;
    }
    // An unknown account reads exactly like a wrong secret here.
    let unknown = rfc_error(
        token_form(
            &gate,
            None,
            &with(&[
                ("account", "000000000000000000000000"),
                ("secret", "hubble"),
            ]),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    let wrong = rfc_error(
        token_form(
            &gate,
            None,
            &with(&[("account", ACCOUNT), ("secret", "wrong")]),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(unknown, wrong);
    // Client credentials make it a client's request: checked, then refused.
    let account_form = with(&[("account", ACCOUNT), ("secret", "hubble")]);
    let resp = token_form(&gate, Some(("svc", "svc-secret")), &account_form).await;
    rfc_error(resp, 400, "unauthorized_client").await;
    let resp = token_form(&gate, Some(("svc", "nope")), &account_form).await;
    rfc_error(resp, 401, "invalid_client").await;
    // JSON is not a token request.
    let resp = gate
        .client()
        .post(gate.url("/oauth/token"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"grant_type":"{GRANT}","account":"{ACCOUNT}","secret":"hubble"}}"#
        ))
        .send()
        .await
        .unwrap();
    rfc_error(resp, 400, "invalid_request").await;
}

#[tokio::test]
async fn without_accounts_the_extension_grant_is_neither_listed_nor_served() {
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        "[[client]]\nid = \"svc\"\nsecret = \"svc-secret\"\n",
    )
    .await;
    let meta = json(
        gate.client()
            .get(gate.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == GRANT));
    let form = [
        ("grant_type", GRANT),
        ("account", ACCOUNT),
        ("secret", "hubble"),
    ];
    rfc_error(token_form(&gate, None, &form).await, 401, "invalid_client").await;
    let resp = token_form(&gate, Some(("svc", "svc-secret")), &form).await;
    rfc_error(resp, 400, "unsupported_grant_type").await;
}

/// The Hubler path's answer without its request id: status, content type and body.
async fn answer(resp: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = resp.status().as_u16();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let mut v = json(resp).await;
    v.as_object_mut().unwrap().remove("request_id");
    (status, ctype, v)
}

#[tokio::test]
async fn account_not_found_can_be_answered_like_a_wrong_secret() {
    let unknown = r#"{"account":"000000000000000000000000","secret":"hubble"}"#;
    let wrong = format!(r#"{{"account":"{ACCOUNT}","secret":"wrong"}}"#);
    // The default, as Hubler documents it: a distinct answer.
    let gate = hubler().await;
    let (status, _, v) = answer(post_json(&gate, unknown).await).await;
    assert_eq!(
        (status, v["error_description"].as_str()),
        (400, Some("The account not found!"))
    );
    drop(gate);
    let gate = Gate::example(
        "hubler",
        &[
            ("HUBLER_ACCOUNT_SECRET", "hubble"),
            ("AUTHGATE_OAUTH__ACCOUNT_NOT_FOUND", "uniform"),
        ],
    )
    .await;
    let a = answer(post_json(&gate, unknown).await).await;
    let b = answer(post_json(&gate, &wrong).await).await;
    assert_eq!(a, b);
    assert_eq!(a.0, 401);
    assert_eq!(
        a.2["error_description"],
        "User authentication failed: invalid account or secret."
    );
    // The right secret still works.
    let ok = post_json(
        &gate,
        &format!(r#"{{"account":"{ACCOUNT}","secret":"hubble"}}"#),
    )
    .await;
    assert_eq!(ok.status(), 200);
}
