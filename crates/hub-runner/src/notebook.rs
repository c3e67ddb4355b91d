//! nbformat 4 notebooks (<https://nbformat.readthedocs.io/en/latest/format_description.html>):
//! read and checked, parameters injected, outputs recorded, written back the way nbformat
//! writes (keys sorted, one-space indent, a final newline).
//!
//! The notebook is kept as JSON values, so whatever a cell or the metadata holds that this
//! module does not know survives the run unchanged.

use serde_json::{Map, Value, json};

/// A notebook that cannot be run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NotebookError {
    /// Not JSON.
    #[error("the notebook is not valid JSON: {message} at line {line}, column {column}")]
    Json {
        /// serde_json's description.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// JSON, but not an nbformat 4 notebook.
    #[error("the notebook is not an nbformat 4 notebook: {0}")]
    Format(String),
}

/// A notebook in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Notebook {
    root: Map<String, Value>,
}

/// The tag papermill looks for on the cell that holds the defaults.
pub const PARAMETERS_TAG: &str = "parameters";
/// The tag of the cell the parameters are injected in.
pub const INJECTED_TAG: &str = "injected-parameters";
/// The tag of a cell whose error does not stop the run (nbclient's and papermill's rule).
pub const RAISES_TAG: &str = "raises-exception";
/// The tag of the banner cell added at the top when the run fails.
pub const ERROR_TAG: &str = "hub-error";

impl Notebook {
    /// Parses and checks `bytes`: an object with `nbformat: 4`, `metadata` an object, `cells`
    /// a list of objects each with a `cell_type` of `code`, `markdown` or `raw` and a `source`
    /// that is a string or a list of strings. Errors name the cell and the field.
    pub fn parse(bytes: &[u8]) -> Result<Self, NotebookError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| NotebookError::Json {
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(root) = v else {
            return Err(NotebookError::Format("the top level is not a JSON object".into()));
        };
        match root.get("nbformat").and_then(Value::as_i64) {
            Some(4) => {}
            Some(n) => {
                return Err(NotebookError::Format(format!(
                    "it is nbformat {n}; convert it with `jupyter nbconvert --to notebook --nbformat 4`"
                )));
            }
            None => return Err(NotebookError::Format("\"nbformat\" is missing or not a number".into())),
        }
        if !root.get("metadata").is_some_and(Value::is_object) {
            return Err(NotebookError::Format("\"metadata\" is missing or not an object".into()));
        }
        let Some(cells) = root.get("cells").and_then(Value::as_array) else {
            return Err(NotebookError::Format("\"cells\" is missing or not a list".into()));
        };
        for (i, cell) in cells.iter().enumerate() {
            let Some(cell) = cell.as_object() else {
                return Err(NotebookError::Format(format!("cell {i} is not an object")));
            };
            match cell.get("cell_type").and_then(Value::as_str) {
                Some("code" | "markdown" | "raw") => {}
                Some(t) => return Err(NotebookError::Format(format!("cell {i} has an unknown cell_type {t:?}"))),
                None => return Err(NotebookError::Format(format!("cell {i} has no \"cell_type\""))),
            }
            match cell.get("source") {
                Some(Value::String(_)) => {}
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
                _ => {
                    return Err(NotebookError::Format(format!(
                        "cell {i}'s \"source\" is missing or not a string or a list of strings"
                    )));
                }
            }
        }
        Ok(Self { root })
    }

    fn cells(&self) -> &[Value] {
        self.root.get("cells").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    fn cells_mut(&mut self) -> &mut Vec<Value> {
        array(self.root.entry("cells").or_insert_with(|| json!([])))
    }

    /// The notebook's `metadata` object.
    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        object(self.root.entry("metadata").or_insert_with(|| json!({})))
    }

    /// `metadata.kernelspec.name`, if the notebook names its kernel.
    pub fn kernel_name(&self) -> Option<&str> {
        self.root.get("metadata")?.get("kernelspec")?.get("name")?.as_str()
    }

    /// Number of cells of any type.
    pub fn len(&self) -> usize {
        self.cells().len()
    }

    /// Whether the notebook has no cells.
    pub fn is_empty(&self) -> bool {
        self.cells().is_empty()
    }

    /// Indices of the code cells, in order.
    pub fn code_cells(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.cell_type(i) == Some("code")).collect()
    }

    fn cell_type(&self, i: usize) -> Option<&str> {
        self.cells().get(i)?.get("cell_type")?.as_str()
    }

    /// Cell `i`'s source as one string (a list of lines is joined as nbformat does).
    pub fn source(&self, i: usize) -> String {
        match self.cells().get(i).and_then(|c| c.get("source")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => String::new(),
        }
    }

    /// Whether cell `i`'s `metadata.tags` has `tag`.
    pub fn has_tag(&self, i: usize, tag: &str) -> bool {
        self.cells()
            .get(i)
            .and_then(|c| c.get("metadata")?.get("tags")?.as_array())
            .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(tag)))
    }

    /// Injects `source` as a code cell tagged `injected-parameters`, as papermill does: an
    /// earlier injected cell (from a run whose output is run again) is replaced; the new cell
    /// goes right after the first cell tagged `parameters`, or first if there is none.
    /// Returns the new cell's index.
    pub fn inject_parameters(&mut self, source: &str) -> usize {
        let old: Vec<usize> = (0..self.len()).filter(|&i| self.has_tag(i, INJECTED_TAG)).collect();
        let cells = self.cells_mut();
        for i in old.into_iter().rev() {
            cells.remove(i);
        }
        let at = (0..self.len()).find(|&i| self.has_tag(i, PARAMETERS_TAG)).map_or(0, |i| i + 1);
        let cell = json!({
            "cell_type": "code",
            "execution_count": null,
            "id": new_cell_id(),
            "metadata": {"tags": [INJECTED_TAG]},
            "outputs": [],
            "source": source,
        });
        self.cells_mut().insert(at, cell);
        self.ensure_minor_for_ids();
        at
    }

    /// New cells carry an `id`, which nbformat 4.5 introduced: raise `nbformat_minor` to 5 and
    /// give every cell that lacks one an id, so the notebook stays valid.
    fn ensure_minor_for_ids(&mut self) {
        if self.root.get("nbformat_minor").and_then(Value::as_i64).unwrap_or(0) < 5 {
            self.root.insert("nbformat_minor".into(), json!(5));
        }
        for cell in self.cells_mut() {
            let c = object(cell);
            if !c.get("id").is_some_and(Value::is_string) {
                c.insert("id".into(), json!(new_cell_id()));
            }
        }
    }

    /// Clears every code cell's outputs and execution count and marks it `pending` in
    /// `metadata.hub.status`, before a run; removes a failure banner an earlier run added.
    pub fn reset(&mut self) {
        let banners: Vec<usize> = (0..self.len()).filter(|&i| self.has_tag(i, ERROR_TAG)).collect();
        let cells = self.cells_mut();
        for i in banners.into_iter().rev() {
            cells.remove(i);
        }
        for cell in self.cells_mut() {
            let c = object(cell);
            if c.get("cell_type").and_then(Value::as_str) != Some("code") {
                continue;
            }
            c.insert("outputs".into(), json!([]));
            c.insert("execution_count".into(), Value::Null);
            let meta = object(c.entry("metadata").or_insert_with(|| json!({})));
            meta.insert("hub".into(), json!({"status": "pending"}));
        }
    }

    /// Records cell `i`'s run: its outputs (nbformat output objects), execution count and
    /// `metadata.hub` (`status`, `start_time`, `end_time`, `duration_s`).
    pub fn record_cell(&mut self, i: usize, outputs: Vec<Value>, execution_count: Option<i64>, hub: Value) {
        if let Some(cell) = self.cells_mut().get_mut(i) {
            let c = object(cell);
            c.insert("outputs".into(), Value::Array(outputs));
            c.insert("execution_count".into(), execution_count.map_or(Value::Null, Value::from));
            let meta = object(c.entry("metadata").or_insert_with(|| json!({})));
            meta.insert("hub".into(), hub);
        }
    }

    /// The outputs of cell `i` (empty for a cell that is not code).
    pub fn outputs_mut(&mut self, i: usize) -> Option<&mut Vec<Value>> {
        self.cells_mut().get_mut(i)?.get_mut("outputs")?.as_array_mut()
    }

    /// Puts a markdown cell tagged `hub-error` first: `title`, a link to the cell that failed
    /// (by its id) and `text` (as papermill's error banner does). Returns how many cells were
    /// inserted before the others (1).
    pub fn add_error_banner(&mut self, title: &str, failed_cell: Option<usize>, text: &str) -> usize {
        let anchor = failed_cell
            .and_then(|i| self.cells().get(i))
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(|id| format!(" ([go to it](#{id}))"))
            .unwrap_or_default();
        let md = format!(
            "<span style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\">\
             {title}</span>{anchor}\n\n{}",
            text.replace('\n', "\n\n")
        );
        let cell = json!({
            "cell_type": "markdown",
            "id": new_cell_id(),
            "metadata": {"tags": [ERROR_TAG]},
            "source": md,
        });
        self.cells_mut().insert(0, cell);
        self.ensure_minor_for_ids();
        1
    }

    /// The notebook as nbformat writes it: keys sorted, one-space indent, final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing a Map of Values into a Vec cannot fail.
        let _ = serde::Serialize::serialize(&self.root, &mut ser);
        out.push(b'\n');
        out
    }
}

/// The object in `v`, which becomes `{}` if it is something else.
fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The list in `v`, which becomes `[]` if it is something else.
fn array(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = json!([]);
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!("just made a list"),
    }
}

/// A fresh cell id: 16 hex digits (nbformat 4.5: 1-64 of `[a-zA-Z0-9-_]`).
fn new_cell_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(cells: Value) -> Notebook {
        let v = json!({"nbformat": 4, "nbformat_minor": 4, "metadata": {"kernelspec": {"name": "python3"}}, "cells": cells});
        Notebook::parse(v.to_string().as_bytes()).expect("valid")
    }

    #[test]
    fn malformed_notebooks_name_the_problem() {
        let e = Notebook::parse(b"{\n \"cells\": [\n  {,\n ]\n}").expect_err("bad JSON");
        assert!(matches!(e, NotebookError::Json { line: 3, .. }), "{e:?}");
        assert!(e.to_string().contains("line 3"), "{e}");
        let bad = |v: Value| Notebook::parse(v.to_string().as_bytes()).expect_err("invalid").to_string();
        assert!(bad(json!([1])).contains("not a JSON object"));
        assert!(bad(json!({"nbformat": 3, "metadata": {}, "cells": []})).contains("nbconvert"));
        assert!(bad(json!({"nbformat": 4, "cells": []})).contains("\"metadata\""));
        assert!(bad(json!({"nbformat": 4, "metadata": {}})).contains("\"cells\""));
        let e = bad(
            json!({"nbformat": 4, "metadata": {}, "cells": [{"cell_type": "code", "source": "1"}, {"cell_type": "graph", "source": ""}]}),
        );
        assert!(e.contains("cell 1") && e.contains("graph"), "{e}");
        let e = bad(json!({"nbformat": 4, "metadata": {}, "cells": [{"cell_type": "code", "source": 7}]}));
        assert!(e.contains("cell 0's \"source\""), "{e}");
    }

    #[test]
    fn parameters_go_after_the_parameters_cell() {
        let mut n = nb(json!([
            {"cell_type": "markdown", "metadata": {}, "source": "# Report"},
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["date = None\n", "limit = 10"], "outputs": [], "execution_count": null},
            {"cell_type": "code", "metadata": {}, "source": "print(date)", "outputs": [], "execution_count": null},
        ]));
        assert_eq!(n.source(1), "date = None\nlimit = 10");
        assert_eq!(n.inject_parameters("# Parameters\ndate = \"x\"\n"), 2);
        assert_eq!(n.code_cells(), vec![1, 2, 3]);
        assert_eq!(n.source(2), "# Parameters\ndate = \"x\"\n");
        assert!(n.has_tag(2, INJECTED_TAG));
        // Injecting again (running an output notebook) replaces the earlier cell.
        assert_eq!(n.inject_parameters("# Parameters\ndate = \"y\"\n"), 2);
        assert_eq!(n.len(), 4);
        assert_eq!(n.source(2), "# Parameters\ndate = \"y\"\n");
        // New cells have ids, so the notebook became 4.5 and every cell has one.
        let v: Value = serde_json::from_slice(&n.to_bytes()).expect("json");
        assert_eq!(v["nbformat_minor"], 5);
        assert!(v["cells"].as_array().expect("cells").iter().all(|c| c["id"].is_string()));
    }

    #[test]
    fn without_a_parameters_cell_they_go_first() {
        let mut n =
            nb(json!([{"cell_type": "code", "metadata": {}, "source": "1", "outputs": [], "execution_count": 3}]));
        assert_eq!(n.inject_parameters("a = 1\n"), 0);
        assert_eq!(n.source(1), "1");
    }

    #[test]
    fn reset_and_record() {
        let mut n = nb(json!([
            {"cell_type": "code", "metadata": {}, "source": "1", "outputs": [{"output_type": "stream", "name": "stdout", "text": "old"}], "execution_count": 9},
            {"cell_type": "raw", "metadata": {}, "source": "raw"},
        ]));
        n.reset();
        let v: Value = serde_json::from_slice(&n.to_bytes()).expect("json");
        assert_eq!(v["cells"][0]["outputs"], json!([]));
        assert_eq!(v["cells"][0]["execution_count"], Value::Null);
        assert_eq!(v["cells"][0]["metadata"]["hub"]["status"], "pending");
        assert!(v["cells"][1].get("outputs").is_none(), "raw cells get no outputs");
        n.record_cell(0, vec![json!({"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}, "execution_count": 1})], Some(1), json!({"status": "ok"}));
        n.add_error_banner("The run failed", Some(0), "ZeroDivisionError: division by zero");
        let v: Value = serde_json::from_slice(&n.to_bytes()).expect("json");
        assert_eq!(v["cells"][0]["metadata"]["tags"], json!([ERROR_TAG]));
        assert_eq!(v["cells"][1]["execution_count"], 1);
        n.reset();
        assert_eq!(n.len(), 2, "a second run removes the first run's banner");
    }

    #[test]
    fn written_as_nbformat_writes() {
        let n = nb(json!([]));
        let text = String::from_utf8(n.to_bytes()).expect("utf-8");
        assert_eq!(
            text,
            "{\n \"cells\": [],\n \"metadata\": {\n  \"kernelspec\": {\n   \"name\": \"python3\"\n  }\n },\n \"nbformat\": 4,\n \"nbformat_minor\": 4\n}\n"
        );
        let mut unknown = nb(json!([]));
        unknown.metadata_mut().insert("custom".into(), json!({"kept": [1, 2]}));
        assert_eq!(Notebook::parse(&unknown.to_bytes()).expect("round trip"), unknown);
    }
}
