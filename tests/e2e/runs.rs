//! `hub run` on real parts: the hub binary, a real ipykernel from the venv, real Linux users,
//! a real KDC and a PostgreSQL that authenticates with Kerberos (GSSAPI), which the notebooks
//! reach as their owner.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{GssPostgres, Kdc, TestUser, require_root, short_life, venv};

/// A data_dir and hub.toml for `hub run`, with Kerberos on when a KDC is given.
struct RunConfig {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl RunConfig {
    fn new(kdc: Option<&Kdc>) -> Self {
        Self::with(kdc, "")
    }

    /// [`RunConfig::new`] with `extra` at the end of hub.toml.
    fn with(kdc: Option<&Kdc>, extra: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("hub-run-").tempdir().expect("tmp");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
        let kerberos = match kdc {
            Some(k) => format!(
                "[kerberos]\nenabled = true\nrealm = \"{}\"\nkrb5_config = \"{}\"\n",
                k.realm,
                k.krb5_conf().display()
            ),
            None => "[kerberos]\nenabled = false\n".into(),
        };
        let text = format!(
            "[hub]\ndata_dir = \"{}\"\n[spawner]\ncmd = [\"{}/bin/jupyter-lab\"]\nterm_timeout = \"5s\"\n{kerberos}{extra}\n",
            dir.path().display(),
            venv().display()
        );
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).expect("hub.toml");
        Self { _dir: dir, path }
    }

    /// `hub run --user USER ARGS...`: (exit status, stdout, stderr).
    fn run(&self, user: &TestUser, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_hub"))
            .arg("--config")
            .arg(&self.path)
            .args(["run", "--user", &user.name])
            .args(args)
            .output()
            .expect("hub run");
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }
}

/// Writes a notebook of code cells (`(source, tags)`) into `user`'s home at `rel`, owned by them.
fn notebook(user: &TestUser, rel: &str, cells: &[(&str, &[&str])]) -> PathBuf {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(i, (src, tags))| {
            json!({"cell_type": "code", "id": format!("c{i}"), "metadata": {"tags": tags}, "source": src, "outputs": [], "execution_count": null})
        })
        .collect();
    let nb = json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
    });
    let path = user.home.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, serde_json::to_vec_pretty(&nb).expect("json")).expect("write");
    chown_tree(user, &user.home);
    path
}

fn chown_tree(user: &TestUser, dir: &Path) {
    let status =
        Command::new("chown").arg("-R").arg(format!("{}:{}", user.uid, user.gid)).arg(dir).status().expect("chown");
    assert!(status.success());
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("json")
}

/// `nbformat.validate` from the venv, on the file.
fn assert_valid_nbformat(path: &Path) {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4)); print('valid')",
        ])
        .arg(path)
        .output()
        .expect("python");
    assert!(out.status.success(), "nbformat rejects {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

/// All text of a cell's outputs (stream text, text/plain results, error names).
fn cell_text(cell: &Value) -> String {
    let mut s = String::new();
    for o in cell["outputs"].as_array().into_iter().flatten() {
        for v in [&o["text"], &o["data"]["text/plain"], &o["ename"], &o["evalue"]] {
            if let Some(t) = v.as_str() {
                s.push_str(t);
                s.push('\n');
            }
        }
    }
    s
}

/// The cell with id `id` (the ids survive the run).
fn cell<'a>(nb: &'a Value, id: &str) -> &'a Value {
    nb["cells"].as_array().expect("cells").iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no cell {id}"))
}

fn no_process_left(user: &TestUser) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !user.processes().is_empty() {
        assert!(std::time::Instant::now() < deadline, "{} still has processes: {:?}", user.name, user.processes());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Python cell that connects to the GSSAPI PostgreSQL with psql and prints `current_user`.
fn psql_cell(pg: &GssPostgres, user: &TestUser) -> String {
    format!(
        "import subprocess\nr = subprocess.run(['psql', {:?}, '-tAc', 'select current_user'], capture_output=True, text=True)\nprint('pg:', r.stdout.strip(), r.stderr.strip())",
        pg.conninfo(&user.name)
    )
}

const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Case 1: a parameterised notebook run by `hub run` as ann, with her ticket, talking to a
/// Kerberos-secured service as her, every kind of output kept, nothing of hers left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_run_executes_a_parameterised_notebook_as_its_owner() {
    require_root();
    let kdc = Kdc::start();
    let pg = GssPostgres::start(&kdc);
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    pg.create_role(&ann.name);
    let cfg = RunConfig::new(Some(&kdc));
    let psql = psql_cell(&pg, &ann);
    let image = format!(
        "from IPython.display import Image, display\nimport base64\ndisplay(Image(data=base64.b64decode('{PNG_1X1}')))"
    );
    notebook(
        &ann,
        "reports/daily.ipynb",
        &[
            ("date = None\nlimit = 1\nratio = 0.0\nfull = False", &["parameters"]),
            ("print('params', repr(date), limit * 2, ratio, full)", &[]),
            ("print([l for l in open('/proc/self/status') if l.startswith('Uid:')][0].split()[1:])", &[]),
            (
                "import subprocess, os\nprint('klist -s:', subprocess.run(['klist', '-s']).returncode, os.environ['KRB5CCNAME'])",
                &[],
            ),
            (&psql, &[]),
            (&image, &[]),
            ("6 * 7", &[]),
            ("raise ValueError('expected')", &["raises-exception"]),
        ],
    );
    let (code, stdout, stderr) = cfg.run(
        &ann,
        &["reports/daily.ipynb", "-p", "date=2026-12-01", "-p", "limit=100", "-p", "ratio=0.5", "-p", "full=true"],
    );
    assert_eq!(code, 0, "hub run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("[  9/9] ok"), "a progress line per cell: {stdout}");
    assert!(stdout.contains("succeeded: 9 cell(s)"), "{stdout}");
    let out = ann.home.join("reports/daily.out.ipynb");
    assert_valid_nbformat(&out);
    let meta = std::fs::metadata(&out).expect("output");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), ann.uid, "the output is ann's, written as ann");
    let nb = read_json(&out);
    // papermill's injection: a new cell tagged injected-parameters right after the parameters cell.
    let cells = nb["cells"].as_array().expect("cells");
    assert_eq!(cells[0]["id"], "c0");
    assert_eq!(cells[1]["metadata"]["tags"], json!(["injected-parameters"]));
    assert_eq!(cells[1]["source"], "# Parameters\ndate = \"2026-12-01\"\nlimit = 100\nratio = 0.5\nfull = True\n");
    assert!(cell_text(cell(&nb, "c1")).contains("params '2026-12-01' 200 0.5 True"), "{}", cell(&nb, "c1"));
    let uid_line = cell_text(cell(&nb, "c2"));
    assert!(uid_line.contains(&format!("['{0}', '{0}', '{0}', '{0}']", ann.uid)), "kernel runs as ann: {uid_line}");
    assert!(cell_text(cell(&nb, "c3")).contains("klist -s: 0 FILE:"), "{}", cell(&nb, "c3"));
    let pg_out = cell_text(cell(&nb, "c4"));
    assert!(pg_out.contains(&format!("pg: {} ", ann.name)), "current_user is ann over GSSAPI: {pg_out}");
    let display = &cell(&nb, "c5")["outputs"][0];
    assert_eq!(display["output_type"], "display_data");
    assert_eq!(display["data"]["image/png"].as_str().map(str::trim), Some(PNG_1X1));
    let result = &cell(&nb, "c6")["outputs"][0];
    assert_eq!(
        (result["output_type"].as_str(), result["data"]["text/plain"].as_str()),
        (Some("execute_result"), Some("42"))
    );
    let error = &cell(&nb, "c7")["outputs"][0];
    assert_eq!((error["output_type"].as_str(), error["ename"].as_str()), (Some("error"), Some("ValueError")));
    assert_eq!(nb["metadata"]["hub"]["state"], "succeeded");
    assert_eq!(nb["metadata"]["hub"]["principal"], format!("{}@{}", ann.name, kdc.realm));
    assert_eq!(nb["metadata"]["hub"]["parameters"]["limit"], 100);
    no_process_left(&ann);
}

/// Case 2: a cell that sleeps past three ticket lifetimes, then reaches the Kerberos service
/// again as ann: the renewer kept the ticket valid under the running kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_three_ticket_lifetimes_keeps_a_valid_ticket() {
    require_root();
    let life = short_life();
    let kdc = Kdc::start_short(life);
    let pg = GssPostgres::start(&kdc);
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    pg.create_role(&ann.name);
    let cfg = RunConfig::new(Some(&kdc));
    let psql = psql_cell(&pg, &ann);
    let sleep = format!("import time\ntime.sleep({})", life.as_secs() * 3 + 15);
    notebook(
        &ann,
        "long.ipynb",
        &[
            (&psql, &[]),
            (&sleep, &[]),
            (&psql, &[]),
            ("import subprocess\nprint('klist -s:', subprocess.run(['klist', '-s']).returncode)", &[]),
        ],
    );
    let (code, stdout, stderr) = cfg.run(&ann, &["long.ipynb", "--output", "out/long.ipynb"]);
    assert_eq!(code, 0, "hub run failed:\n{stdout}\n{stderr}");
    let nb = read_json(&ann.home.join("out/long.ipynb"));
    let who = format!("pg: {} ", ann.name);
    assert!(cell_text(cell(&nb, "c0")).contains(&who), "{}", cell(&nb, "c0"));
    assert!(cell_text(cell(&nb, "c2")).contains(&who), "after three lifetimes: {}", cell(&nb, "c2"));
    assert!(cell_text(cell(&nb, "c3")).contains("klist -s: 0"), "{}", cell(&nb, "c3"));
    no_process_left(&ann);
}

/// Case 3: a failing cell fails the run; the output marks it with its traceback, the cells
/// after it did not run, and `hub run` exits 1 naming the cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cell_fails_the_run_and_is_marked() {
    require_root();
    let ann = TestUser::create();
    let cfg = RunConfig::new(None);
    notebook(&ann, "fail.ipynb", &[("x = 1", &[]), ("1 / 0", &[]), ("print('never')", &[])]);
    let (code, stdout, stderr) = cfg.run(&ann, &["fail.ipynb"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("failed: code cell 2 of 3 raised ZeroDivisionError: division by zero"), "{stdout}");
    let nb = read_json(&ann.home.join("fail.out.ipynb"));
    assert_eq!(nb["metadata"]["hub"]["state"], "failed");
    assert_eq!(nb["cells"][0]["metadata"]["tags"], json!(["hub-error"]), "a banner first, as papermill adds");
    let failed = cell(&nb, "c1");
    assert_eq!(failed["metadata"]["hub"]["status"], "failed");
    let tb = failed["outputs"][0]["traceback"].as_array().expect("traceback");
    assert!(tb.iter().any(|l| l.as_str().is_some_and(|l| l.contains("ZeroDivisionError"))), "{failed}");
    let later = cell(&nb, "c2");
    assert_eq!(later["metadata"]["hub"]["status"], "pending");
    assert_eq!(later["outputs"], json!([]));
    assert_eq!(later["execution_count"], Value::Null);
    assert_valid_nbformat(&ann.home.join("fail.out.ipynb"));
    no_process_left(&ann);
}

/// Case 4: a cell that never ends, with a 10 s run limit, is interrupted; the run is timed
/// out, and nothing of the user's (the kernel, a child it started) is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_interrupted_and_leaves_nothing() {
    require_root();
    let ann = TestUser::create();
    let cfg = RunConfig::new(None);
    notebook(
        &ann,
        "hang.ipynb",
        &[(
            "import subprocess, time\nchild = subprocess.Popen(['sleep', '1000'])\nprint('started')\nwhile True: time.sleep(1)",
            &[],
        )],
    );
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = cfg.run(&ann, &["hang.ipynb", "--timeout", "10s"]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "interrupted, not left to run");
    assert!(
        stdout.contains("timed out: code cell 1 of 1 did not finish within the run's time limit (10s)"),
        "{stdout}"
    );
    let nb = read_json(&ann.home.join("hang.out.ipynb"));
    assert_eq!(nb["metadata"]["hub"]["state"], "timed_out");
    let c = cell(&nb, "c0");
    assert_eq!(c["metadata"]["hub"]["status"], "timed_out");
    assert!(cell_text(c).contains("started"), "output before the limit is kept: {c}");
    no_process_left(&ann);
}

/// Case 7 (the `hub run` part): refusals that read and run nothing, each naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_run_refuses_bad_paths_notebooks_and_kernels() {
    require_root();
    let (ann, bob) = (TestUser::create(), TestUser::create());
    let cfg = RunConfig::new(None);
    notebook(&ann, "ok.ipynb", &[("print('ran')", &[])]);
    // bob's notebook, readable by everyone, reached through a link in ann's home.
    let secret = notebook(&bob, "secret.ipynb", &[("print('bob')", &[])]);
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::symlink(&secret, ann.home.join("link.ipynb")).expect("symlink");
    // A hard link in ann's home to a file that is not hers.
    let foreign = ann.home.join("foreign.ipynb");
    std::fs::copy(&secret, &foreign).expect("copy");
    std::os::unix::fs::chown(&foreign, Some(bob.uid), Some(bob.gid)).expect("chown");
    std::fs::write(ann.home.join("broken.ipynb"), "{\n \"cells\": [\n  {\"cell_type\": \"code\",,}\n ]\n}\n")
        .expect("write");
    chown_tree(&ann, &ann.home.join("broken.ipynb"));
    let cases: &[(&[&str], &str)] = &[
        (&["link.ipynb"], "is outside your home directory"),
        (&[&secret.display().to_string()], "is outside your home directory"),
        (&["../x/ok.ipynb"], "is outside your home directory"),
        (&["foreign.ipynb"], &format!("belongs to uid {}, not to you", bob.uid)),
        (&["broken.ipynb"], "the notebook is not valid JSON: key must be a string at line 3, column 24"),
        (&["ok.ipynb", "--kernel", "nosuch"], "no kernel named \"nosuch\"; the kernels you have are: "),
        (&["ok.ipynb", "--output", "ok.ipynb"], "would replace the notebook itself"),
        (&["ok.ipynb", "--output", "/etc/out.ipynb"], "is outside your home directory"),
        (&["missing.ipynb"], "No such file or directory"),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = cfg.run(&ann, args);
        assert_eq!(code, 2, "{args:?}: {stdout}\n{stderr}");
        assert!(stdout.contains(expected), "{args:?}: expected {expected:?} in: {stdout}");
        assert!(!stdout.contains("kernel ready"), "{args:?}: no kernel may start");
    }
    assert!(!ann.home.join("link.out.ipynb").exists() && !ann.home.join("ok.out.ipynb").exists());
    let bad = cfg.run(&ann, &["ok.ipynb", "-p", "cols=[1,"]);
    assert!(bad.0 != 0 && bad.2.contains("starts like JSON but is not valid JSON"), "{bad:?}");
    let root = Command::new(env!("CARGO_BIN_EXE_hub"))
        .arg("--config")
        .arg(&cfg.path)
        .args(["run", "--user", "root", "ok.ipynb"])
        .output()
        .expect("hub run");
    assert!(!root.status.success());
    assert!(String::from_utf8_lossy(&root.stderr).contains("user code never runs as root"));
    no_process_left(&ann);
}

/// A run gets the user's `[limits]` with `[jobs.limits]` over them, in a cgroup of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_has_the_job_limits_in_a_cgroup_of_its_own() {
    require_root();
    let ann = TestUser::create();
    let cfg = RunConfig::with(None, "[limits]\nmemory = \"1 GiB\"\ntasks = 512\n[jobs.limits]\nmemory = \"256 MiB\"\n");
    let probe = "cg = [l.split(':', 2) for l in open('/proc/self/cgroup').read().splitlines()]\n\
mem = [p for _, c, p in cg if 'memory' in c.split(',')]\n\
base = '/sys/fs/cgroup/memory' + mem[0] if mem else '/sys/fs/cgroup' + [p for h, c, p in cg if h == '0'][0]\n\
import os\n\
f = os.path.join(base, 'memory.limit_in_bytes')\n\
f = f if os.path.exists(f) else os.path.join(base, 'memory.max')\n\
print('cgroup', base, 'limit', open(f).read().strip())";
    notebook(&ann, "limits.ipynb", &[(probe, &[])]);
    let (code, stdout, stderr) = cfg.run(&ann, &["limits.ipynb"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let nb = read_json(&ann.home.join("limits.out.ipynb"));
    let text = cell_text(cell(&nb, "c0"));
    assert!(text.contains(&format!("limit {}", 256u64 << 20)), "[jobs.limits] memory over the user's 1 GiB: {text}");
    assert!(text.contains(&format!("{}.run-cli-", ann.name)), "a cgroup of the run's own: {text}");
    no_process_left(&ann);
}

/// Without a keytab, the hub can only renew the ticket the user got at sign-in: a run is
/// refused when there is none, or when it cannot be kept valid past the run's time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keytab_a_run_must_fit_in_the_login_ticket() {
    require_root();
    let kdc = Kdc::start_short(Duration::from_secs(120));
    let ann = TestUser::create();
    kdc.kadmin(&format!(
        "addprinc -pw {} -maxlife \"120 seconds\" -maxrenewlife \"600 seconds\" {}@{}",
        ann.password, ann.name, kdc.realm
    ));
    let cfg = RunConfig::new(Some(&kdc));
    notebook(&ann, "ok.ipynb", &[("print('ran')", &[])]);
    let (code, stdout, stderr) = cfg.run(&ann, &["ok.ipynb"]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("has no valid Kerberos ticket and no keytab"), "{stderr}");
    assert!(!ann.home.join("ok.out.ipynb").exists(), "nothing ran");
    // A ticket as from a sign-in: renewable for 10 minutes.
    let ccache = cfg.path.parent().expect("dir").join("ccache").join(format!("krb5cc_{}", ann.uid));
    std::fs::create_dir_all(ccache.parent().expect("dir")).expect("mkdir");
    let mut kinit = Command::new("kinit")
        .args(["-r", "600s", "-c"])
        .arg(format!("FILE:{}", ccache.display()))
        .arg(format!("{}@{}", ann.name, kdc.realm))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kinit");
    use std::io::Write;
    kinit.stdin.take().expect("stdin").write_all(format!("{}\n", ann.password).as_bytes()).expect("password");
    assert!(kinit.wait().expect("wait").success(), "kinit");
    std::os::unix::fs::chown(&ccache, Some(ann.uid), Some(ann.gid)).expect("chown");
    let (code, stdout, stderr) = cfg.run(&ann, &["ok.ipynb", "--timeout", "1h"]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("can be kept valid only until"), "{stderr}");
    assert!(!ann.home.join("ok.out.ipynb").exists(), "nothing ran");
    let (code, stdout, stderr) = cfg.run(&ann, &["ok.ipynb", "--timeout", "2m"]);
    assert_eq!(code, 0, "a run that fits in the renewable life goes: {stdout}\n{stderr}");
    no_process_left(&ann);
}
