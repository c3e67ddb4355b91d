//! The renewer against a real KDC with short lifetimes (max_life 2 min, clockskew 1 s):
//! the timer, coalescing, the kinit bound, outages, the file rules and restarts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hub::config::Config;
use hub::core::TicketOwner;
use hub::renewer::{Renewer, Trigger};
use hub::store::Store;
use hub::store::sqlite::SqliteStore;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, HubOptions, Kdc, PamService, TestHub, TestUser, random_hex, require_root, short_life};

fn owner(u: &TestUser) -> TicketOwner {
    TicketOwner { username: u.name.clone(), uid: u.uid, gid: u.gid }
}

/// A renewer built from a real `[kerberos]` section, for tests that drive it directly.
async fn renewer(kdc: &Kdc, dir: &Path, extra: &str, users: &[&str]) -> (Arc<Renewer>, Arc<dyn Store>) {
    let text = format!(
        "[hub]\ndata_dir = \"{d}\"\n[spawner]\ncmd = [\"/bin/true\"]\n[kerberos]\nenabled = true\nrealm = \"{r}\"\n\
         krb5_config = \"{k}\"\nccache = \"{d}/ccache/krb5cc_{{uid}}\"\n{extra}\n",
        d = dir.display(),
        r = kdc.realm,
        k = kdc.krb5_conf().display(),
    );
    let cfg = Config::parse(Path::new("test.toml"), &text).expect("config");
    let store = SqliteStore::open(&cfg.hub.database_url, true).await.expect("db");
    store.migrate().await.expect("migrate");
    for u in users {
        store.upsert_user(u, false, 0).await.expect("user");
    }
    let store: Arc<dyn Store> = Arc::new(store);
    (Arc::new(Renewer::new(cfg.kerberos, Some(store.clone()))), store)
}

fn klist_ok(kdc: &Kdc, ccache: &Path) -> bool {
    std::process::Command::new("klist")
        .arg("-s")
        .arg("-c")
        .arg(format!("FILE:{}", ccache.display()))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .status()
        .is_ok_and(|s| s.success())
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With no user activity at all, the timer keeps a running server's ticket valid across three
/// lifetimes; a kernel started at the beginning (from a hub-written kernelspec) sees a valid
/// ticket at the end, `KRB5CCNAME`, and the kernelspec's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_keeps_an_idle_users_ticket_valid() {
    require_root();
    let life = short_life();
    let pam = PamService::create();
    let kdc = Kdc::start_short(life);
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let venv = support::venv();
    let opts = HubOptions {
        kerberos: "min_remaining = \"10s\"".into(),
        tail: format!(
            "[[kernelspec]]\nname = \"krb-python\"\ndisplay_name = \"Python (Kerberos)\"\n\
             argv = [\"{}/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{{connection_file}}\"]\n\
             env = {{ HUB_PRINCIPAL = \"{{principal}}\", HUB_KEYTAB = \"{{keytab}}\" }}\n",
            venv.display()
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    let c = hub.client();
    let cookie = hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;

    // The kernelspec is on the server's JUPYTER_PATH.
    let specs: serde_json::Value = c
        .get(hub.url(&format!("/user/{}/api/kernelspecs", ann.name)))
        .send()
        .await
        .expect("kernelspecs")
        .json()
        .await
        .expect("json");
    assert!(specs["kernelspecs"]["krb-python"].is_object(), "{specs}");
    let kernel_id = hub.start_kernel(&c, &ann.name, "krb-python").await;

    // Three lifetimes with nobody touching anything; the ticket must never lapse.
    let ccache = hub.data_dir.path().join(format!("ccache/krb5cc_{}", ann.uid));
    let first = hub.state.renewer.status(&ann.name).expect("status").valid_until.expect("ticket");
    let end = tokio::time::Instant::now() + life * 3 + Duration::from_secs(5);
    let mut checks = 0;
    while tokio::time::Instant::now() < end {
        assert!(klist_ok(&kdc, &ccache), "the ticket lapsed after {checks} checks");
        let meta = std::fs::metadata(&ccache).expect("ccache");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (ann.uid, 0o600));
        checks += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let st = hub.state.renewer.status(&ann.name).expect("status");
    assert!(st.valid_until.expect("ticket") >= first + 2 * life.as_secs() as i64, "{st:?}");
    assert!(support::log_line_with(&[&ann.name, "trigger=timer", "kinit succeeded"]), "timer renewals logged");

    // The kernel, started three lifetimes ago, sees a valid ticket and the kernelspec's env.
    let (mut ws, session) = crate::kernel_channels(&hub, &ann.name, &kernel_id, &cookie).await;
    let code = "import os, subprocess; '|'.join([str(subprocess.run(['klist', '-s']).returncode), \
                os.environ['KRB5CCNAME'], os.environ['HUB_PRINCIPAL']])";
    let out = crate::execute(&mut ws, &session, code).await;
    assert_eq!(out, format!("'0|FILE:{}|{}@{}'", ccache.display(), ann.name, kdc.realm));
    ws.close(None).await.expect("close");
    let _ = ws.next().await;
    let _ = ws.send(Message::Close(None)).await;
    hub.stop().await;
}

/// 50 saves within a second after `event_min_interval` cause one kinit, not 50; saves within
/// the interval cause none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_saves_cause_one_kinit() {
    require_root();
    let pam = PamService::create();
    let kdc = Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let opts = HubOptions { kerberos: "event_min_interval = \"8s\"".into(), ..Default::default() };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    let c = hub.client();
    hub.login(&c, &ann.name, &ann.password).await;
    hub.wait_ready(&c, &ann.name).await;
    let runs = || hub.state.renewer.status(&ann.name).map(|s| s.kinit_runs).unwrap_or(0);
    let url = hub.url(&format!("/user/{}/api/contents/busy.ipynb", ann.name));
    let nb = crate::notebook("1");

    // Within the interval of the login's kinit: saves are folded into it.
    let before = runs();
    let r = c.put(&url).json(&nb).send().await.expect("save");
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(), before, "a save right after a renewal must not run kinit");

    // After the interval: a burst of 50 concurrent saves runs exactly one kinit.
    let last = hub.state.renewer.status(&ann.name).and_then(|s| s.last_success).expect("success");
    wait_until("the interval to pass", Duration::from_secs(15), || hub::unix_now() >= last + 9).await;
    let before = runs();
    let started = std::time::Instant::now();
    let saves = (0..50).map(|_| c.put(&url).json(&nb).send());
    for r in futures_util::future::join_all(saves).await {
        assert!(r.expect("save").status().is_success());
    }
    let burst = started.elapsed();
    wait_until("the renewal to finish", Duration::from_secs(10), || {
        hub.state.renewer.status(&ann.name).and_then(|s| s.last_success).is_some_and(|s| s > last)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(), before + 1, "50 saves in {burst:?} must cause exactly one kinit");
    assert!(support::log_line_with(&[&ann.name, "trigger=save", "outcome=coalesced"]));
    hub.stop().await;
}

/// A KDC outage: renewals fail and back off, the server keeps running and serving; when the
/// KDC returns, the next retry (within one backoff step) succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdc_outage_backs_off_and_recovers() {
    require_root();
    let pam = PamService::create();
    let mut kdc = Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let opts = HubOptions {
        kerberos: "event_min_interval = \"0s\"\nretry_min = \"2s\"\nretry_max = \"6s\"\nkinit_timeout = \"5s\"".into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    let c = hub.client();
    hub.login(&c, &ann.name, &ann.password).await;
    hub.wait_ready(&c, &ann.name).await;
    let status_url = hub.url(&format!("/user/{}/api/status", ann.name));
    let st = || hub.state.renewer.status(&ann.name).expect("status");
    let good_until = st().valid_until.expect("ticket");

    kdc.stop();
    let r =
        c.put(hub.url(&format!("/user/{}/api/contents/o.ipynb", ann.name))).json(&crate::notebook("1")).send().await;
    assert!(r.expect("save").status().is_success(), "a save during an outage still saves");
    // The timer retries on its own: 2 s, 4 s, 6 s (±20 %).
    wait_until("three failures", Duration::from_secs(40), || st().consecutive_failures >= 3).await;
    let s = st();
    assert!(s.last_error.as_deref().unwrap_or_default().contains("kinit"), "{s:?}");
    let gap = s.next_renewal.expect("retry scheduled") - hub::unix_now();
    assert!((1..=8).contains(&gap), "the retry waits one backoff step, not more: {gap} s");
    assert_eq!(s.valid_until, Some(good_until), "the old ticket stays in place");
    assert_eq!(c.get(&status_url).send().await.expect("status").status(), 200, "the server keeps working");
    let home = c.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    assert!(home.contains("in a row") && home.contains("keeps retrying"), "{home}");

    kdc.restart();
    wait_until("recovery within one backoff step", Duration::from_secs(10), || st().consecutive_failures == 0).await;
    let s = st();
    assert!(s.last_error.is_none() && s.valid_until > Some(good_until), "{s:?}");
    assert_eq!(c.get(&status_url).send().await.expect("status").status(), 200);
    hub.stop().await;
}

/// A keytab readable by others, or owned by another user, is refused with a clear error and
/// no kinit runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_keytabs_are_refused() {
    require_root();
    let kdc = Kdc::start();
    let ann = TestUser::create();
    let bob = TestUser::create();
    let keytab = kdc.add_user_with_keytab(&ann);
    let dir = tempfile::tempdir().expect("tmp");
    let (renewer, _) = renewer(&kdc, dir.path(), "event_min_interval = \"0s\"", &[&ann.name]).await;
    let o = owner(&ann);

    std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = renewer.renew(&o, Trigger::Login).await.expect_err("0644 refused").to_string();
    assert!(e.contains("readable by group or others") && e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(&keytab, Some(bob.uid), None).expect("chown");
    // After a failure, events wait for the backoff; the timer's trigger does not.
    let e = renewer.renew(&o, Trigger::Login).await.expect_err("backing off").to_string();
    assert!(e.contains("not retried before"), "{e}");
    let e = renewer.renew(&o, Trigger::Timer).await.expect_err("foreign owner refused").to_string();
    assert!(e.contains(&format!("owned by uid {}", bob.uid)), "{e}");
    assert_eq!(renewer.kinit_counts().0, 0, "no kinit may run for an unsafe keytab");
    assert!(!dir.path().join(format!("ccache/krb5cc_{}", ann.uid)).exists());
    assert_eq!(renewer.status(&ann.name).expect("status").consecutive_failures, 2);

    std::os::unix::fs::chown(&keytab, Some(ann.uid), None).expect("chown back");
    renewer.renew(&o, Trigger::Timer).await.expect("a safe keytab works");
    assert_eq!(renewer.kinit_counts().0, 1);
}

/// A reader that keeps opening the ccache during 100 renewals never sees it missing or
/// invalid; after each renewal it is the user's, mode 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_torn_ccache() {
    require_root();
    let kdc = Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let dir = tempfile::tempdir().expect("tmp");
    let (renewer, _) = renewer(&kdc, dir.path(), "event_min_interval = \"0s\"", &[&ann.name]).await;
    let o = owner(&ann);
    renewer.renew(&o, Trigger::Login).await.expect("first kinit");
    let ccache: PathBuf = dir.path().join(format!("ccache/krb5cc_{}", ann.uid));

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, ccache, conf) = (stop.clone(), reads.clone(), ccache.clone(), kdc.krb5_conf());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&ccache).map_err(|e| format!("read: {e}"))?;
                hub::ccache::parse(&bytes).map_err(|e| format!("parse: {e}"))?;
                let n = reads.fetch_add(1, Ordering::Relaxed);
                if n % 25 == 0 {
                    let ok = std::process::Command::new("klist")
                        .args(["-s", "-c"])
                        .arg(format!("FILE:{}", ccache.display()))
                        .env("KRB5_CONFIG", &conf)
                        .status()
                        .map_err(|e| e.to_string())?;
                    if !ok.success() {
                        return Err("klist -s failed".into());
                    }
                }
            }
            Ok(())
        })
    };
    for i in 0..100 {
        renewer.renew(&o, Trigger::Save).await.unwrap_or_else(|e| panic!("renewal {i}: {e}"));
        let meta = std::fs::symlink_metadata(&ccache).expect("ccache");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (ann.uid, ann.gid, 0o600), "after renewal {i}");
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread").expect("the reader saw a missing or invalid ccache");
    assert!(reads.load(Ordering::Relaxed) >= 100, "the reader ran during the renewals");
    assert_eq!(renewer.kinit_counts().0, 101);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(ccache.parent().expect("dir")).expect("ls").flatten().collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

/// `max_concurrent_kinit` bounds kinit processes hub-wide, and every queued renewal runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinit_concurrency_is_bounded() {
    require_root();
    let kdc = Kdc::start();
    let dir = tempfile::tempdir().expect("tmp");
    let names: Vec<String> = (0..16).map(|i| format!("svc{i}x{}", random_hex(2))).collect();
    let keytab = dir.path().join("all.keytab");
    kdc.add_principals(&names, &keytab);
    let extra = format!("max_concurrent_kinit = 3\nkeytab = \"{}\"", keytab.display());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (renewer, _) = renewer(&kdc, dir.path(), &extra, &refs).await;
    for (i, n) in names.iter().enumerate() {
        // Owners need no passwd entry: the ccache is chowned to a bare UID.
        renewer.trigger(TicketOwner { username: n.clone(), uid: 60_000 + i as u32, gid: 60_000 }, Trigger::Login);
    }
    wait_until("all renewals", Duration::from_secs(30), || {
        names.iter().all(|n| renewer.status(n).is_some_and(|s| s.last_success.is_some()))
    })
    .await;
    let (total, peak) = renewer.kinit_counts();
    assert_eq!(total, 16);
    assert!(peak <= 3, "at most 3 kinit at once, saw {peak}");
    for (i, n) in names.iter().enumerate() {
        let meta = std::fs::metadata(dir.path().join(format!("ccache/krb5cc_{}", 60_000 + i))).expect("ccache");
        assert_eq!(meta.uid(), 60_000 + i as u32, "{n}");
    }
}

/// After a restart, the renewer reads the failure count and last success back from the
/// database and schedules the next renewal from the ccache, not from scratch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_the_schedule() {
    require_root();
    let kdc = Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let dir = tempfile::tempdir().expect("tmp");
    let o = owner(&ann);
    let before = {
        let (r, _) = renewer(&kdc, dir.path(), "", &[&ann.name]).await;
        r.activate(&o);
        r.renew(&o, Trigger::Login).await.expect("kinit");
        r.status(&ann.name).expect("status")
    };
    let (r2, store) = renewer(&kdc, dir.path(), "", &[]).await;
    assert!(store.get_ticket(&ann.name).await.expect("db").is_some(), "the state was recorded");
    r2.restore(std::slice::from_ref(&o)).await;
    let after = r2.status(&ann.name).expect("restored status");
    assert_eq!(after.last_success, before.last_success);
    assert_eq!(after.valid_until, before.valid_until);
    let (start, end) = (before.valid_from.expect("from"), before.valid_until.expect("until"));
    let next = after.next_renewal.expect("scheduled");
    // 10 h ticket: renewal due between 65 % and 75 % of its life, not now and not at the end.
    let life = end - start;
    assert!(next >= start + life * 65 / 100 && next <= start + life * 75 / 100, "{after:?}");
    assert_eq!(r2.kinit_counts().0, 0, "restoring runs no kinit while the ticket is good");
}
