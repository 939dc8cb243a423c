//! A revocation holds under load: while issuers keep the store busy with new tokens,
//! every `POST /oauth/revoke` answers 200 (never a 503) and the revoked token is
//! refused on the very next request, on SQLite and on PostgreSQL.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use authgate::store::scratch::ScratchDb;
use common::{post_form, token, Gate, Upstream};

fn config(upstream: &str, store: &str) -> String {
    format!(
        "{store}[oauth]\naccess_token_ttl = \"1h\"\n\
         [[client]]\nid = \"app\"\nsecret = \"s\"\nscopes = \"links.r\"\n\
         [[client]]\nid = \"busy\"\nsecret = \"b\"\nscopes = \"links.r\"\n\
         [[route]]\npath = \"/links\"\nupstream = \"{upstream}\"\nperimeter = \"links\"\n"
    )
}

async fn revocations_hold(gate: Gate) {
    let gate = Arc::new(gate);
    let mut victims = Vec::new();
    for _ in 0..40 {
        victims.push(token(&gate, "app", "s").await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut issuers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (gate, stop) = (gate.clone(), stop.clone());
        issuers.spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = post_form(
                    &gate,
                    "/oauth/token",
                    Some(("busy", "b")),
                    &[("grant_type", "client_credentials")],
                )
                .await;
                statuses.push(resp.status().as_u16());
            }
            statuses
        });
    }
    let mut revocations = tokio::task::JoinSet::new();
    for t in victims {
        let gate = gate.clone();
        revocations.spawn(async move {
            let revoked = post_form(&gate, "/oauth/revoke", Some(("app", "s")), &[("token", &t)])
                .await
                .status()
                .as_u16();
            let next = gate
                .client()
                .get(gate.url("/links/1"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (revoked, next)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = revocations.join_next().await {
        outcomes.push(done.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let mut issued = Vec::new();
    while let Some(done) = issuers.join_next().await {
        issued.extend(done.unwrap());
    }
    assert!(
        outcomes.iter().all(|o| *o == (200, 401)),
        "revoke status, next request status: {outcomes:?}"
    );
    assert!(
        !issued.is_empty() && issued.iter().all(|s| *s == 200),
        "{issued:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_revocations_hold_while_tokens_are_issued() {
    let up = Upstream::start().await;
    let gate = Gate::start("http_mode = \"serve\"", "", &config(&up.url(), "")).await;
    revocations_hold(gate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocations_hold_while_tokens_are_issued() {
    let Some(db) = ScratchDb::create().await else {
        return;
    };
    let up = Upstream::start().await;
    let store = format!("[store]\nurl = \"{}\"\n", db.url());
    let gate = Gate::start("http_mode = \"serve\"", "", &config(&up.url(), &store)).await;
    revocations_hold(gate).await;
}
