//! User names and Kerberos principals from hostile input: whatever comes in, a name that comes
//! out is a portable user name that normalises to itself (no `/`, no `..`, no control
//! characters, at most 32 bytes), and nothing panics.
#![no_main]

use hub::auth::kerberos::principal_to_username;
use hub::auth::normalize_username;
use hub::config::PrincipalRule;
use libfuzzer_sys::fuzz_target;

fn check(name: &str) {
    assert!(!name.is_empty() && name.len() <= hub::auth::MAX_USERNAME_LEN, "{name:?}");
    assert!(!name.contains('/') && name != ".." && !name.starts_with(['.', '-']), "{name:?}");
    assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)), "{name:?}");
    assert_eq!(normalize_username(name).ok().as_deref(), Some(name), "normalising is idempotent");
}

fn anchored(p: &str) -> regex::Regex {
    regex::Regex::new(&format!("^(?:{p})$")).expect("pattern")
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = normalize_username(s) {
        check(&n);
    }
    let rules = [
        PrincipalRule { pattern: anchored(r"([^/@]+)/admin@EXAMPLE\.COM"), user: "$1".into() },
        PrincipalRule { pattern: anchored(r"(.*)@ODD\.ORG"), user: "$1".into() },
    ];
    if let Ok(n) = principal_to_username(s, "EXAMPLE.COM", &["PARTNER.ORG".to_string()], &rules) {
        check(&n);
    }
});
