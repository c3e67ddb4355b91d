//! The hub's log lines on stderr: `text` for people, `json` for log shippers.
//!
//! Values in log lines often come from clients (a user name typed into the login form, a
//! request path, an `Origin` header). In the text format every field value and the message are
//! written through [`Escaped`], so a control character (a newline above all) is written as an
//! escape (`\n`, `\u{1b}`) and a client cannot end a line and forge the next one. The JSON
//! format escapes by its own rules (RFC 8259 §7). This is done once, in the formatter, so no
//! call site can forget it.

use std::fmt::{self, Write as _};

use tracing_subscriber::field::MakeExt;

/// Writes a string with its control characters escaped (`char::escape_default`'s forms for
/// `\n`, `\r`, `\t`; `\u{..}` for the rest); everything else as it is.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The text format's field formatter: `name=value` pairs separated by spaces, the message
/// without its name, each value escaped with [`Escaped`].
pub fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(w, "{}", Escaped(&text))
        } else {
            write!(w, "{}={}", field.name(), Escaped(&text))
        }
    })
    .delimited(" ")
}

/// Installs the global subscriber for `hub`: filter from `RUST_LOG` (default `info`), lines
/// on stderr, `json` or text with [`text_fields`] (colours only when stderr is a terminal).
pub fn init(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.json().with_current_span(false).init();
    } else {
        logs.fmt_fields(text_fields()).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_new_line() {
        let forged = "ann\n2026-12-01T00:00:00Z  INFO hub: logged in user=root\r\x1b[2J";
        let out = Escaped(forged).to_string();
        assert!(!out.contains('\n') && !out.contains('\r') && !out.contains('\x1b'), "{out}");
        assert_eq!(out, "ann\\n2026-12-01T00:00:00Z  INFO hub: logged in user=root\\r\\u{1b}[2J");
        assert_eq!(Escaped("plain ünïcode").to_string(), "plain ünïcode");
    }
}
