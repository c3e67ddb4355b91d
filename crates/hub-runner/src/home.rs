//! The owner's files, reached only inside their home directory.
//!
//! The runner runs as the owner, so the kernel's permission checks already apply; on top of
//! them every path is resolved with `openat2(2)` and `RESOLVE_BENEATH` from a descriptor of the
//! home directory (Linux 5.6): a `..` or a symbolic link that leads out of the home is refused
//! by the kernel at the moment of opening, with no window between a check and the open. An
//! input must also be a regular file the owner owns, so a link (hard or symbolic) to another
//! user's readable file is refused too. Outputs are written to a temporary file in the same
//! directory and renamed over the target, so a reader sees the old or the new notebook, never a
//! part.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// The largest notebook read, in bytes (512 MiB).
pub const MAX_NOTEBOOK_BYTES: u64 = 512 << 20;

/// A path that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path leads out of the home directory.
    #[error(
        "{path} is outside your home directory {home} (through '..', an absolute path or a symbolic link); use a path inside it"
    )]
    Outside {
        /// The path as given.
        path: String,
        /// The home directory.
        home: String,
    },
    /// The file belongs to someone else.
    #[error("{path} belongs to uid {owner}, not to you (uid {uid}); copy it into your home first")]
    NotYours {
        /// The path as given.
        path: String,
        /// Its owner.
        owner: u32,
        /// The runner's uid.
        uid: u32,
    },
    /// Not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// Too big to be a notebook.
    #[error("{path} is {size} bytes, more than the {max} bytes a notebook may have")]
    TooBig {
        /// The path as given.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// [`MAX_NOTEBOOK_BYTES`].
        max: u64,
    },
    /// Any other failure, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The home directory, open.
#[derive(Debug)]
pub struct Home {
    fd: OwnedFd,
    path: PathBuf,
    uid: u32,
}

/// Where an output goes: its directory (open) and its file name.
#[derive(Debug)]
pub struct OutputFile {
    dir: OwnedFd,
    name: String,
    /// The output's absolute path, for messages.
    pub path: PathBuf,
}

impl Home {
    /// Opens the home directory `path` as the current user.
    pub fn open(path: &Path) -> Result<Self, PathError> {
        let fd = nix::fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| PathError::Io { path: path.display().to_string(), source: e.into() })?;
        Ok(Self { fd, path: path.to_path_buf(), uid: nix::unistd::geteuid().as_raw() })
    }

    /// The home directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `p` relative to the home: a relative path as it is, an absolute one with the home's
    /// path taken off the front. Refused: an absolute path elsewhere, an empty path.
    pub fn relative(&self, p: &Path) -> Result<PathBuf, PathError> {
        let rel = if p.is_absolute() {
            p.strip_prefix(&self.path).map(Path::to_path_buf).ok()
        } else {
            Some(p.to_path_buf())
        };
        match rel {
            Some(r) if r.components().any(|c| matches!(c, Component::Normal(_))) => Ok(r),
            _ => Err(self.outside(p)),
        }
    }

    fn outside(&self, p: &Path) -> PathError {
        PathError::Outside { path: p.display().to_string(), home: self.path.display().to_string() }
    }

    fn io(p: &Path, e: impl Into<std::io::Error>) -> PathError {
        PathError::Io { path: p.display().to_string(), source: e.into() }
    }

    /// Opens `rel` (relative to the home) beneath it; see the module documentation.
    fn open_beneath(&self, rel: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, PathError> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_fd(), rel, how).map_err(|e| match e {
            Errno::EXDEV | Errno::ELOOP => self.outside(rel),
            e => Self::io(&self.path.join(rel), e),
        })
    }

    /// Reads the notebook at `p` (see [`Home::relative`]): a regular file the current user
    /// owns, at most [`MAX_NOTEBOOK_BYTES`].
    pub fn read(&self, p: &Path) -> Result<Vec<u8>, PathError> {
        let rel = self.relative(p)?;
        let fd = self.open_beneath(&rel, OFlag::O_RDONLY, Mode::empty())?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| Self::io(p, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(PathError::NotAFile(p.display().to_string()));
        }
        if st.st_uid != self.uid {
            return Err(PathError::NotYours { path: p.display().to_string(), owner: st.st_uid, uid: self.uid });
        }
        let size = st.st_size as u64;
        if size > MAX_NOTEBOOK_BYTES {
            return Err(PathError::TooBig { path: p.display().to_string(), size, max: MAX_NOTEBOOK_BYTES });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        File::from(fd).take(MAX_NOTEBOOK_BYTES).read_to_end(&mut bytes).map_err(|e| Self::io(p, e))?;
        Ok(bytes)
    }

    /// Prepares to write `p` (see [`Home::relative`]): creates the missing directories under
    /// the home (mode 0700) and opens the last one.
    pub fn output(&self, p: &Path) -> Result<OutputFile, PathError> {
        let rel = self.relative(p)?;
        let name = match rel.file_name().and_then(|n| n.to_str()) {
            Some(n) if !n.starts_with('.') || n.len() > 1 => n.to_string(),
            _ => return Err(PathError::NotAFile(p.display().to_string())),
        };
        let mut dir = PathBuf::new();
        for c in rel.parent().map(Path::components).into_iter().flatten() {
            dir.push(c);
            match nix::sys::stat::mkdirat(self.fd.as_fd(), &dir, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                // A component that leads outside is refused by the open below.
                Err(Errno::EXDEV | Errno::ELOOP) => return Err(self.outside(p)),
                Err(_) => {}
            }
        }
        let dirfd = if dir.as_os_str().is_empty() {
            self.fd.try_clone().map_err(|e| Self::io(p, e))?
        } else {
            self.open_beneath(&dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())?
        };
        Ok(OutputFile { dir: dirfd, name, path: self.path.join(&rel) })
    }
}

impl OutputFile {
    /// Replaces the file with `bytes`: a temporary file in the same directory (mode 0666 less
    /// the umask), written, then renamed over the target, so a reader sees the old or the new
    /// file. Not synced to disk: see [`OutputFile::write_durable`].
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.replace(bytes, false)
    }

    /// [`OutputFile::write`], with the data synced to disk before the rename (for the last
    /// write of a run, which must survive a crash of the machine).
    pub fn write_durable(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.replace(bytes, true)
    }

    fn replace(&self, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        let tmp = format!(".{}.hub-{}.tmp", self.name, hex::encode(rand::random::<[u8; 6]>()));
        let fd = nix::fcntl::openat(
            self.dir.as_fd(),
            tmp.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o666),
        )?;
        let mut f = File::from(fd);
        let written = f.write_all(bytes).and_then(|()| if sync { f.sync_data() } else { Ok(()) });
        let renamed = written.and_then(|()| {
            nix::fcntl::renameat(self.dir.as_fd(), tmp.as_str(), self.dir.as_fd(), self.name.as_str())
                .map_err(Into::into)
        });
        if renamed.is_err() {
            let _ = nix::unistd::unlinkat(self.dir.as_fd(), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        renamed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confined_to_the_home() {
        let t = tempfile::tempdir().expect("tempdir");
        let home_path = t.path().join("home");
        let other = t.path().join("other.ipynb");
        std::fs::create_dir_all(home_path.join("nb")).expect("mkdir");
        std::fs::write(home_path.join("nb/a.ipynb"), "{}").expect("write");
        std::fs::write(&other, "secret").expect("write");
        std::os::unix::fs::symlink(&other, home_path.join("link.ipynb")).expect("symlink");
        std::os::unix::fs::symlink("nb/a.ipynb", home_path.join("inside.ipynb")).expect("symlink");
        let home = Home::open(&home_path).expect("open");
        assert_eq!(home.read(Path::new("nb/a.ipynb")).expect("read"), b"{}");
        assert_eq!(home.read(&home_path.join("nb/a.ipynb")).expect("absolute"), b"{}");
        assert_eq!(home.read(Path::new("inside.ipynb")).expect("a link inside is fine"), b"{}");
        for bad in ["link.ipynb", "../other.ipynb", "nb/../../other.ipynb"] {
            let e = home.read(Path::new(bad)).expect_err(bad);
            assert!(matches!(e, PathError::Outside { .. }), "{bad}: {e}");
        }
        assert!(matches!(home.read(&other), Err(PathError::Outside { .. })));
        assert!(matches!(home.read(Path::new("nb")), Err(PathError::NotAFile(_))));
        assert!(matches!(home.read(Path::new("missing.ipynb")), Err(PathError::Io { .. })));
        assert!(matches!(home.output(Path::new("../x.ipynb")), Err(PathError::Outside { .. })));
        assert!(matches!(
            home.output(Path::new("link.ipynb/x")),
            Err(PathError::Outside { .. }) | Err(PathError::Io { .. })
        ));
        assert!(matches!(home.relative(Path::new("")), Err(PathError::Outside { .. })));
        assert!(matches!(home.relative(&home_path), Err(PathError::Outside { .. })));
    }

    #[test]
    fn outputs_are_replaced_whole_and_dirs_made() {
        let t = tempfile::tempdir().expect("tempdir");
        let home = Home::open(t.path()).expect("open");
        let out = home.output(Path::new("runs/daily/out.ipynb")).expect("output");
        out.write(b"one").expect("write");
        out.write_durable(b"two").expect("write again");
        assert_eq!(std::fs::read(t.path().join("runs/daily/out.ipynb")).expect("read"), b"two");
        let left: Vec<_> = std::fs::read_dir(t.path().join("runs/daily")).expect("ls").flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        // Replacing a symbolic link replaces the link, never what it points to.
        let target = t.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        std::os::unix::fs::symlink(&target, t.path().join("l.ipynb")).expect("symlink");
        home.output(Path::new("l.ipynb")).expect("output").write(b"new").expect("write");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");
    }
}
