//! The admin page and the user's home page in headless Chromium (`tests/browser/admin.mjs`):
//! paging and search over more users than fit a page, start/stop of another user's server
//! with its Kerberos ticket state, adding and deleting users, the refusal for non-admins, and
//! the home page's server and ticket state with the spawn page's progress bar.

use std::path::Path;

use hub::servers::ServerState;

use crate::support::{self, HubOptions, Kdc, PamService, TestHub, TestUser, require_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_chromium() {
    require_root();
    let script = crate::support::browser_script("admin.mjs");
    let pam = PamService::create();
    let kdc = Kdc::start();
    let adm = TestUser::create();
    let bob = TestUser::create();
    let carol = TestUser::create();
    kdc.add_user_with_keytab(&bob);
    let opts = HubOptions { auth: format!("admin_users = [\"{}\"]", adm.name), ..Default::default() };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    // More users than one page (page_default_limit = 50): 55 recorded users without servers,
    // plus the admin and bob.
    let store = &hub.state.store;
    for i in 0..55 {
        assert!(store.create_user(&format!("zpage{i:02}"), false, hub::unix_now()).await.expect("user"));
    }
    store.create_user(&adm.name, true, hub::unix_now()).await.expect("admin");
    store.create_user(&bob.name, false, hub::unix_now()).await.expect("bob");

    let shots = hub.data_dir.path().join("admin");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args([hub.url("").as_str(), &adm.name, &adm.password, &bob.name, &bob.password, &carol.name, "57"])
        .arg(&shots)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Ok(dir) = std::env::var("HUB_TEST_ARTIFACTS") {
        for which in ["admin", "home"] {
            let _ = std::fs::copy(
                format!("{}-{which}.png", shots.display()),
                Path::new(&dir).join(format!("browser-{which}.png")),
            );
        }
    }
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    // What the browser did is what the hub holds.
    assert!(store.get_user(&carol.name).await.expect("get").is_none(), "carol was added, then deleted");
    assert!(support::log_line_with(&[&carol.name, "user created through the API", &adm.name]));
    assert!(support::log_line_with(&[&carol.name, "user deleted through the API", &adm.name]));
    assert!(support::log_line_with(&[&bob.name, "server stop requested through the API", &adm.name]));
    assert!(support::log_line_with(&[&bob.name, "refused the admin page"]));
    assert!(
        matches!(hub.state.servers.state(&adm.name), ServerState::Stopped { .. }),
        "signing in to the admin page starts no server for the admin"
    );
    assert!(matches!(hub.state.servers.state(&bob.name), ServerState::Running { .. }), "bob started his own");
    hub.stop().await;
    assert_eq!(bob.processes(), Vec::<u32>::new());
}
