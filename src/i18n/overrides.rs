//! A business's own message files, checked against the built-in messages before they are
//! used: every id must be one the bot shows, every variable one it gives, every reference one
//! that exists.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use fluent_syntax::ast;
use fluent_templates::fluent_bundle::FluentResource;

use super::{KINDS, Lang, builtin_resource, builtin_sources, kind_source};

/// Why a business's own message files cannot be used. Each names the file and the message.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("{dir} is not a directory")]
    NoDir { dir: PathBuf },
    #[error("{dir} holds no ru/*.ftl or en/*.ftl files")]
    Empty { dir: PathBuf },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: message `{id}` (line {line}): Fluent syntax error: {message}")]
    Syntax {
        path: PathBuf,
        id: String,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: message `{id}` is not a built-in message or term, so nothing would show it \
         (a typo in the id?)"
    )]
    UnknownId { path: PathBuf, id: String },
    #[error(
        "{path}: message `{id}`: broken placeholder `{{ ${var} }}`: the bot gives this message {given}"
    )]
    UnknownVariable {
        path: PathBuf,
        id: String,
        var: String,
        given: String,
    },
    #[error("{path}: message `{id}`: broken placeholder `{{ {reference} }}`: {why}")]
    BrokenReference {
        path: PathBuf,
        id: String,
        reference: String,
        why: &'static str,
    },
    #[error("{path}: message `{id}` has no text of its own, only attributes")]
    NoValue { path: PathBuf, id: String },
    #[error("{path}: message `{id}` is defined twice (also in {other})")]
    Duplicate {
        path: PathBuf,
        id: String,
        other: PathBuf,
    },
}

/// Every built-in message and term (terms with their leading `-`) with the variables the bot
/// gives it, across both languages and all kinds.
pub(super) static BUILTIN_IDS: LazyLock<HashMap<String, BTreeSet<String>>> = LazyLock::new(|| {
    let mut ids: HashMap<String, BTreeSet<String>> = HashMap::new();
    for lang in [Lang::Ru, Lang::En] {
        let kinds = KINDS.iter().filter_map(|k| kind_source(*k, lang));
        for (name, source) in builtin_sources(lang).into_iter().chain(kinds) {
            let resource = builtin_resource(name, source);
            for entry in resource.entries() {
                if let Some((id, patterns, _)) = entry_parts(entry) {
                    let mut refs = Refs::default();
                    patterns.into_iter().for_each(|p| refs.pattern(p));
                    ids.entry(id).or_default().extend(refs.vars);
                }
            }
        }
    }
    ids
});

/// An entry's id (`-term` for terms), its patterns, and whether it has a value.
pub(super) fn entry_parts<'a>(
    entry: &'a ast::Entry<&'a str>,
) -> Option<(String, Vec<&'a ast::Pattern<&'a str>>, bool)> {
    match entry {
        ast::Entry::Message(m) => {
            let mut patterns: Vec<_> = m.value.iter().collect();
            patterns.extend(m.attributes.iter().map(|a| &a.value));
            Some((m.id.name.to_string(), patterns, m.value.is_some()))
        }
        ast::Entry::Term(t) => {
            let mut patterns = vec![&t.value];
            patterns.extend(t.attributes.iter().map(|a| &a.value));
            Some((format!("-{}", t.id.name), patterns, true))
        }
        _ => None,
    }
}

/// What a pattern refers to: variables, other messages and terms, functions.
#[derive(Default)]
struct Refs {
    vars: Vec<String>,
    messages: Vec<String>,
    terms: Vec<String>,
    functions: Vec<String>,
}

impl Refs {
    fn pattern(&mut self, p: &ast::Pattern<&str>) {
        for element in &p.elements {
            if let ast::PatternElement::Placeable { expression } = element {
                self.expression(expression);
            }
        }
    }

    fn expression(&mut self, e: &ast::Expression<&str>) {
        match e {
            ast::Expression::Select { selector, variants } => {
                self.inline(selector);
                for v in variants {
                    self.pattern(&v.value);
                }
            }
            ast::Expression::Inline(i) => self.inline(i),
        }
    }

    fn inline(&mut self, i: &ast::InlineExpression<&str>) {
        match i {
            ast::InlineExpression::StringLiteral { .. }
            | ast::InlineExpression::NumberLiteral { .. } => {}
            ast::InlineExpression::FunctionReference { id, arguments } => {
                self.functions.push(id.name.to_string());
                self.arguments(arguments);
            }
            ast::InlineExpression::MessageReference { id, .. } => {
                self.messages.push(id.name.to_string());
            }
            ast::InlineExpression::TermReference { id, arguments, .. } => {
                self.terms.push(format!("-{}", id.name));
                if let Some(a) = arguments {
                    self.arguments(a);
                }
            }
            ast::InlineExpression::VariableReference { id } => self.vars.push(id.name.to_string()),
            ast::InlineExpression::Placeable { expression } => self.expression(expression),
        }
    }

    fn arguments(&mut self, a: &ast::CallArguments<&str>) {
        a.positional.iter().for_each(|i| self.inline(i));
        a.named.iter().for_each(|n| self.inline(&n.value));
    }
}

pub(super) fn parse_override(path: &Path, source: String) -> Result<FluentResource, OverrideError> {
    match FluentResource::try_new(source.clone()) {
        Ok(r) => Ok(r),
        Err((_, errors)) => {
            let first = errors.first();
            // The slice starts at the broken entry; the position is where the parser gave up,
            // which may be lines further down, in the next message.
            let at = first
                .map_or(0, |e| e.slice.as_ref().map_or(e.pos.start, |s| s.start))
                .min(source.len());
            let (line, id) = entry_at(&source, at);
            Err(OverrideError::Syntax {
                path: path.to_path_buf(),
                id,
                line,
                message: first.map_or_else(|| "unreadable".to_string(), ToString::to_string),
            })
        }
    }
}

/// The line of byte `at` and the id of the message that line belongs to: the nearest
/// `id =` at or above it.
fn entry_at(source: &str, at: usize) -> (usize, String) {
    let head = source.get(..at).unwrap_or(source);
    let line = head.matches('\n').count() + 1;
    let id = source
        .lines()
        .take(line)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find_map(|l| {
            let (id, _) = l.split_once('=')?;
            let id = id.trim_end();
            let name = id.strip_prefix('-').unwrap_or(id);
            let ok = !l.starts_with(char::is_whitespace)
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            ok.then(|| id.to_string())
        })
        .unwrap_or_else(|| "(before the first message)".to_string());
    (line, id)
}

pub(super) fn check_override(
    path: &Path,
    resource: &FluentResource,
    seen: &mut HashMap<String, PathBuf>,
) -> Result<(), OverrideError> {
    let path_buf = || path.to_path_buf();
    for entry in resource.entries() {
        let Some((id, patterns, has_value)) = entry_parts(entry) else {
            continue;
        };
        let Some(given) = BUILTIN_IDS.get(&id) else {
            return Err(OverrideError::UnknownId {
                path: path_buf(),
                id,
            });
        };
        if let Some(other) = seen.insert(id.clone(), path_buf()) {
            return Err(OverrideError::Duplicate {
                path: path_buf(),
                id,
                other,
            });
        }
        if !has_value {
            return Err(OverrideError::NoValue {
                path: path_buf(),
                id,
            });
        }
        let mut refs = Refs::default();
        patterns.into_iter().for_each(|p| refs.pattern(p));
        if let Some(var) = refs.vars.into_iter().find(|v| !given.contains(v)) {
            let given = if given.is_empty() {
                "no values".to_string()
            } else {
                let names: Vec<String> = given.iter().map(|v| format!("${v}")).collect();
                format!("only {}", names.join(", "))
            };
            return Err(OverrideError::UnknownVariable {
                path: path_buf(),
                id,
                var,
                given,
            });
        }
        let broken = |reference: String, why| OverrideError::BrokenReference {
            path: path_buf(),
            id: id.clone(),
            reference,
            why,
        };
        if let Some(f) = refs.functions.into_iter().next() {
            return Err(broken(format!("{f}(…)"), "functions are not available"));
        }
        if let Some(m) = refs
            .messages
            .into_iter()
            .find(|m| !BUILTIN_IDS.contains_key(m))
        {
            return Err(broken(m, "there is no such built-in message"));
        }
        if let Some(t) = refs
            .terms
            .into_iter()
            .find(|t| !BUILTIN_IDS.contains_key(t))
        {
            return Err(broken(t, "there is no such built-in term"));
        }
    }
    Ok(())
}
