//! What JupyterHub users reach for every day (issue 25), against the real binary's router,
//! real PAM users and real JupyterLab: a hub API token that reaches the user's server,
//! JupyterLab's Hub menu, kernel-aware culling, the token page and announcements.

use serde_json::{Value, json};

use crate::support::{HubOptions, PamService, TestHub, TestUser, client_for, require_root, venv};

/// A new API token of `user` (signed in on `c`) with `scopes`, made with the session and its
/// XSRF token as the browser would.
async fn token_for(hub: &TestHub, c: &reqwest::Client, user: &str, scopes: Value) -> String {
    let home = c.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    let xsrf = crate::support::xsrf_in(&home).expect("xsrf on the home page");
    let r = c
        .post(hub.url(&format!("/hub/api/users/{user}/tokens")))
        .header("X-XSRFToken", &xsrf)
        .json(&json!({"note": "script", "scopes": scopes}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_string()
}

/// A script with only a hub API token (`access:servers!server=ann/`) uses jupyter_server's
/// REST API and a kernel WebSocket through the hub (tornado's client, no cookie, no Origin);
/// the kernel runs as ann. A token without the scope gets JupyterHub's 403 JSON, and the
/// token never reaches the server (the server answers only to its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_api_token_reaches_the_users_server_and_its_kernels() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = TestHub::start_with(&pam, None, HubOptions::default()).await;
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    hub.wait_ready(&c, &ann.name).await;
    let access = token_for(&hub, &c, &ann.name, json!([format!("access:servers!server={}/", ann.name)])).await;
    let read_only = token_for(&hub, &c, &ann.name, json!([format!("read:users!user={}", ann.name)])).await;

    let out = tokio::process::Command::new(venv().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/token_client.py"))
        .args([hub.url(""), ann.name.clone(), access.clone()])
        .output()
        .await
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.trim()).expect("the client's JSON");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["status_has_kernels"], true, "jupyter_server's /api/status: {v}");
    assert_eq!(v["save"], 201, "a notebook saved with a token: {v}");
    assert_eq!(v["start_kernel"], 201, "{v}");
    assert_eq!(v["kernel_uid"], ann.uid, "the kernel runs as ann: {v}");
    assert_eq!(v["delete_kernel"], 204, "{v}");

    let plain = reqwest::Client::new();
    let r = plain
        .get(hub.url(&format!("/user/{}/api/status", ann.name)))
        .header("Authorization", format!("token {read_only}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], 403);
    assert!(body["message"].as_str().expect("message").contains("access:servers"), "{body}");
    let r = plain
        .get(hub.url(&format!("/user/{}/api/status", ann.name)))
        .header("Authorization", format!("Bearer {access}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200, "Bearer works too");
    hub.stop().await;
}
