//! Environment overrides for containers: `AUTHGATE_SECTION__KEY=value`.
//!
//! A double underscore separates path segments, because keys themselves contain single
//! underscores (`AUTHGATE_SERVER__HEADER_READ_TIMEOUT=5s`). A numeric segment indexes an
//! array of tables (`AUTHGATE_ROUTE__0__UPSTREAM=http://10.0.0.7:80`). Where the file
//! already has a string at that key the value is taken as a string as it is; otherwise it
//! is read as a TOML value (`8080`, `true`, `["10.0.0.0/8"]`) and, failing that, as a
//! string.

use toml::Value;

use super::ConfigError;

/// The prefix every override starts with.
pub const PREFIX: &str = "AUTHGATE_";

/// Applies every `AUTHGATE_…__…` variable from `vars` to `root`.
pub fn apply(
    root: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = vars
        .filter(|(name, _)| name.starts_with(PREFIX) && name.contains("__"))
        .collect();
    // Deterministic order in which `ROUTE__2__…` comes before `ROUTE__10__…`, so array
    // entries are created in index order.
    vars.sort_by_cached_key(|(name, _)| {
        name.split("__")
            .map(|seg| match seg.parse::<u64>() {
                Ok(n) => (0, n, String::new()),
                Err(_) => (1, 0, seg.to_owned()),
            })
            .collect::<Vec<_>>()
    });
    for (name, value) in vars {
        let path: Vec<String> = name[PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Env {
                var: name,
                reason: "empty path segment".into(),
            });
        }
        set(root, &path, &value).map_err(|reason| ConfigError::Env { var: name, reason })?;
    }
    Ok(())
}

fn set(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (head, rest) = path.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        let value = match table.get(head) {
            Some(Value::String(_)) => Value::String(raw.to_owned()),
            _ => parse_value(raw),
        };
        table.insert(head.clone(), value);
        return Ok(());
    }
    // A missing key followed by an index is an array of tables (`TLS__SNI__0__CERT`).
    let next_is_index = rest[0].parse::<usize>().is_ok();
    let child = table.entry(head.clone()).or_insert_with(|| {
        if next_is_index {
            Value::Array(Vec::new())
        } else {
            Value::Table(toml::Table::new())
        }
    });
    descend(child, head, rest, raw)
}

fn descend(value: &mut Value, name: &str, rest: &[String], raw: &str) -> Result<(), String> {
    match value {
        Value::Table(t) => set(t, rest, raw),
        Value::Array(items) => {
            let (index, rest) = rest.split_first().ok_or("empty key")?;
            let index: usize = index
                .parse()
                .map_err(|_| format!("`{name}` is an array: expected an index, got `{index}`"))?;
            if index > items.len() {
                return Err(format!(
                    "`{name}` has {} entries: index {index} would leave a gap",
                    items.len()
                ));
            }
            if index == items.len() {
                items.push(Value::Table(toml::Table::new()));
            }
            if rest.is_empty() {
                items[index] = parse_value(raw);
                return Ok(());
            }
            descend(&mut items[index], name, rest, raw)
        }
        _ => Err(format!("`{name}` is not a table")),
    }
}

fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(file: &str, vars: &[(&str, &str)]) -> Result<toml::Table, ConfigError> {
        let mut table: toml::Table = file.parse().unwrap();
        apply(
            &mut table,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Ok(table)
    }

    #[test]
    fn overrides_keep_strings_as_strings() {
        let t = run(
            "[server]\nhttps = \"127.0.0.1:8443\"",
            &[("AUTHGATE_SERVER__HTTPS", "0.0.0.0:443")],
        )
        .unwrap();
        assert_eq!(t["server"]["https"].as_str(), Some("0.0.0.0:443"));
    }

    #[test]
    fn new_keys_are_typed_and_tables_created() {
        let t = run(
            "",
            &[
                ("AUTHGATE_SERVER__MAX_CONNECTIONS", "10"),
                ("AUTHGATE_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                ("AUTHGATE_LOG__FORMAT", "json"),
                ("AUTHGATE_CONFIG", "ignored.toml"),
            ],
        )
        .unwrap();
        assert_eq!(t["server"]["max_connections"].as_integer(), Some(10));
        assert_eq!(
            t["server"]["trusted_proxies"][0].as_str(),
            Some("10.0.0.0/8")
        );
        assert_eq!(t["log"]["format"].as_str(), Some("json"));
        assert!(!t.contains_key("config"));
    }

    #[test]
    fn array_entries_are_indexed() {
        let t = run(
            "[[route]]\npath = \"/\"\nupstream = \"http://a\"",
            &[
                ("AUTHGATE_ROUTE__0__UPSTREAM", "http://b"),
                ("AUTHGATE_ROUTE__1__PATH", "/x"),
            ],
        )
        .unwrap();
        assert_eq!(t["route"][0]["upstream"].as_str(), Some("http://b"));
        assert_eq!(t["route"][1]["path"].as_str(), Some("/x"));
    }

    #[test]
    fn indexes_sort_numerically_and_arrays_are_created() {
        let mut vars: Vec<(&str, &str)> = (0..12)
            .map(|i| {
                (
                    Box::leak(format!("AUTHGATE_ROUTE__{i}__PATH").into_boxed_str()) as &str,
                    "/x",
                )
            })
            .collect();
        vars.reverse();
        let t = run("", &vars).unwrap();
        assert_eq!(t["route"].as_array().unwrap().len(), 12);
        let t = run("", &[("AUTHGATE_TLS__SNI__0__CERT", "a.pem")]).unwrap();
        assert_eq!(t["tls"]["sni"][0]["cert"].as_str(), Some("a.pem"));
    }

    #[test]
    fn bad_index_names_the_variable() {
        let err = run(
            "[[route]]\npath = \"/\"",
            &[("AUTHGATE_ROUTE__5__PATH", "/x")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("AUTHGATE_ROUTE__5__PATH"), "{err}");
        assert!(err.contains("gap"), "{err}");
    }
}
