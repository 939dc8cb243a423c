//! The authorize page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/test`) driven over the W3C WebDriver protocol.
//! It opens the page, fills the labelled fields, presses Approve, and must land on the
//! client's redirect URI with a code and the state; the code is then exchanged.
//!
//! Under `CI=true` the browser must be there; elsewhere the test says loudly that it is
//! skipped when it is not.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, post_form, Gate, Upstream};
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Option<Driver> {
        let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
        if !std::path::Path::new(chromium).exists() || !std::path::Path::new(driver).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "CI=true but {chromium} or {driver} is missing: scripts/test installs them"
            );
            eprintln!("\n*** SKIPPED: headless-browser test — install Debian's chromium and chromium-driver (scripts/test does) ***\n");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await {
                if r.status().is_success() {
                    return Some(d);
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "WebDriver {path}: {v}");
        v["value"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_in_headless_chromium_and_lands_on_the_redirect() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let callback = Upstream::start().await;
    let cb = format!("{}/cb", callback.url());
    let alice = authgate::oauth::password::hash("alice-pw").unwrap();
    // The issuer is the page's real origin: the browser's Origin on the form's POST must
    // be the issuer's, so the port is chosen before the gateway starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gate = Gate::start(
        &format!("http_mode = \"serve\"\nhttps = \"127.0.0.1:{port}\""),
        "",
        &format!(
            "[oauth]\nissuer = \"https://127.0.0.1:{port}\"\n\
             [[client]]\nid = \"web\"\nname = \"Browser App\"\nsecret = \"web-secret\"\n\
             grants = [\"authorization_code\"]\nscopes = \"profile links.r\"\nredirect_uris = [\"{cb}\"]\n\
             [[user]]\nname = \"alice\"\npassword_hash = \"{alice}\"\n"
        ),
    )
    .await;
    let profile = tempfile::tempdir().unwrap();
    let session = driver
        .call(
            reqwest::Method::POST,
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}})),
        )
        .await;
    let id = session["sessionId"].as_str().unwrap().to_owned();
    let s = |p: &str| format!("/session/{id}{p}");
    let page = common::flow::url(
        &gate,
        "/oauth/authorize",
        &[
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", &cb),
            ("scope", "profile links.r"),
            ("state", "from-the-browser"),
        ],
    );
    driver
        .call(
            reqwest::Method::POST,
            &s("/url"),
            Some(json!({ "url": page })),
        )
        .await;
    let title = driver.call(reqwest::Method::GET, &s("/title"), None).await;
    assert_eq!(title, "Authorize Browser App");
    let find = |css: &'static str| {
        let driver = &driver;
        let path = s("/element");
        async move {
            let v = driver
                .call(
                    reqwest::Method::POST,
                    &path,
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            v[ELEMENT].as_str().unwrap().to_owned()
        }
    };
    let user = find("#username").await;
    driver
        .call(
            reqwest::Method::POST,
            &s(&format!("/element/{user}/value")),
            Some(json!({"text": "alice"})),
        )
        .await;
    let pw = find("#password").await;
    driver
        .call(
            reqwest::Method::POST,
            &s(&format!("/element/{pw}/value")),
            Some(json!({"text": "alice-pw"})),
        )
        .await;
    let approve = find("button[value=approve]").await;
    driver
        .call(
            reqwest::Method::POST,
            &s(&format!("/element/{approve}/click")),
            Some(json!({})),
        )
        .await;

    // The browser follows the 303 to the client's callback (allowed by the page's CSP).
    let deadline = Instant::now() + Duration::from_secs(20);
    let landed = loop {
        let url = driver.call(reqwest::Method::GET, &s("/url"), None).await;
        let url = url.as_str().unwrap_or("").to_owned();
        if url.starts_with(&cb) {
            break url;
        }
        if Instant::now() >= deadline {
            let source = driver.call(reqwest::Method::GET, &s("/source"), None).await;
            let text = source.as_str().unwrap_or("");
            let said = text.split("role=\"alert\">").nth(1).unwrap_or(text);
            panic!(
                "the browser never reached the redirect URI; it is at {url}, saying: {}",
                said.split('<').next().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = driver
        .call(reqwest::Method::DELETE, &format!("/session/{id}"), None)
        .await;
    let query = landed.split_once('?').unwrap().1;
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("state").as_deref(), Some("from-the-browser"));
    let code = get("code").expect("a code on the redirect");
    let resp = post_form(
        &gate,
        "/oauth/token",
        Some(("web", "web-secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &cb),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(json(resp).await["access_token"]
        .as_str()
        .unwrap()
        .starts_with("agat_"));
    assert!(
        callback.hits() >= 1,
        "the callback was actually requested by the browser"
    );
}
