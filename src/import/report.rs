//! What an import tells its user: counts on screen and a CSV with a row per problem.

use std::path::Path;

use super::{ImportError, Problem};

/// The figures of one import run (the load counts cover the whole run, earlier attempts
/// included, so a resumed import reports the same totals as an uninterrupted one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: usize,
    pub valid: usize,
    pub invalid: usize,
    pub merged: usize,
    /// Clients after deduplication.
    pub clients: usize,
    pub created: usize,
    pub updated: usize,
    /// Already in the target with nothing to add: linked, not written.
    pub skipped: usize,
    pub failed: usize,
}

impl Counts {
    pub fn render(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would be " } else { "" };
        format!(
            "read {}, valid {}, invalid {}, merged {} → {} clients; {verb}created {}, {verb}updated {}, skipped {}, failed {}",
            self.read,
            self.valid,
            self.invalid,
            self.merged,
            self.clients,
            self.created,
            self.updated,
            self.skipped,
            self.failed
        )
    }
}

/// Writes the problem report: `row,kind,value,detail`, in row order.
pub fn write_csv(path: &Path, problems: &[Problem]) -> Result<(), ImportError> {
    let io = |e: std::io::Error| ImportError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(e) => io(e),
        other => ImportError::Format(format!("report: {other:?}")),
    })?;
    let fail = |e: csv::Error| ImportError::Format(format!("report {}: {e}", path.display()));
    w.write_record(["row", "kind", "value", "detail"])
        .map_err(fail)?;
    for p in problems {
        w.write_record([
            p.row.map(|r| r.to_string()).unwrap_or_default(),
            p.kind.as_str().to_string(),
            p.value.clone(),
            p.detail.clone(),
        ])
        .map_err(fail)?;
    }
    w.flush().map_err(io)
}
