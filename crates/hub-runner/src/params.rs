//! Notebook parameters, as papermill has them: `-p name=value` on the command line, typed
//! from the text, and rendered as assignments in the kernel's language for the
//! `injected-parameters` cell (papermill's `translators.py` does the same per language).

use serde_json::Value;

/// A parameter that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamError {
    /// `-p` without `=`.
    #[error("parameter {0:?} has no value: write it as name=value")]
    NoValue(String),
    /// The name is not an identifier.
    #[error("parameter name {0:?} is not an identifier: use letters, digits and '_', not starting with a digit")]
    BadName(String),
    /// The value looks like JSON (`[`, `{` or `"` first) but is not.
    #[error("parameter {name}: {value:?} starts like JSON but is not valid JSON ({reason}); quote it as a string")]
    BadJson {
        /// The parameter.
        name: String,
        /// Its text.
        value: String,
        /// serde_json's message.
        reason: String,
    },
    /// No translator for the kernel's language.
    #[error("cannot inject parameters into a {0:?} kernel: the languages supported are python and R")]
    Language(String),
}

/// Whether `name` is an identifier in every supported language (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// Parses `name=value` from the command line. The value's type follows papermill's `-p`:
/// an integer, a float, `true`/`false` (any case) as a bool, `none`/`null` as null, JSON for
/// text starting with `[`, `{` or `"`, and otherwise the text as a string.
pub fn parse_cli(arg: &str) -> Result<(String, Value), ParamError> {
    let (name, text) = arg.split_once('=').ok_or_else(|| ParamError::NoValue(arg.to_string()))?;
    let name = name.trim();
    if !valid_name(name) {
        return Err(ParamError::BadName(name.to_string()));
    }
    Ok((name.to_string(), type_value(name, text)?))
}

fn type_value(name: &str, text: &str) -> Result<Value, ParamError> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && text.chars().any(|c| c.is_ascii_digit())
    {
        return Ok(Value::from(f));
    }
    match text.to_ascii_lowercase().as_str() {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "none" | "null" => return Ok(Value::Null),
        _ => {}
    }
    if text.starts_with(['[', '{', '"']) {
        return serde_json::from_str(text).map_err(|e| ParamError::BadJson {
            name: name.to_string(),
            value: text.to_string(),
            reason: e.to_string(),
        });
    }
    Ok(Value::String(text.to_string()))
}

/// The source of the `injected-parameters` cell for a kernel of `language` (its
/// kernelspec's `language`, compared without case): a comment line, then one assignment per
/// parameter, in order.
pub fn render(language: &str, params: &[(String, Value)]) -> Result<String, ParamError> {
    let lang = language.to_ascii_lowercase();
    let literal: fn(&Value) -> String = match lang.as_str() {
        "python" => python,
        "r" => r,
        _ => return Err(ParamError::Language(language.to_string())),
    };
    let mut out = String::from("# Parameters\n");
    for (name, value) in params {
        if !valid_name(name) {
            return Err(ParamError::BadName(name.clone()));
        }
        out.push_str(&format!("{name} = {}\n", literal(value)));
    }
    Ok(out)
}

/// A JSON string literal: its escapes (`\"`, `\\`, `\n`, `\uXXXX`) mean the same in Python
/// and R string literals.
fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn python(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) => format!("[{}]", a.iter().map(python).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => {
            format!(
                "{{{}}}",
                o.iter().map(|(k, v)| format!("{}: {}", string(k), python(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

fn r(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(true) => "TRUE".into(),
        Value::Bool(false) => "FALSE".into(),
        Value::Number(n) if n.is_i64() => format!("{n}L"),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) => format!("list({})", a.iter().map(r).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => {
            format!(
                "list({})",
                o.iter().map(|(k, v)| format!("{} = {}", string(k), r(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cli_values_are_typed_as_papermill_types_them() {
        let p = |s| parse_cli(s).expect(s).1;
        assert_eq!(p("limit=100"), json!(100));
        assert_eq!(p("ratio=0.5"), json!(0.5));
        assert_eq!(p("ratio=1e3"), json!(1000.0));
        assert_eq!(p("full=True"), json!(true));
        assert_eq!(p("full=false"), json!(false));
        assert_eq!(p("x=None"), json!(null));
        assert_eq!(p("date=2026-12-01"), json!("2026-12-01"));
        assert_eq!(p("cols=[1, \"a\"]"), json!([1, "a"]));
        assert_eq!(p("q={\"a\": {\"b\": null}}"), json!({"a": {"b": null}}));
        assert_eq!(p("s=\"007\""), json!("007"));
        assert_eq!(p("empty="), json!(""));
        assert_eq!(p("inf=inf"), json!("inf"), "not finite: kept as text");
        assert_eq!(p("eq=a=b"), json!("a=b"), "only the first '=' splits");
    }

    #[test]
    fn bad_parameters_say_what_to_do() {
        assert_eq!(parse_cli("limit"), Err(ParamError::NoValue("limit".into())));
        assert!(matches!(parse_cli("1x=2"), Err(ParamError::BadName(n)) if n == "1x"));
        assert!(matches!(parse_cli("a-b=2"), Err(ParamError::BadName(_))));
        let e = parse_cli("cols=[1,").expect_err("bad JSON");
        assert!(e.to_string().contains("quote it as a string"), "{e}");
        let e = render("scala", &[("a".into(), json!(1))]).expect_err("no translator");
        assert!(e.to_string().contains("python and R"), "{e}");
    }

    #[test]
    fn python_literals() {
        let params = vec![
            ("date".to_string(), json!("2026-12-01")),
            ("limit".to_string(), json!(100)),
            ("ratio".to_string(), json!(0.25)),
            ("on".to_string(), json!(true)),
            ("none".to_string(), json!(null)),
            ("quote".to_string(), json!("it's \"x\"\n\\")),
            ("nested".to_string(), json!({"k": [1, false, null]})),
        ];
        assert_eq!(
            render("Python", &params).expect("python"),
            "# Parameters\ndate = \"2026-12-01\"\nlimit = 100\nratio = 0.25\non = True\nnone = None\n\
             quote = \"it's \\\"x\\\"\\n\\\\\"\nnested = {\"k\": [1, False, None]}\n"
        );
    }

    #[test]
    fn r_literals() {
        let params = vec![("n".to_string(), json!(3)), ("xs".to_string(), json!({"a": [true, 1.5]}))];
        assert_eq!(render("R", &params).expect("R"), "# Parameters\nn = 3L\nxs = list(\"a\" = list(TRUE, 1.5))\n");
    }
}
