//! Renewer benchmark driver; run by `bench/renewer.sh`, which makes the realm and keytab.
//!
//! ```text
//! renewer_bench KRB5_CONF REALM KEYTAB PRINCIPAL_PREFIX N MAX_CONCURRENT
//! ```
//!
//! Renews N principals (`<prefix><i>@REALM`, all in one root-owned keytab) through the
//! hub's own [`Renewer`] at the concurrency bound, then reads back where the timer scheduled
//! each next renewal. Prints one JSON object: wall time, kinit/s, the peak number of kinit
//! processes at once, the spread of the scheduled renewals over the ticket lifetime, the
//! busiest second, and the process's CPU time and peak RSS.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::config::Config;
use hub::core::TicketOwner;
use hub::renewer::{Renewer, Trigger};

fn rusage(who: i32) -> (f64, i64) {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    anyhow::ensure!(a.len() == 7, "usage: renewer_bench KRB5_CONF REALM KEYTAB PREFIX N MAX_CONCURRENT");
    let (conf, realm, keytab, prefix) = (&a[1], &a[2], &a[3], &a[4]);
    let n: usize = a[5].parse()?;
    let bound: usize = a[6].parse()?;
    let dir = tempfile::tempdir()?;
    let text = format!(
        "[hub]\ndata_dir = \"{d}\"\n[spawner]\ncmd = [\"/bin/true\"]\n[kerberos]\nenabled = true\nrealm = \"{realm}\"\n\
         krb5_config = \"{conf}\"\nkeytab = \"{keytab}\"\nprincipal = \"{{username}}@{{realm}}\"\n\
         ccache = \"{d}/ccache/krb5cc_{{uid}}\"\nmax_concurrent_kinit = {bound}\n",
        d = dir.path().display()
    );
    let cfg = Config::parse(Path::new("bench.toml"), &text)?;
    let renewer = Arc::new(Renewer::new(cfg.kerberos, None));
    let owners: Vec<TicketOwner> = (0..n)
        .map(|i| TicketOwner { username: format!("{prefix}{i}"), uid: 200_000 + i as u32, gid: 200_000 })
        .collect();

    let (cpu0, _) = rusage(libc::RUSAGE_SELF);
    let (child_cpu0, _) = rusage(libc::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    for o in &owners {
        renewer.activate(o); // on the timer, as a running server would be
        renewer.trigger(o.clone(), Trigger::Login);
    }
    loop {
        let done = owners.iter().filter(|o| renewer.status(&o.username).is_some_and(|s| s.kinit_runs > 0)).count();
        if done == n {
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "renewals did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, maxrss_kib) = rusage(libc::RUSAGE_SELF);
    let (child_cpu1, _) = rusage(libc::RUSAGE_CHILDREN);

    let mut failures = 0;
    let mut fractions = Vec::new();
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for o in &owners {
        let s = renewer.status(&o.username).expect("status");
        if s.last_error.is_some() {
            failures += 1;
            continue;
        }
        let (start, end, next) =
            (s.valid_from.expect("from"), s.valid_until.expect("until"), s.next_renewal.expect("next"));
        fractions.push((next - start) as f64 / (end - start) as f64);
        *per_second.entry(next).or_default() += 1;
    }
    fractions.sort_by(f64::total_cmp);
    let pct = |p: f64| fractions.get(((fractions.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
    let (total, peak) = renewer.kinit_counts();
    let out = serde_json::json!({
        "n": n,
        "bound": bound,
        "kinit_runs": total,
        "failures": failures,
        "wall_s": wall,
        "kinit_per_s": total as f64 / wall,
        "peak_concurrent_kinit": peak,
        "next_renewal_fraction_min": pct(0.0),
        "next_renewal_fraction_p50": pct(0.5),
        "next_renewal_fraction_max": pct(1.0),
        "distinct_seconds": per_second.len(),
        "busiest_second": per_second.values().max().copied().unwrap_or(0),
        "hub_cpu_s": cpu1 - cpu0,
        "kinit_cpu_s": child_cpu1 - child_cpu0,
        "hub_peak_rss_mib": maxrss_kib as f64 / 1024.0,
    });
    println!("{out}");
    Ok(())
}
