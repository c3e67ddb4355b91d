//! Behaviour every [`Store`] backend must show, written once and run against each backend's
//! fresh, migrated database.

use crate::model::{JobRecord, RunRecord, ServerRecord, SessionRecord, Store, TicketRecord, TokenRecord, UserRecord};

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

    // Paging in the database: order, offsets, the total, the filter taken literally.
    let batch: Vec<String> = ["c_1", "bob", "c%2", "cx3", "c_1"].iter().map(|s| s.to_string()).collect();
    assert_eq!(store.create_users(&batch, false, 30).await.expect("batch"), ["c_1", "c%2", "cx3"], "only new ones");
    let names = |p: &(Vec<UserRecord>, i64)| p.0.iter().map(|u| u.name.clone()).collect::<Vec<_>>();
    let all = store.users_page("", false, 0, 100).await.expect("page");
    assert_eq!((names(&all), all.1), (vec!["ann".into(), "bob".into(), "c%2".into(), "c_1".into(), "cx3".into()], 5));
    let p = store.users_page("", true, 1, 2).await.expect("page");
    assert_eq!((names(&p), p.1), (vec!["c_1".into(), "c%2".into()], 5));
    assert_eq!(p.0.iter().map(|u| u.groups.len()).collect::<Vec<_>>(), [0, 0]);
    let bob = store.users_page("bo", false, 0, 10).await.expect("page");
    assert_eq!((names(&bob), bob.1, bob.0[0].groups.clone()), (vec!["bob".into()], 1, vec!["a-team".into()]));
    assert_eq!(names(&store.users_page("_", false, 0, 10).await.expect("page")), ["c_1"], "_ is literal");
    assert_eq!(names(&store.users_page("%", false, 0, 10).await.expect("page")), ["c%2"], "% is literal");
    assert_eq!(store.users_page("", false, 10, 10).await.expect("page").0.len(), 0, "past the end");

    assert!(store.delete_user("ann").await.expect("delete user"));
    assert!(!store.delete_user("ann").await.expect("again"));
    assert!(store.tokens_with_prefix("abcd").await.expect("prefix").is_empty(), "tokens go with the user");
    assert_eq!(store.list_groups().await.expect("groups")[0].users, ["bob"], "memberships go with the user");
    assert!(store.delete_group("team").await.expect("delete group"));
    assert!(!store.delete_group("team").await.expect("again"));
}

/// Schema versions: an unmigrated database is refused with the fix named, `migrate` applies
/// all `known` migrations once, and a second run applies none.
pub async fn migrations(store: &dyn Store, known: usize) {
    let err = store.check_schema().await.expect_err("an unmigrated database must be refused");
    assert!(err.to_string().contains("hub migrate"), "{err}");
    assert_eq!(store.migrate().await.expect("migrate"), known);
    assert_eq!(store.migrate().await.expect("migrate again"), 0);
    store.check_schema().await.expect("schema current");
}

/// Logins, sessions, server records and ticket records: upserts replace, activity only moves
/// forward, foreign keys hold.
pub async fn sessions_servers_tickets(store: &dyn Store) {
    store.upsert_user("ann", false, 10).await.expect("user");
    store.upsert_user("ann", true, 20).await.expect("a login in an admin group");
    assert!(store.is_admin("ann").await.expect("admin"), "admin_groups makes an admin");
    store.upsert_user("ann", false, 21).await.expect("a login after leaving the group");
    assert!(!store.is_admin("ann").await.expect("admin"), "the group-derived right goes with the group");
    store.set_admin("ann", true).await.expect("API grant");
    store.upsert_user("ann", false, 22).await.expect("a login outside any admin group");
    assert!(store.is_admin("ann").await.expect("admin"), "the API's grant survives logins");
    assert!(store.get_user("ann").await.expect("get").expect("ann").admin, "and shows in the user record");
    store.set_admin("ann", false).await.expect("API revoke");
    assert!(!store.is_admin("ann").await.expect("admin"));
    assert!(!store.is_admin("ghost").await.expect("unknown"));
    store.record_activity(&[("ann".into(), 30), ("ghost".into(), 40)]).await.expect("activity");
    store.record_activity(&[("ann".into(), 25)]).await.expect("older activity");
    let ann = store.get_user("ann").await.expect("get").expect("ann");
    assert_eq!((ann.created, ann.last_activity), (10, Some(30)), "activity only moves forward");
    let s = SessionRecord { id: "a".repeat(32), username: "ann".into(), created: 10, expires: 99 };
    store.create_session(&s).await.expect("session");
    assert_eq!(store.get_session(&s.id).await.expect("get"), Some(s.clone()));
    store.delete_session(&s.id).await.expect("delete");
    assert_eq!(store.get_session(&s.id).await.expect("get"), None);
    // A session for a user the hub never saw violates the foreign key.
    let orphan = SessionRecord { username: "nobody".into(), ..s.clone() };
    assert!(store.create_session(&orphan).await.is_err());
    store.create_session(&s).await.expect("session");
    store.create_session(&SessionRecord { id: "b".repeat(32), ..s.clone() }).await.expect("session 2");
    assert_eq!(store.delete_sessions_of("ann").await.expect("log out everywhere"), 2);

    let rec = ServerRecord {
        username: "ann".into(),
        server_name: String::new(),
        user_options: "{}".into(),
        state: "running".into(),
        pid: Some(42),
        port: Some(5000),
        socket: None,
        started: Some(11),
        stopped: None,
        message: None,
        token: Some("t".into()),
        pid_start: Some(123),
        uid: Some(1000),
        gid: Some(1000),
        spawner_state: None,
    };
    store.put_server(&rec).await.expect("put");
    assert_eq!(store.active_servers().await.expect("active"), vec![rec.clone()]);
    // The same user's next server on a Unix socket: the upsert replaces port with socket.
    let unix = ServerRecord { port: None, socket: Some("/var/lib/hub/sockets/ann/server.sock".into()), ..rec };
    // A server on a cluster node records its spawner's state; the next put replaces it.
    let remote = ServerRecord { spawner_state: Some(r#"{"job_id":12,"node":"node1"}"#.into()), ..unix.clone() };
    store.put_server(&remote).await.expect("put remote");
    assert_eq!(store.active_servers().await.expect("active"), vec![remote]);
    store.put_server(&unix).await.expect("put unix");
    assert_eq!(store.active_servers().await.expect("active"), vec![unix.clone()]);
    let stopped = ServerRecord { state: "stopped".into(), stopped: Some(12), message: Some("exit 0".into()), ..unix };
    store.put_server(&stopped).await.expect("put again");
    assert_eq!(store.get_server("ann", "").await.expect("get"), Some(stopped.clone()));
    assert!(store.active_servers().await.expect("active").is_empty());
    assert_eq!(store.get_server("bob", "").await.expect("get"), None);
    // Named servers: rows of their own beside the default one, kept while stopped, deleted
    // one by one.
    let gpu = ServerRecord {
        server_name: "gpu".into(),
        user_options: r#"{"profile":"large"}"#.into(),
        state: "running".into(),
        stopped: None,
        ..stopped.clone()
    };
    store.put_server(&gpu).await.expect("put named");
    assert_eq!(store.get_server("ann", "gpu").await.expect("get"), Some(gpu.clone()));
    assert_eq!(store.get_server("ann", "").await.expect("get"), Some(stopped.clone()), "the default one is untouched");
    assert_eq!(store.servers_of("ann").await.expect("list"), vec![stopped.clone(), gpu.clone()]);
    assert_eq!(store.named_servers().await.expect("named"), vec![("ann".to_string(), "gpu".to_string())]);
    assert_eq!(store.active_servers().await.expect("active"), vec![gpu.clone()]);
    assert!(store.delete_server("ann", "gpu").await.expect("delete"));
    assert!(!store.delete_server("ann", "gpu").await.expect("delete twice"));
    assert_eq!(store.servers_of("ann").await.expect("list"), vec![stopped]);

    let t = TicketRecord {
        username: "ann".into(),
        principal: "ann@R".into(),
        ccache: "/c/krb5cc_1".into(),
        valid_from: Some(1),
        valid_until: Some(2),
        renew_until: None,
        last_success: Some(1),
        last_error: Some("kinit: boom".into()),
        consecutive_failures: 3,
        next_renewal: Some(5),
    };
    store.put_ticket(&t).await.expect("put ticket");
    let t2 = TicketRecord { last_error: None, consecutive_failures: 0, valid_until: Some(7), ..t.clone() };
    store.put_ticket(&t2).await.expect("put ticket again");
    assert_eq!(store.get_ticket("ann").await.expect("get"), Some(t2));
    assert_eq!(store.get_ticket("bob").await.expect("get"), None);
    assert!(store.delete_user("ann").await.expect("delete"));
    assert_eq!(store.get_server("ann", "").await.expect("get"), None, "the server row goes with the user");
    assert_eq!(store.get_ticket("ann").await.expect("get"), None, "the ticket row goes with the user");
}

/// Jobs and runs: one name per owner, the guards against doubled runs, paging, pruning,
/// cascades.
pub async fn jobs_runs(store: &dyn Store) {
    store.create_user("ann", false, 1).await.expect("ann");
    store.create_user("bob", false, 1).await.expect("bob");
    let job = |user: &str, name: &str| JobRecord {
        username: user.into(),
        name: name.into(),
        definition: "{\"notebook\": \"a.ipynb\"}".into(),
        created: 5,
        updated: 5,
        next_due: Some(60),
        ..Default::default()
    };
    assert!(store.create_job(&job("ann", "daily")).await.expect("create"));
    assert!(!store.create_job(&job("ann", "daily")).await.expect("again"), "one name per owner");
    assert!(store.create_job(&job("bob", "daily")).await.expect("bob's"));
    assert!(store.create_job(&job("ann", "hourly")).await.expect("hourly"));
    let names = |v: Vec<JobRecord>| v.into_iter().map(|j| format!("{}/{}", j.username, j.name)).collect::<Vec<_>>();
    assert_eq!(names(store.list_jobs(Some("ann")).await.expect("list")), ["ann/daily", "ann/hourly"]);
    assert_eq!(names(store.list_jobs(None).await.expect("all")), ["ann/daily", "ann/hourly", "bob/daily"]);
    let mut daily = store.get_job("ann", "daily").await.expect("get").expect("daily");
    assert_eq!(store.get_job_by_id(daily.id).await.expect("by id").as_ref(), Some(&daily));
    daily.paused = true;
    daily.next_due = None;
    daily.last_occurrence = Some(60);
    assert!(store.update_job(&daily).await.expect("update"));
    assert_eq!(store.get_job("ann", "daily").await.expect("get").expect("daily"), daily);

    let run = |occurrence: Option<i64>, attempt: i64, state: &str| RunRecord {
        job_id: daily.id,
        username: "ann".into(),
        occurrence,
        reason: "schedule".into(),
        attempt,
        state: state.into(),
        created: 60,
        ..Default::default()
    };
    let first = store.insert_run(&run(Some(60), 1, "running")).await.expect("insert").expect("a new run");
    assert_eq!(store.insert_run(&run(Some(60), 1, "running")).await.expect("again"), None, "an occurrence runs once");
    let retry = store.insert_run(&run(Some(60), 2, "queued")).await.expect("retry").expect("attempt 2 is another run");
    assert_eq!(store.insert_run(&run(None, 1, "queued")).await.expect("second queued"), None, "one queued run per job");
    let mut r = store.get_run(retry).await.expect("get").expect("retry");
    r.state = "succeeded".into();
    r.ended = Some(70);
    r.failed_cell = Some(3);
    r.error = Some("{}".into());
    assert!(store.update_run(&r).await.expect("update"));
    assert_eq!(store.get_run(retry).await.expect("get").as_ref(), Some(&r));
    let manual = store.insert_run(&run(None, 1, "queued")).await.expect("queued").expect("the queue is free again");
    let active: Vec<i64> = store.active_runs().await.expect("active").into_iter().map(|r| r.id).collect();
    assert_eq!(active, [first, manual]);
    let (page, total) = store.runs_of_job(daily.id, 0, 2).await.expect("page");
    assert_eq!((page.iter().map(|r| r.id).collect::<Vec<_>>(), total), (vec![manual, retry], 3));
    let (page, _) = store.runs_of_job(daily.id, 2, 2).await.expect("page 2");
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [first]);
    // Pruning keeps active runs and the newest finished ones.
    for t in 0..3 {
        store.insert_run(&run(Some(100 + t), 1, "failed")).await.expect("finished").expect("new");
    }
    let pruned = store.prune_runs(daily.id, 2).await.expect("prune");
    assert_eq!(pruned.len(), 2, "4 finished runs, 2 kept: {pruned:?}");
    let (left, total) = store.runs_of_job(daily.id, 0, 100).await.expect("left");
    assert_eq!(total, 4);
    assert!(left.iter().any(|r| r.id == first) && left.iter().any(|r| r.id == manual), "active runs are kept");
    // Deleting the job deletes its runs; deleting a user deletes their jobs.
    assert!(store.delete_job("ann", "daily").await.expect("delete"));
    assert!(!store.delete_job("ann", "daily").await.expect("again"));
    assert_eq!(store.get_run(first).await.expect("get"), None);
    assert!(store.delete_user("bob").await.expect("delete bob"));
    assert_eq!(store.get_job("bob", "daily").await.expect("get"), None);
}
