//! Authorize phase: does the token's scope cover this route and method? Consumes the
//! [`Authenticated`] proof and returns [`Authorized`], which the forward phase requires.

use http::Method;

use super::authenticate::Authenticated;
use crate::config::Access;
use crate::error::GatewayError;
use crate::scope::Right;
use crate::token_table::CachedToken;

/// Proof that the caller may use the route with this method.
#[derive(Debug)]
pub struct Authorized {
    pub token: CachedToken,
}

/// Checks `access` for `method` against the token's scope. No I/O, no allocation unless
/// refusing.
pub fn check(access: &Access, method: &Method, token: &CachedToken) -> Result<(), GatewayError> {
    // `delete` is not `DELETE` to us, but many upstream frameworks upper-case it: refuse
    // methods that are not upper case rather than let them dodge a per-method rule.
    if !method
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err(GatewayError::MethodNotAllowed);
    }
    match access {
        Access::Public => Ok(()),
        Access::Scopes(required) => need(required, token),
        Access::MethodScopes { methods, other } => {
            // HEAD is a GET without body: without its own entry it needs GET's.
            let found = methods.iter().find(|(m, _)| m == method).or_else(|| {
                (method == Method::HEAD)
                    .then(|| methods.iter().find(|(m, _)| m == Method::GET))
                    .flatten()
            });
            match found {
                Some((_, required)) => need(required, token),
                None => match other {
                    Some(required) => need(required, token),
                    None => Err(GatewayError::MethodNotAllowed),
                },
            }
        }
        Access::Perimeter { resource, level } => {
            let right = Right::for_method(method.as_str()).ok_or(GatewayError::MethodNotAllowed)?;
            let ok = match level {
                None => token.grant.scope.allows(resource, right),
                Some(l) => token.grant.scope.level_allows(l, resource, right),
            };
            if ok {
                return Ok(());
            }
            Err(GatewayError::InsufficientScope {
                scope: match level {
                    None => format!("{resource}.{}", right.letter()),
                    Some(l) => format!("{l}[{resource}.{}]", right.word()),
                },
            })
        }
    }
}

fn need(required: &crate::scope::Scope, token: &CachedToken) -> Result<(), GatewayError> {
    if required.is_subset_of(&token.grant.scope) {
        Ok(())
    } else {
        Err(GatewayError::InsufficientScope {
            scope: required.to_string(),
        })
    }
}

/// The authorize phase.
pub fn authorize(
    access: &Access,
    method: &Method,
    auth: Authenticated,
) -> Result<Authorized, GatewayError> {
    check(access, method, &auth.token)?;
    Ok(Authorized { token: auth.token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;
    use crate::token_table::Grant;

    fn token(scope: &str) -> CachedToken {
        CachedToken::new(Grant {
            client_id: "c".into(),
            subject: None,
            scope: Scope::parse(scope).unwrap(),
            scope_text: scope.into(),
            extra: serde_json::Map::new(),
        })
    }

    fn perimeter(resource: &str, level: Option<&str>) -> Access {
        Access::Perimeter {
            resource: resource.into(),
            level: level.map(Into::into),
        }
    }

    #[test]
    fn perimeter_rights_follow_the_method() {
        let t = token("usage.r,account.r,links.wd");
        let links = perimeter("links", None);
        assert!(check(&links, &Method::POST, &t).is_ok());
        assert!(check(&links, &Method::PUT, &t).is_ok());
        assert!(check(&links, &Method::DELETE, &t).is_ok());
        assert_eq!(
            check(&links, &Method::GET, &t),
            Err(GatewayError::InsufficientScope {
                scope: "links.r".into()
            })
        );
        assert!(check(&perimeter("usage", None), &Method::HEAD, &t).is_ok());
        assert!(check(&perimeter("usage", None), &Method::PATCH, &t).is_err());
        assert_eq!(
            check(&links, &Method::from_bytes(b"PURGE").unwrap(), &t),
            Err(GatewayError::MethodNotAllowed)
        );
    }

    #[test]
    fn access_levels_and_explicit_scopes() {
        let t = token("location[orders.write,customer_list.write],profile");
        let orders = perimeter("orders", Some("location"));
        assert!(check(&orders, &Method::POST, &t).is_ok());
        assert_eq!(
            check(&orders, &Method::GET, &t),
            Err(GatewayError::InsufficientScope {
                scope: "location[orders.read]".into()
            })
        );
        assert!(check(&perimeter("orders", None), &Method::POST, &t).is_err());
        let need = |s: &str| Access::Scopes(Scope::parse(s).unwrap());
        assert!(check(&need("profile"), &Method::GET, &t).is_ok());
        assert!(check(&need(""), &Method::GET, &t).is_ok());
        assert!(check(&need("profile_with_email"), &Method::GET, &t).is_err());
        let hs = token("crm.objects.contacts.read oauth");
        let per_method = Access::MethodScopes {
            methods: vec![
                (
                    Method::GET,
                    Scope::parse("crm.objects.contacts.read").unwrap(),
                ),
                (
                    Method::POST,
                    Scope::parse("crm.objects.contacts.write").unwrap(),
                ),
            ],
            other: None,
        };
        assert!(check(&per_method, &Method::GET, &hs).is_ok());
        assert_eq!(
            check(&per_method, &Method::POST, &hs),
            Err(GatewayError::InsufficientScope {
                scope: "crm.objects.contacts.write".into()
            })
        );
        assert_eq!(
            check(&per_method, &Method::DELETE, &hs),
            Err(GatewayError::MethodNotAllowed)
        );
        assert!(
            check(&per_method, &Method::HEAD, &hs).is_ok(),
            "HEAD follows GET"
        );
        let lower = Method::from_bytes(b"post").unwrap();
        assert_eq!(
            check(&need("profile"), &lower, &t),
            Err(GatewayError::MethodNotAllowed)
        );
        assert!(check(&need("crm.objects.contacts.read"), &Method::GET, &hs).is_ok());
        assert!(check(&need("crm.objects.contacts.write"), &Method::GET, &hs).is_err());
    }
}
