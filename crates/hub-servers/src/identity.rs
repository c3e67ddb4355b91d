//! Running a helper command as a user: the privilege drop the hub's short-lived helpers share
//! (`hub runner --cat`, `sbatch`, `tail` of a job's output). Long-lived servers and runs go
//! through the spawner, which also sets up a session and limits.

use std::os::unix::process::CommandExt;

use hub_core::LinuxUser;

/// Makes `cmd` run under `user`'s UID, primary GID and supplementary groups: `setgroups`,
/// `setgid`, `setuid` in the child before exec, then a check that root cannot be regained
/// (the exec fails with `EPERM` if `setuid(0)` still works). The caller refuses UID 0 first.
pub fn drop_to(cmd: &mut std::process::Command, user: &LinuxUser) {
    let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) on data prepared before
    // fork; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setuid(0) == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        });
    }
}
