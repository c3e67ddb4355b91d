//! Processes seen through `/proc` (proc(5)): identity (pid, owner, start time), state and the
//! process tree. Used to re-adopt servers and runs after a restart and to find what a process
//! left behind.

use std::collections::HashMap;

/// Whether `pid` is a live (not zombie) process of `uid` that started at `ticks`.
pub fn is_same_process(pid: u32, uid: u32, ticks: i64) -> bool {
    start_ticks(pid) == Some(ticks) && owner_uid(pid) == Some(uid) && !matches!(proc_state(pid), Some('Z' | 'X') | None)
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`, for n >= 3. The command name in
/// field 2 may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(n.checked_sub(3)?).map(str::to_string)
}

/// The process's start time in clock ticks after boot (`/proc/PID/stat` field 22).
pub fn start_ticks(pid: u32) -> Option<i64> {
    stat_field(pid, 22)?.parse().ok()
}

/// The state letter (`/proc/PID/stat` field 3: R, S, D, Z, X, ...).
pub fn proc_state(pid: u32) -> Option<char> {
    stat_field(pid, 3)?.chars().next()
}

/// Every process descended from `root` (not including it), from `/proc/*/stat`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some(ppid) = parent_pid(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// The parent pid (`/proc/PID/stat` field 4).
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_field(pid, 4)?.parse().ok()
}

/// The real UID of a live process, from `/proc/PID/status` (`Uid:` line), or `None` if gone.
pub fn owner_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}
