//! Templates: strings with `{placeholder}`s, checked when hub.toml is loaded against the
//! names each key allows, and expanded per user.

/// Why a template is not valid; the text completes "`key` ..." in the config error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `}` with no `{` before it.
    #[error("has a '}}' without a matching '{{' (write '}}}}' for a literal brace)")]
    UnmatchedClose,
    /// A `{` with no `}` after it.
    #[error("has a '{{' that is never closed (write '{{{{' for a literal brace)")]
    Unclosed,
    /// A placeholder the key does not allow.
    #[error("uses the unknown placeholder {{{name}}}; allowed here: {allowed}")]
    UnknownPlaceholder {
        /// The placeholder's name.
        name: String,
        /// The placeholders allowed, as `{a}, {b}`.
        allowed: String,
    },
}

/// A string with `{placeholder}`s, checked at load time against the names its key allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// A template known to be valid (a default the hub writes itself).
    pub(crate) fn literal(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

/// Values substituted into a [`Template`].
#[derive(Debug, Default, Clone)]
pub struct TemplateVars<'a> {
    /// `{username}`: the hub user name.
    pub username: &'a str,
    /// `{uid}`: the user's numeric Linux UID.
    pub uid: u32,
    /// `{realm}`: `[kerberos] realm`.
    pub realm: &'a str,
    /// `{principal}`: the expanded principal, when known.
    pub principal: Option<&'a str>,
    /// `{ccache}`: the expanded ccache path, when known.
    pub ccache: Option<&'a str>,
    /// `{keytab}`: the expanded keytab path, when known.
    pub keytab: Option<&'a str>,
}

impl Template {
    /// Parses `s`, accepting only the `allowed` placeholder names. `{{` and `}}` are literal
    /// braces. Errors name the offending placeholder.
    pub(crate) fn parse(s: &str, allowed: &[&str]) -> Result<Self, TemplateError> {
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            let (c, after) = (rest.as_bytes()[i], &rest[i + 1..]);
            if after.starts_with(c as char) {
                rest = &after[1..];
                continue;
            }
            if c == b'}' {
                return Err(TemplateError::UnmatchedClose);
            }
            let Some(end) = after.find('}') else {
                return Err(TemplateError::Unclosed);
            };
            let name = &after[..end];
            if !allowed.contains(&name) {
                return Err(TemplateError::UnknownPlaceholder {
                    name: name.to_string(),
                    allowed: allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", "),
                });
            }
            rest = &after[end + 1..];
        }
        Ok(Self(s.to_string()))
    }

    /// Substitutes the placeholders. A placeholder whose value is not known yet (`None`) is
    /// left empty; load-time checks make sure each key only uses names that are always known.
    pub fn expand(&self, v: &TemplateVars<'_>) -> String {
        self.expand_with(|name| match name {
            "username" => Some(v.username.to_string()),
            "uid" => Some(v.uid.to_string()),
            "realm" => Some(v.realm.to_string()),
            "principal" => v.principal.map(str::to_string),
            "ccache" => v.ccache.map(str::to_string),
            "keytab" => v.keytab.map(str::to_string),
            // Jupyter fills these in itself when it starts the kernel.
            "connection_file" | "resource_dir" => Some(format!("{{{name}}}")),
            _ => None,
        })
    }

    /// Substitutes each placeholder with `value(name)` (nothing where it is `None`); `{{` and
    /// `}}` become single braces. For templates whose values are not [`TemplateVars`] (the
    /// Slurm job script).
    pub fn expand_with(&self, value: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let (c, after) = (rest.as_bytes()[i], &rest[i + 1..]);
            if after.starts_with(c as char) {
                out.push(c as char);
                rest = &after[1..];
                continue;
            }
            let end = after.find('}').unwrap_or(after.len());
            if let Some(v) = value(&after[..end]) {
                out.push_str(&v);
            }
            rest = after.get(end + 1..).unwrap_or_default();
        }
        out.push_str(rest);
        out
    }

    /// The template as written in hub.toml.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
