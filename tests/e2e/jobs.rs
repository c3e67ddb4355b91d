//! Jobs through the REST API against a running hub: real users, a real ipykernel, the
//! scheduler's timing, overlap and limits, kill -9 of the hub during a run, refusals.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    HubOptions, HubProcess, PamService, TestHub, TestUser, client_for, random_hex, require_root, venv,
};

/// An API request with `token`; (status, JSON body or Null).
async fn api(base: &str, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("api request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Signs `user` in and makes an API token with `scopes` (default: all of the user's).
async fn user_token(base: &str, user: &TestUser, scopes: Option<&[&str]>) -> String {
    let c = client_for(base);
    let r = crate::support::post_login(base, &c, &user.name, &user.password).await;
    assert_eq!(r.status(), 303, "login");
    let home = c.get(format!("{base}/hub/home")).send().await.expect("home").text().await.expect("body");
    let xsrf = crate::support::xsrf_in(&home).expect("xsrf");
    let mut body = json!({"note": "jobs test"});
    if let Some(s) = scopes {
        body["scopes"] = json!(s);
    }
    let r = c
        .post(format!("{base}/hub/api/users/{}/tokens", user.name))
        .header("X-XSRFToken", &xsrf)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_string()
}

/// A notebook of code cells in `user`'s home at `rel`, owned by them.
fn notebook(user: &TestUser, rel: &str, cells: &[&str]) {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(i, src)| json!({"cell_type": "code", "id": format!("c{i}"), "metadata": {}, "source": src, "outputs": [], "execution_count": null}))
        .collect();
    let nb =
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}}, "cells": cells});
    let path = user.home.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, serde_json::to_vec(&nb).expect("json")).expect("write");
    let s = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(&user.home)
        .status();
    assert!(s.expect("chown").success());
}

/// Polls run `id` until its state is one of `states`; returns its model.
async fn wait_run(base: &str, token: &str, user: &str, job: &str, id: i64, states: &[&str], secs: u64) -> Value {
    let path = format!("/hub/api/users/{user}/jobs/{job}/runs/{id}");
    let mut last = Value::Null;
    for _ in 0..secs * 5 {
        let (s, v) = api(base, Method::GET, &path, token, None).await;
        assert_eq!(s, 200, "{v}");
        if states.iter().any(|st| v["state"] == *st) {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("run {id} of {job} never reached {states:?}: {last}");
}

async fn runs(base: &str, token: &str, user: &str, job: &str) -> Vec<Value> {
    let (s, v) = api(base, Method::GET, &format!("/hub/api/users/{user}/jobs/{job}/runs"), token, None).await;
    assert_eq!(s, 200, "{v}");
    v.as_array().expect("list").clone()
}

fn unix(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    humantime::parse_rfc3339(s).expect("rfc3339").duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
        as i64
}

/// "Run now", then a schedule of every minute: each run as the owner, output in the home,
/// scheduled runs starting within 2 s of the minute; pause stops the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_now_and_every_minute_as_its_owner() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = TestHub::start(&pam, None, "").await;
    let base = hub.url("");
    let token = user_token(&base, &ann, None).await;
    notebook(&ann, "nb/tick.ipynb", &["import os", "print('n =', n, 'uid', os.getuid())"]);
    let job = json!({"name": "tick", "notebook": "nb/tick.ipynb", "schedule": "* * * * *", "timezone": "Europe/Berlin", "parameters": {"n": 3}});
    let (s, v) = api(&base, Method::POST, &format!("/hub/api/users/{}/jobs", ann.name), &token, Some(job)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["overlap"].as_str(), v["catch_up"].as_str()),
        (Some("tick"), Some("skip"), Some("latest"))
    );
    // A job whose run outlasts its period: under overlap "skip" the next occurrence is skipped.
    notebook(&ann, "nb/sleeper.ipynb", &["import time\ntime.sleep(70)"]);
    let sleeper =
        json!({"name": "sleeper", "notebook": "nb/sleeper.ipynb", "schedule": "* * * * *", "overlap": "skip"});
    let (s, v) = api(&base, Method::POST, &format!("/hub/api/users/{}/jobs", ann.name), &token, Some(sleeper)).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["next_run"].is_string() && v["schedule_description"].is_string(), "{v}");
    // Run now.
    let (s, run) = api(&base, Method::POST, &format!("/hub/api/users/{}/jobs/tick/runs", ann.name), &token, None).await;
    assert_eq!(s, 201, "{run}");
    assert_eq!((run["state"].as_str(), run["reason"].as_str()), (Some("queued"), Some("manual")));
    let id = run["id"].as_i64().expect("id");
    let done = wait_run(&base, &token, &ann.name, "tick", id, &["succeeded", "failed", "timed_out"], 90).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let out = done["output_path"].as_str().expect("output path");
    assert!(out.starts_with(&format!("{}/notebook-runs/tick/tick-", ann.home.display())), "{out}");
    let meta = std::fs::metadata(out).expect("output exists");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), ann.uid);
    let nb: Value = serde_json::from_slice(&std::fs::read(out).expect("read")).expect("json");
    let printed = nb["cells"][2]["outputs"][0]["text"].as_str().unwrap_or_default().to_string();
    assert_eq!(printed, format!("n = 3 uid {}\n", ann.uid), "parameters injected, run as ann: {nb}");
    assert_eq!(
        done["output_lab_url"],
        format!(
            "/user/{}/lab/tree/notebook-runs/tick/{}",
            ann.name,
            Path::new(out).file_name().expect("name").to_string_lossy()
        )
    );
    // The output can be downloaded and the log read through the API.
    let r = reqwest::Client::new()
        .get(format!("{base}/hub/api/users/{}/jobs/tick/runs/{id}/output", ann.name))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("output");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), std::fs::read(out).expect("read").as_slice());
    let log = reqwest::Client::new()
        .get(format!("{base}/hub/api/users/{}/jobs/tick/runs/{id}/log", ann.name))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("log")
        .text()
        .await
        .expect("text");
    assert!(log.contains("@hub-run {\"event\":\"finished\",\"outcome\":\"succeeded\""), "{log}");
    // Two scheduled runs, at two minute boundaries.
    let mut scheduled: Vec<Value> = Vec::new();
    for _ in 0..(150 * 5) {
        scheduled =
            runs(&base, &token, &ann.name, "tick").await.into_iter().filter(|r| r["reason"] == "schedule").collect();
        if scheduled.iter().filter(|r| r["state"] == "succeeded").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ok: Vec<&Value> = scheduled.iter().filter(|r| r["state"] == "succeeded").collect();
    assert!(ok.len() >= 2, "two scheduled runs succeeded: {scheduled:?}");
    for r in &ok {
        let (occ, started) = (unix(&r["occurrence"]), unix(&r["started"]));
        assert_eq!(occ % 60, 0, "on the minute: {r}");
        assert!((0..=2).contains(&(started - occ)), "started within 2 s of its time: {r}");
        assert_ne!(r["output_path"], done["output_path"], "each run has its own output");
        assert!(Path::new(r["output_path"].as_str().expect("path")).exists());
    }
    // The sleeper's second occurrence came while its first run was going: skipped, and said so.
    let mut sleeper_runs = Vec::new();
    for _ in 0..(20 * 5) {
        sleeper_runs = runs(&base, &token, &ann.name, "sleeper").await;
        if sleeper_runs.iter().any(|r| r["state"] == "skipped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let skipped: Vec<&Value> = sleeper_runs.iter().filter(|r| r["state"] == "skipped").collect();
    assert!(!skipped.is_empty(), "an overlapping occurrence is skipped: {sleeper_runs:?}");
    assert!(
        skipped[0]["message"].as_str().unwrap_or_default().contains("was still going (overlap = skip)"),
        "{sleeper_runs:?}"
    );
    assert_eq!(skipped[0]["reason"], "schedule");
    let (s, _) = api(
        &base,
        Method::PATCH,
        &format!("/hub/api/users/{}/jobs/sleeper", ann.name),
        &token,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(s, 200);
    // Pause: no run is scheduled any more.
    let (s, v) = api(
        &base,
        Method::PATCH,
        &format!("/hub/api/users/{}/jobs/tick", ann.name),
        &token,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!((s, v["paused"].as_bool(), v["next_run"].is_null()), (200, Some(true), true), "{v}");
    let before = runs(&base, &token, &ann.name, "tick").await.len();
    let wait =
        61 - (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() % 60) + 2;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(runs(&base, &token, &ann.name, "tick").await.len(), before, "a paused job does not run");
    hub.stop().await;
}

/// Overlap `skip` refuses a second run while one goes; `queue` queues it; the per-user limit
/// queues runs beyond it; cancelling a running run interrupts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_limits_and_cancel() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let opts = HubOptions { tail: "[jobs]\nmax_runs_per_user = 1\n".into(), ..Default::default() };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let base = hub.url("");
    let token = user_token(&base, &ann, None).await;
    notebook(&ann, "slow.ipynb", &["import time\ntime.sleep(8)\nprint('slept')"]);
    let jobs = format!("/hub/api/users/{}/jobs", ann.name);
    for (name, overlap) in [("skipper", "skip"), ("queuer", "queue")] {
        let (s, v) = api(
            &base,
            Method::POST,
            &jobs,
            &token,
            Some(json!({"name": name, "notebook": "slow.ipynb", "overlap": overlap})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let run_now = |job: &'static str| {
        let (base, token, path) = (base.clone(), token.clone(), format!("{jobs}/{job}/runs"));
        async move { api(&base, Method::POST, &path, &token, None).await }
    };
    let (s, first) = run_now("skipper").await;
    assert_eq!(s, 201);
    let first_id = first["id"].as_i64().expect("id");
    wait_run(&base, &token, &ann.name, "skipper", first_id, &["running"], 60).await;
    let (s, v) = run_now("skipper").await;
    assert_eq!(s, 409, "overlap skip: {v}");
    assert!(v["message"].as_str().unwrap_or_default().contains("is still going"), "{v}");
    // ann may run one at a time: the other job's run waits, queued, until the first ends.
    let (s, q) = run_now("queuer").await;
    assert_eq!(s, 201);
    let q_id = q["id"].as_i64().expect("id");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, v) = api(&base, Method::GET, &format!("{jobs}/queuer/runs/{q_id}"), &token, None).await;
    assert_eq!(v["state"], "queued", "beyond max_runs_per_user a run waits: {v}");
    let (s, v) = run_now("queuer").await;
    assert_eq!(s, 409, "one queued run per job: {v}");
    let done = wait_run(&base, &token, &ann.name, "skipper", first_id, &["succeeded", "failed"], 60).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    wait_run(&base, &token, &ann.name, "queuer", q_id, &["running"], 30).await;
    // Overlap queue: a second run of a running job waits.
    let (s, second) = run_now("queuer").await;
    assert_eq!(s, 201, "{second}");
    // Cancel the running one: interrupted, recorded as cancelled; then the queued one runs.
    let (s, v) = api(&base, Method::DELETE, &format!("{jobs}/queuer/runs/{q_id}"), &token, None).await;
    assert_eq!(s, 202, "{v}");
    let c = wait_run(&base, &token, &ann.name, "queuer", q_id, &["cancelled", "succeeded", "failed"], 30).await;
    assert_eq!(c["state"], "cancelled", "{c}");
    let second =
        wait_run(&base, &token, &ann.name, "queuer", second["id"].as_i64().expect("id"), &["succeeded", "failed"], 60)
            .await;
    assert_eq!(second["state"], "succeeded", "{second}");
    // Ten "run now" at once: the store lets exactly one run in, the others are told why.
    let (s, v) =
        api(&base, Method::POST, &jobs, &token, Some(json!({"name": "burst", "notebook": "slow.ipynb"}))).await;
    assert_eq!(s, 201, "{v}");
    let burst: Vec<_> = (0..10).map(|_| tokio::spawn(run_now("burst"))).collect();
    let mut created = Vec::new();
    for b in burst {
        let (s, v) = b.await.expect("join");
        match s {
            201 => created.push(v["id"].as_i64().expect("id")),
            409 => assert!(v["message"].as_str().unwrap_or_default().contains("burst"), "{v}"),
            other => panic!("a parallel run now got {other}: {v}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one of ten parallel requests made a run");
    assert_eq!(runs(&base, &token, &ann.name, "burst").await.len(), 1, "and the store holds one run");
    let (s, _) = api(&base, Method::DELETE, &format!("{jobs}/burst/runs/{}", created[0]), &token, None).await;
    assert!(s == 200 || s == 202, "cancel: {s}");
    hub.stop().await;
}

/// Refusals, each with a clear error and nothing run: bad fields (400 naming the field),
/// another user's token (404), a service token for ann's jobs only, an unknown kernel and a
/// failing cell (the run fails and says why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_refusals_and_failures() {
    require_root();
    let pam = PamService::create();
    let (ann, bob) = (TestUser::create(), TestUser::create());
    let keys = tempfile::tempdir().expect("tmp");
    let svc = hub::api::tokens::generate();
    let svc_file = keys.path().join("svc.token");
    std::fs::write(&svc_file, &svc).expect("token");
    std::fs::set_permissions(&svc_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let opts = HubOptions {
        tail: format!(
            "[[services]]\nname = \"reports\"\napi_token_file = \"{}\"\nscopes = [\"custom:jobs!user={}\"]\n",
            svc_file.display(),
            ann.name
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let base = hub.url("");
    let (ann_token, bob_token) = (user_token(&base, &ann, None).await, user_token(&base, &bob, None).await);
    notebook(&ann, "ok.ipynb", &["print('ok')"]);
    notebook(&ann, "fails.ipynb", &["x = 1", "1 / 0", "print('never')"]);
    let jobs = format!("/hub/api/users/{}/jobs", ann.name);
    let bad: &[(Value, &str)] = &[
        (
            json!({"name": "a", "notebook": "ok.ipynb", "schedule": "every day"}),
            "schedule: \"every day\" is not a cron expression",
        ),
        (
            json!({"name": "a", "notebook": "ok.ipynb", "schedule": "0 6 * * *", "timezone": "Europe/Atlantis"}),
            "timezone: \"Europe/Atlantis\" is not an IANA time zone",
        ),
        (json!({"name": "a", "notebook": "../x/ok.ipynb"}), "notebook: \"../x/ok.ipynb\" has '..'"),
        (
            json!({"name": "a", "notebook": format!("{}/ok.ipynb", bob.home.display())}),
            "is outside your home directory",
        ),
        (json!({"name": "a/b", "notebook": "ok.ipynb"}), "name: must be 1-64 letters"),
        (json!({"name": "a", "notebook": "ok.ipynb", "timeout": "forever"}), "timeout: \"forever\" is not a duration"),
        (json!({"name": "a", "notebook": "ok.ipynb", "retrys": 2}), "retrys"),
    ];
    for (body, expected) in bad {
        let (s, v) = api(&base, Method::POST, &jobs, &ann_token, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["message"].as_str().unwrap_or_default().contains(expected), "{body}: expected {expected:?} in {v}");
    }
    let r = reqwest::Client::new()
        .post(format!("{base}{jobs}"))
        .header("Authorization", format!("token {ann_token}"))
        .header("Content-Type", "application/json")
        .body("{\"name\": \"a\", ")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "malformed JSON");
    let (s, v) = api(&base, Method::GET, &jobs, &ann_token, None).await;
    assert_eq!((s, v), (200, json!([])), "nothing was created by a refused request");
    // The service may manage ann's jobs and nothing else.
    let (s, v) = api(&base, Method::POST, &jobs, &svc, Some(json!({"name": "fails", "notebook": "fails.ipynb"}))).await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = api(&base, Method::GET, &format!("/hub/api/users/{}/jobs", bob.name), &svc, None).await;
    assert_eq!(s, 404, "the service cannot see bob's jobs");
    let (s, _) = api(&base, Method::GET, &format!("/hub/api/users/{}", ann.name), &svc, None).await;
    assert!(s == 403 || s == 404, "the service cannot read ann's user model: {s}");
    // bob cannot see or touch ann's jobs.
    for (m, p) in [
        (Method::GET, jobs.clone()),
        (Method::GET, format!("{jobs}/fails")),
        (Method::POST, format!("{jobs}/fails/runs")),
        (Method::DELETE, format!("{jobs}/fails")),
    ] {
        let (s, v) = api(&base, m.clone(), &p, &bob_token, None).await;
        assert_eq!(s, 404, "{m} {p} with bob's token: {v}");
    }
    // A failing cell fails the run, and the run says which cell and why.
    let (s, run) = api(&base, Method::POST, &format!("{jobs}/fails/runs"), &svc, None).await;
    assert_eq!(s, 201, "{run}");
    let done =
        wait_run(&base, &ann_token, &ann.name, "fails", run["id"].as_i64().expect("id"), &["succeeded", "failed"], 90)
            .await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["failed_cell"], 1, "{done}");
    assert_eq!(done["error"]["ename"], "ZeroDivisionError", "{done}");
    assert!(
        done["message"].as_str().unwrap_or_default().contains("code cell 2 of 3 raised ZeroDivisionError"),
        "{done}"
    );
    // An unknown kernel: the run fails at once, naming the kernels ann has.
    let (s, v) = api(
        &base,
        Method::POST,
        &jobs,
        &ann_token,
        Some(json!({"name": "k", "notebook": "ok.ipynb", "kernel": "julia-1.9"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, run) = api(&base, Method::POST, &format!("{jobs}/k/runs"), &ann_token, None).await;
    let done =
        wait_run(&base, &ann_token, &ann.name, "k", run["id"].as_i64().expect("id"), &["succeeded", "failed"], 60)
            .await;
    assert!(
        done["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no kernel named \"julia-1.9\"; the kernels you have are: python3"),
        "{done}"
    );
    hub.stop().await;
}

/// kill -9 of the hub during a run: the run goes on, the restarted hub re-adopts it and
/// records it once; an occurrence missed while the hub was down runs once after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_kill_9_of_the_hub_and_missed_occurrences_catch_up_once() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let dir = tempfile::Builder::new().prefix("hub-jobs-restart-").tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndata_dir = \"{}\"\nstop_servers_on_shutdown = false\n\
             [auth]\npam_service = \"{}\"\n[spawner]\ncmd = [\"{}/bin/jupyter-lab\"]\n[kerberos]\nenabled = false\n\
             [jobs]\nmissed_after = \"2s\"\n",
            dir.path().display(),
            pam.name,
            venv().display()
        ),
    )
    .expect("hub.toml");
    let status =
        std::process::Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&config).status();
    assert!(status.expect("migrate").success());
    let log = dir.path().join("hub.log");
    let mut hub = HubProcess::start(&config, &log);
    let base = hub.base.clone();
    let token = user_token(&base, &ann, None).await;
    let marker = format!("run-{}", random_hex(4));
    notebook(&ann, "long.ipynb", &[&format!("import time\ntime.sleep(12)\nprint('{marker}')")]);
    let jobs = format!("/hub/api/users/{}/jobs", ann.name);
    let (s, v) = api(&base, Method::POST, &jobs, &token, Some(json!({"name": "long", "notebook": "long.ipynb"}))).await;
    assert_eq!(s, 201, "{v}");
    let (_, run) = api(&base, Method::POST, &format!("{jobs}/long/runs"), &token, None).await;
    let id = run["id"].as_i64().expect("id");
    let running = wait_run(&base, &token, &ann.name, "long", id, &["running"], 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    hub.kill9();
    assert!(!ann.processes().is_empty(), "the run goes on without the hub");
    hub = HubProcess::start(&config, &log);
    let done = wait_run(&base, &token, &ann.name, "long", id, &["succeeded", "failed"], 60).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["started"], running["started"], "the same run, re-adopted");
    assert_eq!(runs(&base, &token, &ann.name, "long").await.len(), 1, "recorded once");
    let out: Value = serde_json::from_slice(&std::fs::read(done["output_path"].as_str().expect("path")).expect("read"))
        .expect("json");
    assert!(out.to_string().contains(&marker));

    // A job every minute; the hub is down across a minute boundary; after the restart the
    // missed occurrence runs once, as a catch-up.
    notebook(&ann, "quick.ipynb", &["print('quick')"]);
    let (s, v) = api(
        &base,
        Method::POST,
        &jobs,
        &token,
        Some(json!({"name": "minutely", "notebook": "quick.ipynb", "schedule": "* * * * *"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    if now % 60 > 50 {
        // Too close to the boundary to stop before it: wait for the next minute's start.
        tokio::time::sleep(Duration::from_secs(62 - now % 60)).await;
    }
    hub.kill9();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    tokio::time::sleep(Duration::from_secs(60 - now % 60 + 5)).await;
    hub = HubProcess::start(&config, &log);
    let mut found = Vec::new();
    for _ in 0..150 {
        found = runs(&base, &token, &ann.name, "minutely").await;
        if found.iter().any(|r| r["state"] == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up: Vec<&Value> = found.iter().filter(|r| r["reason"] == "catch-up").collect();
    assert_eq!(catch_up.len(), 1, "the missed occurrence runs once: {found:?}");
    assert_eq!(catch_up[0]["state"], "succeeded", "{found:?}");
    drop(hub);
}

/// Case 8: the Jobs page in headless Chromium (`tests/browser/jobs.mjs`): create a job, run
/// it now, watch it succeed, open its output notebook in JupyterLab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_page_in_chromium() {
    require_root();
    let script = crate::support::browser_script("jobs.mjs");
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = TestHub::start(&pam, None, "").await;
    notebook(&ann, "reports/greet.ipynb", &["greeting = 'default'", "print(greeting)"]);
    // The first cell holds the defaults: tag it `parameters`, as papermill users do.
    let path = ann.home.join("reports/greet.ipynb");
    let mut nb: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    nb["cells"][0]["metadata"]["tags"] = json!(["parameters"]);
    std::fs::write(&path, serde_json::to_vec(&nb).expect("json")).expect("write");
    let shots = hub.data_dir.path().join("jobs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args([hub.url("").as_str(), &ann.name, &ann.password, "reports/greet.ipynb"])
        .arg(&shots)
        .output()
        .await
        .expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if let Ok(dir) = std::env::var("HUB_TEST_ARTIFACTS") {
        for which in ["job", "lab"] {
            let _ = std::fs::copy(
                format!("{}-{which}.png", shots.display()),
                Path::new(&dir).join(format!("browser-jobs-{which}.png")),
            );
        }
    }
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    // What the browser did is what the hub holds: one job, one succeeded manual run.
    let job = hub.state.store.get_job(&ann.name, "browser-report").await.expect("get").expect("the job exists");
    let (runs, total) = hub.state.store.runs_of_job(job.id, 0, 10).await.expect("runs");
    assert_eq!(total, 1);
    assert_eq!((runs[0].state.as_str(), runs[0].reason.as_str()), ("succeeded", "manual"));
    hub.stop().await;
}
