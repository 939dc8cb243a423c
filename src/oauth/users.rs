//! Users who are no longer there: the checks and revocations that end their grants.
//! (Finding a user for a login is the authorize page's `find_user`.)

use std::collections::HashSet;
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

/// Revokes what acts for subjects nobody declares any more: the tokens and unspent codes
/// whose subject is neither a user (in the file or the store), nor the `subject` of a
/// client (in the file or the store), nor an account or one of its `users`. This is how
/// a `[[user]]` removed from the file while authgate was stopped loses their access at
/// start: no previous configuration is there to compare with (see
/// [`revoke_removed_users`] for reloads). Each revocation is logged for the other
/// instances.
pub async fn revoke_orphaned_subjects(
    config: &Config,
    store: &Arc<dyn Store>,
    now: i64,
) -> Result<(), StoreError> {
    let subjects = store.subjects_with_tokens().await?;
    if subjects.is_empty() {
        return Ok(());
    }
    let mut known: HashSet<String> = config.users.iter().map(|u| u.name.clone()).collect();
    known.extend(
        config
            .clients
            .iter()
            .filter_map(|c| c.settings.subject.clone()),
    );
    for account in &config.accounts {
        known.insert(account.id.clone());
        known.extend(account.users.iter().cloned());
    }
    known.extend(store.list_users().await?.into_iter().map(|u| u.name));
    known.extend(store.list_clients().await?.into_iter().filter_map(|c| {
        c.settings
            .get("subject")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
    }));
    for subject in subjects.iter().filter(|s| !known.contains(*s)) {
        // Looked up again just before: a user added since the list was read keeps
        // everything (`delete_user` would remove them).
        if store.get_user(subject).await?.is_some() {
            continue;
        }
        store.delete_user(subject, now).await?;
        tracing::warn!(user = %printable(subject), "tokens acting for a user nobody declares any more were revoked");
    }
    Ok(())
}
