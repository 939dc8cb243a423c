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
