//! Users who are no longer there: the checks that end their grants. (Finding a user
//! for a login is the authorize page's `find_user`.)

use super::OAuth;
use crate::store::StoreError;

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
