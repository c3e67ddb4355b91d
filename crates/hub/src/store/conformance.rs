//! Behaviour every [`Store`] backend must show, written once and run against each backend's
//! fresh, migrated database.

use super::{Store, TokenRecord};

/// Users, groups and tokens: creation, conflicts, listing order, cascades on user deletion.
pub async fn users_groups_tokens(store: &dyn Store) {
    assert!(store.create_user("ann", false, 10).await.expect("create"));
    assert!(!store.create_user("ann", true, 11).await.expect("again"), "a second create is refused");
    assert!(!store.get_user("ann").await.expect("get").expect("ann").admin, "a refused create changes nothing");
    assert!(store.create_user("bob", true, 12).await.expect("bob"));
    assert!(store.set_admin("ann", true).await.expect("admin"));
    assert!(!store.set_admin("ghost", true).await.expect("ghost"));
    let names: Vec<String> = store.list_users().await.expect("list").into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann", "bob"]);

    assert!(store.create_group("team", &["bob".into()], 13).await.expect("group"));
    assert!(!store.create_group("team", &[], 14).await.expect("again"));
    assert!(store.create_group("a-team", &[], 14).await.expect("group"));
    store.change_members("a-team", &["ann".into(), "bob".into(), "ann".into()], true).await.expect("add");
    store.change_members("team", &["bob".into()], false).await.expect("remove");
    assert!(store.change_members("team", &["ghost".into()], true).await.is_err(), "members must exist");
    let groups = store.list_groups().await.expect("groups");
    assert_eq!(
        groups.iter().map(|g| (g.name.as_str(), g.users.len())).collect::<Vec<_>>(),
        [("a-team", 2), ("team", 0)]
    );
    assert_eq!(store.get_user("bob").await.expect("get").expect("bob").groups, ["a-team"]);

    let t = TokenRecord {
        prefix: "abcd".into(),
        hash: "h1".into(),
        username: "ann".into(),
        scopes: vec!["read:users!user=ann".into(), "inherit".into()],
        note: "culler".into(),
        created: 20,
        expires_at: Some(99),
        ..Default::default()
    };
    let id = store.insert_token(&t).await.expect("token");
    let id2 = store.insert_token(&TokenRecord { hash: "h2".into(), expires_at: None, ..t.clone() }).await.expect("t2");
    assert!(store.insert_token(&t).await.is_err(), "hashes are unique");
    assert_ne!(id, id2);
    let mine = store.tokens_of("ann").await.expect("tokens");
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0], TokenRecord { id, ..t.clone() });
    assert_eq!(store.tokens_with_prefix("abcd").await.expect("prefix").len(), 2);
    store.touch_token(id, 50).await.expect("touch");
    assert_eq!(store.tokens_of("ann").await.expect("tokens")[0].last_activity, Some(50));
    assert!(!store.delete_token("bob", id).await.expect("not bob's"), "only the owner's token is deleted");
    assert!(store.delete_token("ann", id).await.expect("delete"));

    assert!(store.delete_user("ann").await.expect("delete user"));
    assert!(!store.delete_user("ann").await.expect("again"));
    assert!(store.tokens_with_prefix("abcd").await.expect("prefix").is_empty(), "tokens go with the user");
    assert_eq!(store.list_groups().await.expect("groups")[0].users, ["bob"], "memberships go with the user");
    assert!(store.delete_group("team").await.expect("delete group"));
    assert!(!store.delete_group("team").await.expect("again"));
}
