//! Users who are no longer there: the checks and revocations that end their grants.
//! (Finding a user for a login is the authorize page's `find_user`.)

use std::sync::Arc;

use super::form::printable;
use super::OAuth;
use crate::config::{Config, UserConfig};
use crate::store::{Store, StoreError};

impl OAuth {
    /// Whether `name` is a user, in the file or in the store. Unlike `find_user`, a
    /// store failure is an error, not a "no": nobody loses a grant to an outage.
    pub(super) async fn user_exists(&self, name: &str) -> Result<bool, StoreError> {
        if self.users.iter().any(|u| u.name == name) {
            return Ok(true);
        }
        Ok(self.store.get_user(name).await?.is_some())
    }
}

/// Revokes the tokens of users that `before` declared and `after` no longer does
/// (unless the store has a user of that name): removing a `[[user]]` from the file
/// ends their access at the reload, as `authgate user remove` does at once.
pub async fn revoke_removed_users(
    before: &[UserConfig],
    after: &Config,
    store: &Arc<dyn Store>,
    now: i64,
) -> Result<(), StoreError> {
    for user in before {
        if after.users.iter().any(|u| u.name == user.name)
            || store.get_user(&user.name).await?.is_some()
        {
            continue;
        }
        // There is no such stored user: this revokes what acts for the name (tokens,
        // unspent codes) and logs it for the other instances.
        store.delete_user(&user.name, now).await?;
        tracing::warn!(user = %printable(&user.name), "user no longer configured: their tokens were revoked");
    }
    Ok(())
}
