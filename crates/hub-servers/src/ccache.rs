//! Reads ticket times from an MIT FILE credential cache.
//!
//! Format: "Credential cache file format" in the MIT Kerberos documentation
//! (<https://web.mit.edu/kerberos/krb5-devel/doc/formats/ccache_file_format.html>). Versions
//! 3 and 4 (`0x0503`, `0x0504`; big-endian) are read, which is what MIT krb5 has written since
//! 1.x. Only what the renewer needs is decoded: the default principal and, for the
//! ticket-granting ticket, its start, end and renew-until times (unix seconds, u32 in the
//! file). Configuration entries (server realm `X-CACHECONF:`) are skipped. In version 3 a
//! credential's keyblock carries its enctype twice (the format document's "keyblock" section);
//! version 4 once.
//!
//! The file is the user's (mode 0600 in a root-owned directory) and read as root, so it is
//! opened without following a link and read only up to [`MAX_CCACHE_BYTES`].

use std::path::Path;

/// Largest credential cache read, in bytes (1 MiB; a cache with a TGT and a few service
/// tickets is a few KiB, PACs included).
pub const MAX_CCACHE_BYTES: u64 = 1024 * 1024;

/// The TGT's times in a credential cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTimes {
    /// The cache's default principal, e.g. `ann@EXAMPLE.COM`.
    pub principal: String,
    /// When the ticket became valid (unix seconds; the auth time when no start time is set).
    pub start: i64,
    /// When it expires (unix seconds).
    pub end: i64,
    /// Last time it can be renewed with `kinit -R` (unix seconds; 0 when not renewable).
    pub renew_until: i64,
}

/// A cache that cannot be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CcacheError {
    /// The file could not be read.
    #[error("cannot read credential cache: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a v3/v4 FILE ccache.
    #[error("not a readable credential cache: {0}")]
    Format(&'static str),
    /// The cache holds no ticket-granting ticket.
    #[error("the credential cache holds no ticket-granting ticket")]
    NoTgt,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CcacheError> {
        if self.b.len() < n {
            return Err(CcacheError::Format("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, CcacheError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CcacheError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, CcacheError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn data(&mut self) -> Result<&'a [u8], CcacheError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn principal(&mut self) -> Result<(String, Vec<String>), CcacheError> {
        let _name_type = self.u32()?;
        let count = self.u32()? as usize;
        if count > 64 {
            return Err(CcacheError::Format("absurd principal component count"));
        }
        let realm = String::from_utf8_lossy(self.data()?).into_owned();
        let mut comps = Vec::with_capacity(count);
        for _ in 0..count {
            comps.push(String::from_utf8_lossy(self.data()?).into_owned());
        }
        Ok((realm, comps))
    }
}

/// Decodes the TGT times from the bytes of a FILE ccache.
pub fn parse(bytes: &[u8]) -> Result<TicketTimes, CcacheError> {
    let mut r = Reader { b: bytes };
    let version = r.u16()?;
    match version {
        0x0504 => {
            let hlen = r.u16()? as usize;
            r.take(hlen)?;
        }
        0x0503 => {}
        0x0501 | 0x0502 => return Err(CcacheError::Format("ccache versions 1 and 2 are not supported")),
        _ => return Err(CcacheError::Format("unknown ccache version")),
    }
    let (realm, comps) = r.principal()?;
    let principal = format!("{}@{realm}", comps.join("/"));
    let mut fallback = None;
    while !r.b.is_empty() {
        let (_crealm, _ccomps) = r.principal()?;
        let (srealm, scomps) = r.principal()?;
        let _enctype = r.u16()?;
        if version == 0x0503 {
            r.u16()?; // v3 repeats the enctype
        }
        r.data()?; // key
        let authtime = r.u32()?;
        let starttime = r.u32()?;
        let endtime = r.u32()?;
        let renew_till = r.u32()?;
        r.u8()?; // is_skey
        r.u32()?; // flags
        for _ in 0..r.u32()? {
            r.u16()?;
            r.data()?;
        }
        for _ in 0..r.u32()? {
            r.u16()?;
            r.data()?;
        }
        r.data()?; // ticket
        r.data()?; // second ticket
        if srealm == "X-CACHECONF:" || scomps.first().map(String::as_str) != Some("krbtgt") {
            continue;
        }
        let t = TicketTimes {
            principal: principal.clone(),
            start: i64::from(if starttime != 0 { starttime } else { authtime }),
            end: i64::from(endtime),
            renew_until: i64::from(renew_till),
        };
        // The TGT for the client's own realm, krbtgt/REALM@REALM, is the one that matters.
        if scomps.get(1) == Some(&realm) && srealm == realm {
            return Ok(t);
        }
        fallback.get_or_insert(t);
    }
    fallback.ok_or(CcacheError::NoTgt)
}

/// Reads the TGT times from the FILE ccache at `path` (no `FILE:` prefix), without following
/// a link at `path` and refusing a file over [`MAX_CCACHE_BYTES`].
pub fn read(path: &Path) -> Result<TicketTimes, CcacheError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(CcacheError::Format("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(MAX_CCACHE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CCACHE_BYTES {
        return Err(CcacheError::Format("larger than 1 MiB"));
    }
    parse(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(out: &mut Vec<u8>, d: &[u8]) {
        out.extend((d.len() as u32).to_be_bytes());
        out.extend(d);
    }

    fn principal(out: &mut Vec<u8>, realm: &str, comps: &[&str]) {
        out.extend(1u32.to_be_bytes());
        out.extend((comps.len() as u32).to_be_bytes());
        data(out, realm.as_bytes());
        for c in comps {
            data(out, c.as_bytes());
        }
    }

    fn cred(out: &mut Vec<u8>, srealm: &str, scomps: &[&str], times: [u32; 4]) {
        principal(out, "R.ORG", &["ann"]);
        principal(out, srealm, scomps);
        out.extend(18u16.to_be_bytes());
        data(out, &[0; 32]);
        for t in times {
            out.extend(t.to_be_bytes());
        }
        out.push(0);
        out.extend(0u32.to_be_bytes());
        out.extend(0u32.to_be_bytes()); // addresses
        out.extend(0u32.to_be_bytes()); // authdata
        data(out, b"ticket");
        data(out, b"");
    }

    /// A v4 cache laid out as the MIT format document describes: a config entry, a service
    /// ticket, then the TGT.
    fn sample() -> Vec<u8> {
        let mut b = vec![0x05, 0x04];
        b.extend(12u16.to_be_bytes());
        b.extend([0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]); // DeltaTime header
        principal(&mut b, "R.ORG", &["ann"]);
        cred(&mut b, "X-CACHECONF:", &["krb5_ccache_conf_data", "pa_type"], [0, 0, 0, 0]);
        cred(&mut b, "R.ORG", &["HTTP", "h.r.org"], [100, 110, 500, 0]);
        cred(&mut b, "R.ORG", &["krbtgt", "R.ORG"], [100, 105, 7300, 86500]);
        b
    }

    #[test]
    fn reads_tgt_times_and_skips_other_entries() {
        let t = parse(&sample()).expect("parse");
        assert_eq!(t, TicketTimes { principal: "ann@R.ORG".into(), start: 105, end: 7300, renew_until: 86500 });
    }

    #[test]
    fn refuses_truncated_and_foreign_bytes() {
        let s = sample();
        for n in [0, 1, 5, 40, s.len() - 1] {
            assert!(parse(&s[..n]).is_err(), "truncated at {n}");
        }
        assert!(parse(b"\x01\x02garbage").is_err());
        let mut no_tgt = vec![0x05, 0x03];
        principal(&mut no_tgt, "R.ORG", &["ann"]);
        assert!(matches!(parse(&no_tgt), Err(CcacheError::NoTgt)));
    }
}
