use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", std::iter::empty())
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const NO_TLS: &str = "[server]\nhttps = \"off\"\nhttp_mode = \"serve\"\n";

#[test]
fn shipped_config_is_valid() {
    let text = include_str!("../../config/authgate.toml");
    let cfg = parse(text).unwrap();
    assert_eq!(cfg.server.https, Some("127.0.0.1:8443".parse().unwrap()));
    assert_eq!(cfg.server.http_mode, HttpMode::Redirect);
    assert!(cfg.tls.as_ref().unwrap().self_signed_if_missing);
    assert_eq!(cfg.routes.len(), 1);
    // The operations sections are written out with their defaults.
    let defaults = parse(NO_TLS).unwrap();
    assert_eq!(cfg.metrics, defaults.metrics);
    assert_eq!(cfg.reload, defaults.reload);
    assert_eq!(cfg.forward_auth, defaults.forward_auth);
    assert_eq!(cfg.rate_limits, defaults.rate_limits);
}

#[test]
fn defaults_apply() {
    let cfg = parse(NO_TLS).unwrap();
    assert_eq!(cfg.server.http, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(cfg.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(cfg.server.max_header_bytes, 32 * 1024);
    assert_eq!(cfg.upstream.timeout, Duration::from_secs(60));
    assert_eq!(cfg.log.format, LogFormat::Human);
    assert!(cfg.tls.is_none());
}

#[test]
fn unknown_keys_are_named() {
    let e = err(&format!("{NO_TLS}colour = \"blue\""));
    assert!(
        e.starts_with("test.toml: server.colour: unknown field `colour`"),
        "{e}"
    );
    let e = err("[tls]\ncertificate = \"x\"");
    assert!(e.contains("tls.certificate: unknown field"), "{e}");
}

#[test]
fn wrong_types_are_named() {
    let e = err(&format!("{NO_TLS}max_connections = \"lots\""));
    assert!(e.contains("server.max_connections"), "{e}");
    let e = err(&format!(
        "{NO_TLS}[[route]]\npath = \"/\"\nupstream = \"http://a\"\npublic = \"yes\""
    ));
    assert!(e.contains("route[0].public"), "{e}");
}

#[test]
fn bad_values_are_named_with_reasons() {
    let cases = [
        (
            "[server]\nhttps = \"localhost\"",
            "server.https",
            "not an address",
        ),
        (
            "[server]\nhttps = \"off\"\nhttp_mode = \"proxy\"",
            "server.http_mode",
            "expected",
        ),
        (
            &format!("{NO_TLS}header_read_timeout = \"soon\""),
            "server.header_read_timeout",
            "not a duration",
        ),
        (
            &format!("{NO_TLS}trusted_proxies = [\"10.0.0.0/33\"]"),
            "server.trusted_proxies[0]",
            "not an IP",
        ),
        (
            "[server]\nhttps = \"off\"\nhttp = \"off\"",
            "server.https",
            "nothing would be served",
        ),
        (
            "[server]\nhttps = \"off\"",
            "server.http_mode",
            "needs the HTTPS listener",
        ),
        (
            &format!("{NO_TLS}[log]\nformat = \"xml\""),
            "log.format",
            "expected",
        ),
    ];
    for (text, key, reason) in cases {
        let e = err(text);
        assert!(e.contains(key) && e.contains(reason), "{text:?} gave {e}");
    }
}

#[test]
fn missing_cert_is_named() {
    let e = err("[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"");
    assert!(
        e.contains("tls.cert") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn hsts_must_have_max_age() {
    let e = err("[tls]\nself_signed_if_missing = true\nhsts = \"includeSubDomains\"");
    assert!(e.contains("tls.hsts"), "{e}");
}

#[test]
fn routes_are_validated() {
    let route = |body: &str| err(&format!("{NO_TLS}[[route]]\n{body}"));
    assert!(route("upstream = \"http://a\"\npublic = true").contains("route[0].path: missing"));
    assert!(
        route("path = \"api\"\nupstream = \"http://a\"\npublic = true")
            .contains("must start with /")
    );
    assert!(route("path = \"/\"\npublic = true").contains("route[0].upstream: missing"));
    assert!(route("path = \"/\"\nupstream = \"ftp://a\"\npublic = true")
        .contains("http:// or https://"));
    assert!(
        route("path = \"/\"\nupstream = \"http://u:p@a\"\npublic = true").contains("credentials")
    );
    assert!(route("path = \"/\"\nupstreams = []\npublic = true").contains("at least one"));
    assert!(route("path = \"/\"\nupstream = \"http://a\"").contains("route[0].perimeter: missing"));
    assert!(
        route("path = \"/\"\nupstream = \"http://a\"\npublic = true\nperimeter = \"x\"")
            .contains("route[0].public")
    );
    assert!(
        route("path = \"/\"\nupstream = \"http://a\"\nperimeter = \"x\"\nscopes = []")
            .contains("not both")
    );
    assert!(
        route("path = \"/\"\nupstream = \"http://a\"\nperimeter = \"a[b]\"")
            .contains("route[0].perimeter")
    );
    assert!(
        route("path = \"/\"\nupstream = \"http://a\"\nscopes = [\"a[b\"]")
            .contains("route[0].scopes")
    );
    assert!(
        route("path = \"/\"\nupstream = \"http://a\"\nscopes = []\nlevel = \"location\"")
            .contains("route[0].level")
    );
    assert!(route(
        "path = \"/\"\nupstream = \"http://a\"\nscopes = []\ntoken_headers = [\"cookie\"]"
    )
    .contains("route[0].token_headers"));
    let ok = parse(&format!("{NO_TLS}[[route]]\npath = \"/\"\nupstream = \"http://a\"\nperimeter = \"orders\"\nlevel = \"location\"\ntoken_headers = [\"X-Access-Token\"]")).unwrap();
    assert_eq!(
        ok.routes[0].access,
        Access::Perimeter {
            resource: "orders".into(),
            level: Some("location".into())
        }
    );
    assert_eq!(
        ok.routes[0].token_headers,
        Some(vec![TokenHeader::XAccessToken])
    );
    let ms = parse(&format!("{NO_TLS}[[route]]\npath = \"/\"\nupstream = \"http://a\"\n[route.method_scopes]\nget = [\"c.read\"]\nPOST = [\"c.write\"]")).unwrap();
    match &ms.routes[0].access {
        Access::MethodScopes { methods, other } => {
            assert_eq!(methods.len(), 2);
            assert!(methods.iter().any(|(m, _)| m == http::Method::GET));
            assert!(other.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(route(
        "path = \"/\"\nupstream = \"http://a\"\nperimeter = \"x\"\n[route.method_scopes]\nGET = []"
    )
    .contains("route[0].method_scopes"));
    assert!(
        route("path = \"/\"\nupstream = \"http://a\"\n[route.method_scopes]\n\"G E T\" = []")
            .contains("not a method")
    );
    assert!(err(&format!("{NO_TLS}[auth]\ntoken_headers = []")).contains("auth.token_headers"));
    assert!(err(&format!("{NO_TLS}[auth]\nrealm = \"a\\\"b\"")).contains("auth.realm"));
    assert!(err(&format!("{NO_TLS}[store]\ncache_ttl = \"0s\"")).contains("store.cache_ttl"));
    assert!(route(
        "path = \"/\"\nhost = \"a.example:8443\"\nupstream = \"http://a\"\npublic = true"
    )
    .contains("leave the port out"));
    let dup = err(&format!(
        "{NO_TLS}[[route]]\npath = \"/a/\"\nupstream = \"http://a\"\npublic = true\n[[route]]\npath = \"/a\"\nupstream = \"http://b\"\npublic = true"
    ));
    assert!(
        dup.contains("route[1].path") && dup.contains("route[0] already"),
        "{dup}"
    );
}

#[test]
fn route_paths_and_hosts_are_what_route_config_says() {
    // Found by fuzz/fuzz_targets/config.rs: `//` became the empty prefix, and a
    // bracketed IPv6 host kept its port (a route no request host ever matches).
    let route = |body: &str| {
        parse(&format!(
            "{NO_TLS}[[route]]\n{body}\nupstream = \"http://a\"\npublic = true"
        ))
    };
    assert_eq!(route("path = \"//\"").unwrap().routes[0].path, "/");
    assert_eq!(route("path = \"/api//\"").unwrap().routes[0].path, "/api");
    let ok = route("path = \"/\"\nhost = \"[::1]\"").unwrap();
    assert_eq!(ok.routes[0].host.as_deref(), Some("[::1]"));
    let e = route("path = \"/\"\nhost = \"[::1]:8443\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("leave the port out"), "{e}");
}

#[test]
fn upstream_targets_are_parsed() {
    let cfg = parse(&format!(
        "{NO_TLS}[[route]]\npath = \"/api/\"\nupstreams = [\"http://10.0.0.1:8080/v1/\", \"https://api.example\"]\npublic = true\ntimeout = \"2s\""
    ))
    .unwrap();
    let r = &cfg.routes[0];
    assert_eq!(r.path, "/api");
    assert_eq!(r.upstreams[0].to_string(), "http://10.0.0.1:8080/v1");
    assert_eq!(r.upstreams[1].scheme, Scheme::HTTPS);
    assert_eq!(r.timeout, Duration::from_secs(2));
    assert_eq!(r.max_body_bytes, cfg.server.max_body_bytes);
}

#[test]
fn syntax_errors_name_the_file() {
    let e = err("[server\nhttps = 1");
    assert!(e.starts_with("test.toml: not valid TOML"), "{e}");
}

#[test]
fn environment_overrides_apply_and_are_validated() {
    let vars = [
        (
            "AUTHGATE_SERVER__HTTP".to_string(),
            "127.0.0.1:9999".to_string(),
        ),
        ("AUTHGATE_LOG__FORMAT".to_string(), "json".to_string()),
    ];
    let cfg = Config::parse(NO_TLS, "t.toml", vars.into_iter()).unwrap();
    assert_eq!(cfg.server.http, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(cfg.log.format, LogFormat::Json);

    let vars = [(
        "AUTHGATE_SERVER__MAX_CONNECTIONS".to_string(),
        "many".to_string(),
    )];
    let e = Config::parse(NO_TLS, "t.toml", vars.into_iter())
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.max_connections"), "{e}");
}

#[test]
fn accounts_and_clients_are_validated() {
    let acct = |body: &str| {
        err(&format!(
            "{NO_TLS}[oauth]\naccount_token_path = \"/auth\"\n[[account]]\n{body}"
        ))
    };
    assert!(
        acct("id = \"123\"\nsecret = \"s\"").contains("account[0].id: \"123\" is not an ObjectId")
    );
    assert!(acct("id = \"5723073937d63a18396a1bae\"").contains("account[0].secret_hash: missing"));
    assert!(
        acct("id = \"5723073937d63a18396a1bae\"\nsecret = \"s\"\nusers = [\"u\"]")
            .contains("account[0].users")
    );
    assert!(
        acct("id = \"5723073937d63a18396a1bae\"\nsecret_env = \"AUTHGATE_TEST_UNSET_VAR\"")
            .contains("AUTHGATE_TEST_UNSET_VAR is not set")
    );
    let e = err(&format!(
        "{NO_TLS}[[account]]\nid = \"5723073937d63a18396a1bae\"\nsecret = \"s\""
    ));
    assert!(e.contains("oauth.account_token_path"), "{e}");
    let e = err(&format!("{NO_TLS}[oauth]\naccount_not_found = \"hidden\""));
    assert!(
        e.contains("oauth.account_not_found: expected \"distinct\"") && e.contains("\"uniform\""),
        "{e}"
    );
    let uniform = parse(&format!("{NO_TLS}[oauth]\naccount_not_found = \"uniform\"")).unwrap();
    assert_eq!(uniform.oauth.account_not_found, AccountNotFound::Uniform);
    assert_eq!(
        parse(NO_TLS).unwrap().oauth.account_not_found,
        AccountNotFound::Distinct
    );

    let client = |body: &str| err(&format!("{NO_TLS}[[client]]\n{body}"));
    assert!(client("secret = \"s\"").contains("client[0].id: missing"));
    assert!(client("id = \"a\"").contains("client[0].secret_hash: missing"));
    assert!(client("id = \"a\"\nsecret = \"s\"\nsecret_hash = \"sha256:00\"").contains("only one"));
    assert!(client("id = \"a\"\nsecret_hash = \"md5:00\"").contains("client[0].secret_hash"));
    assert!(
        client("id = \"a\"\nsecret = \"s\"\ngrants = [\"password\"]").contains("client[0].grants")
    );
    assert!(client("id = \"a\"\nsecret = \"s\"\nscopes = \"a[b.r\"").contains("client[0].scopes"));
    assert!(client("id = \"a\"\npublic = true\nsecret = \"s\"").contains("client[0].public"));
    let dup = err(&format!(
        "{NO_TLS}[[client]]\nid = \"a\"\nsecret = \"s\"\n[[client]]\nid = \"a\"\nsecret = \"t\""
    ));
    assert!(
        dup.contains("client[1].id") && dup.contains("declared twice"),
        "{dup}"
    );

    let clash = err(&format!("{NO_TLS}[oauth]\nrevoke_path = \"/oauth/token\""));
    assert!(
        clash.contains("oauth.revoke_path") && clash.contains("already served"),
        "{clash}"
    );
    assert!(
        err(&format!("{NO_TLS}[oauth]\ntoken_paths = [\"/healthz\"]")).contains("already served")
    );
    assert!(
        err(&format!("{NO_TLS}[oauth]\naccess_token_ttl = \"soon\""))
            .contains("oauth.access_token_ttl")
    );
    assert!(err(&format!("{NO_TLS}[oauth]\nissuer = \"http://x\"")).contains("oauth.issuer"));
    assert!(err(&format!("{NO_TLS}[oauth]\nissuer = \"https://x/auth\"")).contains("no path"));
    let any = parse(&format!("{NO_TLS}http = \"0.0.0.0:8080\"")).unwrap();
    assert_eq!(any.oauth.issuer, "https://localhost:8080");
    let named = parse(&format!(
        "{NO_TLS}[oauth]\nissuer = \"https://auth.example.com/\""
    ))
    .unwrap();
    assert_eq!(named.oauth.issuer, "https://auth.example.com");
    assert!(err(&format!("{NO_TLS}[store]\nurl = \"mysql://x\"")).contains("store.url"));
    let pg = parse(&format!(
        "{NO_TLS}[store]\nurl = \"postgres://edge:s3cret@db.internal/authgate\"\n\
         pool_size = 4\nconnect_timeout = \"2s\"\nsweep_interval = \"off\"\nkeep_expired = \"7d\""
    ))
    .unwrap();
    assert_eq!(pg.store.pool.max_connections, 4);
    assert_eq!(pg.store.pool.connect_timeout, Duration::from_secs(2));
    assert_eq!(pg.store.sweep_interval, None);
    assert_eq!(pg.store.keep_expired, Duration::from_secs(7 * 86400));
    let shown = format!("{:?}", pg.store);
    assert!(
        !shown.contains("s3cret") && shown.contains("edge:***@"),
        "{shown}"
    );
    assert!(err(&format!(
        "{NO_TLS}[store]\nurl = \"postgres://h/d\"\npool_size = 1"
    ))
    .contains("store.pool_size"));
    assert!(
        err(&format!("{NO_TLS}[store]\nsweep_interval = \"sometimes\""))
            .contains("store.sweep_interval")
    );
    let bad = err(&format!("{NO_TLS}[store]\nurl = \"mysql://u:pw@x/db\""));
    assert!(!bad.contains(":pw@"), "{bad}");

    let ok = parse(&format!(
        "{NO_TLS}[oauth]\naccess_token_ttl = \"never\"\nrefresh_token_ttl = \"90d\"\n\
         [[client]]\nid = \"pub\"\npublic = true\ngrants = [\"refresh_token\"]"
    ))
    .unwrap();
    assert_eq!(ok.oauth.access_token_ttl, Ttl::Never);
    assert_eq!(ok.oauth.refresh_token_ttl.secs(), Some(90 * 86400));
    assert!(ok.clients[0].secret.is_none());
}

#[test]
fn keys_that_would_do_nothing_are_refused() {
    let client = |body: &str| {
        err(&format!(
            "{NO_TLS}[[client]]\nid = \"a\"\nsecret = \"s\"\n{body}"
        ))
    };
    assert!(client("refresh_tokens = true").contains("client[0].refresh_tokens"));
    assert!(client("pkce = \"required\"").contains("client[0].pkce"));
    assert!(client("token_response_extra = true").contains("client[0].token_response_extra"));
    let route = |body: &str| {
        err(&format!(
            "{NO_TLS}[[route]]\npath = \"/\"\nupstream = \"http://a\"\n{body}"
        ))
    };
    assert!(route("public = true\npass_token = true").contains("route[0].pass_token"));
    assert!(route("public = true\ntoken_headers = [\"authorization\"]")
        .contains("route[0].token_headers"));
    assert!(route("[route.method_scopes]\nGET = []\nget = []").contains("listed twice"));
}

/// The configurations under `deploy/` stay valid: the compose file's and the one inside
/// the Kubernetes ConfigMap (certificate paths pointed at a temporary pair).
#[test]
fn deploy_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    crate::certs::generate(&cert, &key, &["localhost".to_string()], false).unwrap();
    let vars = || {
        vec![
            ("AUTHGATE_TLS__CERT".to_string(), cert.display().to_string()),
            ("AUTHGATE_TLS__KEY".to_string(), key.display().to_string()),
            ("REPORTING_SECRET".to_string(), "s3cret".to_string()),
        ]
        .into_iter()
    };
    let compose = include_str!("../../deploy/compose/authgate.toml");
    let cfg = Config::parse(compose, "compose", vars()).unwrap();
    assert!(cfg.metrics.listen.is_some());

    let yaml = include_str!("../../deploy/kubernetes/sidecar.yaml");
    let start = yaml.find("authgate.toml: |").expect("the ConfigMap key") + 16;
    let toml: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let cfg = Config::parse(&toml, "sidecar", vars()).unwrap();
    assert!(cfg.metrics.listen.is_some());
    assert_eq!(cfg.routes.len(), 1);
}

#[test]
fn route_hosts_lose_a_trailing_dot_and_need_whole_labels() {
    let routed = |host: &str| {
        parse(&format!(
            "{NO_TLS}[[route]]\npath = \"/\"\nhost = \"{host}\"\nupstream = \"http://a\"\npublic = true\n"
        ))
    };
    // Requests are routed on the name without its trailing dot; so is the route.
    assert_eq!(
        routed("Admin.Example.").unwrap().routes[0].host.as_deref(),
        Some("admin.example")
    );
    for bad in ["admin..example", ".admin.example", "a b"] {
        let e = routed(bad).unwrap_err().to_string();
        assert!(e.contains("route[0].host"), "{bad}: {e}");
    }
}

#[test]
fn durations_are_bounded() {
    let e = err(&format!(
        "{NO_TLS}body_read_timeout = \"18446744073709551615s\"\n"
    ));
    assert!(e.contains("server.body_read_timeout"), "{e}");
}
