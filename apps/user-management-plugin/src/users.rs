//! The plugin's own small user directory: a few seeded, fictitious users.

use std::collections::BTreeMap;

use time::macros::datetime;
use vivified_plugin_sdk::{CanonicalUser, FindUsersError, GetUserError, UserQuery};

/// The largest answer of [`UserStore::find`].
pub const MAX_RESULTS: usize = 100;

/// Users by id, in memory.
#[derive(Clone, Debug)]
pub struct UserStore {
    users: BTreeMap<String, CanonicalUser>,
}

fn user(id: &str, username: &str, email: &str, roles: &[&str], dept: &str) -> CanonicalUser {
    CanonicalUser {
        id: id.to_owned(),
        username: username.to_owned(),
        email: email.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        traits: vec!["pii".to_owned()],
        created_at: Some(datetime!(2024-01-15 09:30:00 UTC)),
        attributes: BTreeMap::from([("department".to_owned(), dept.to_owned())]),
    }
}

impl UserStore {
    /// The seeded directory (fictitious people on the reserved `example.com` domain).
    pub fn seeded() -> Self {
        let users = [
            user(
                "1",
                "alice",
                "alice@example.com",
                &["admin", "user"],
                "engineering",
            ),
            user("2", "bob", "bob@example.com", &["user"], "support"),
            user(
                "3",
                "carol",
                "carol@example.com",
                &["auditor", "user"],
                "compliance",
            ),
        ];
        Self {
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
        }
    }

    /// The user with this id.
    ///
    /// # Errors
    /// [`GetUserError::NotFound`].
    pub fn get(&self, id: &str) -> Result<CanonicalUser, GetUserError> {
        self.users.get(id).cloned().ok_or(GetUserError::NotFound)
    }

    /// Users matching every criterion of `query`, by id, at most
    /// `min(query.limit, MAX_RESULTS)`.
    ///
    /// # Errors
    /// [`FindUsersError::InvalidQuery`] without any criterion or with a zero limit.
    pub fn find(&self, query: &UserQuery) -> Result<Vec<CanonicalUser>, FindUsersError> {
        if query.username.is_none() && query.email.is_none() && query.role.is_none() {
            return Err(FindUsersError::InvalidQuery(
                "give a username, an email or a role".into(),
            ));
        }
        if query.limit == 0 {
            return Err(FindUsersError::InvalidQuery(
                "limit must be at least 1".into(),
            ));
        }
        Ok(self
            .users
            .values()
            .filter(|u| query.username.as_ref().is_none_or(|n| *n == u.username))
            .filter(|u| {
                query
                    .email
                    .as_ref()
                    .is_none_or(|e| e.eq_ignore_ascii_case(&u.email))
            })
            .filter(|u| query.role.as_ref().is_none_or(|r| u.roles.contains(r)))
            .take(query.limit.min(MAX_RESULTS))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_find() {
        let s = UserStore::seeded();
        assert_eq!(s.get("2").unwrap().username, "bob");
        assert!(matches!(s.get("999"), Err(GetUserError::NotFound)));
        let q = |f: fn(&mut UserQuery)| {
            let mut q = UserQuery::default();
            f(&mut q);
            q
        };
        let users = s.find(&q(|q| q.role = Some("user".into()))).unwrap();
        assert_eq!(
            users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3"]
        );
        let users = s
            .find(&q(|q| q.email = Some("CAROL@example.com".into())))
            .unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].username, "carol");
        let users = s
            .find(&q(|q| {
                q.role = Some("user".into());
                q.limit = 2;
            }))
            .unwrap();
        assert_eq!(users.len(), 2);
        assert!(
            s.find(&q(|q| {
                q.username = Some("alice".into());
                q.role = Some("auditor".into());
            }))
            .unwrap()
            .is_empty()
        );
        assert!(matches!(
            s.find(&UserQuery::default()),
            Err(FindUsersError::InvalidQuery(_))
        ));
        assert!(matches!(
            s.find(&q(|q| {
                q.role = Some("user".into());
                q.limit = 0;
            })),
            Err(FindUsersError::InvalidQuery(_))
        ));
    }
}
