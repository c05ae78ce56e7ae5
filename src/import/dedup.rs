//! Deduplication within a file: records sharing a phone or an email (transitively) are one
//! client. Merge rules: the most complete name wins (most words; the first on a tie), phones
//! and emails are united in order of appearance, the first birthday wins, comments are joined.
//! Every fold and every disagreement is reported.

use std::collections::HashMap;

use super::normalise::Normalised;
use super::{Client, Problem, ProblemKind};

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    /// Keeps the smaller index as the root, so a group is named after its first record.
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// The key a client is known by across runs.
pub fn client_key(first: &Normalised) -> String {
    match (first.phones.first(), first.emails.first()) {
        (Some(p), _) => format!("phone:{p}"),
        (None, Some(e)) => format!("email:{}", e.as_str().to_lowercase()),
        (None, None) => format!("row:{}", first.row),
    }
}

pub fn merge(records: Vec<Normalised>, problems: &mut Vec<Problem>) -> Vec<Client> {
    let mut uf = UnionFind {
        parent: (0..records.len()).collect(),
    };
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(records.len() * 2);
    for (i, r) in records.iter().enumerate() {
        let keys = r.phones.iter().map(|p| format!("p{p}")).chain(
            r.emails
                .iter()
                .map(|e| format!("e{}", e.as_str().to_lowercase())),
        );
        for key in keys {
            match seen.get(&key) {
                Some(&j) => uf.union(i, j),
                None => {
                    seen.insert(key, i);
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    for i in 0..records.len() {
        let root = uf.find(i);
        let g = *group_of_root.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let mut slots: Vec<Option<Normalised>> = records.into_iter().map(Some).collect();
    groups
        .into_iter()
        .map(|members| {
            let group: Vec<Normalised> = members.iter().filter_map(|&i| slots[i].take()).collect();
            fold(group, problems)
        })
        .collect()
}

fn fold(group: Vec<Normalised>, problems: &mut Vec<Problem>) -> Client {
    let first = &group[0];
    let key = client_key(first);
    let first_row = first.row;
    if group.len() == 1 {
        let r = group.into_iter().next().expect("one record");
        return Client {
            key,
            name: r.name,
            phones: r.phones,
            emails: r.emails,
            birthday: r.birthday,
            comment: r.comment,
            rows: vec![r.row],
        };
    }
    // Most words is most complete ("Иванова Анна Петровна" over "Анна"); the first on a tie.
    let name = group
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .fold("", |best, n| {
            if n.split(' ').count() > best.split(' ').filter(|w| !w.is_empty()).count() {
                n
            } else {
                best
            }
        })
        .to_string();
    let mut phones = Vec::new();
    let mut emails: Vec<crate::normalize::Email> = Vec::new();
    let mut birthday = None;
    let mut comments: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for r in &group {
        rows.push(r.row);
        if r.row != first_row {
            let shared = r
                .phones
                .iter()
                .find(|p| group.iter().any(|o| o.row != r.row && o.phones.contains(p)))
                .map(|p| p.to_string())
                .or_else(|| r.emails.first().map(|e| e.to_string()))
                .unwrap_or_default();
            problems.push(Problem {
                row: Some(r.row),
                kind: ProblemKind::Merged,
                value: r.name.clone(),
                detail: format!("merged into the client of row {first_row} (same {shared})"),
            });
        }
        if !r.name.is_empty() && !same_words(&r.name, &name) {
            problems.push(Problem {
                row: Some(r.row),
                kind: ProblemKind::Conflict,
                value: r.name.clone(),
                detail: format!("name differs from the merged client's; kept {name:?}"),
            });
        }
        for p in &r.phones {
            if !phones.contains(p) {
                phones.push(p.clone());
            }
        }
        for e in &r.emails {
            if !emails
                .iter()
                .any(|x| x.as_str().eq_ignore_ascii_case(e.as_str()))
            {
                emails.push(e.clone());
            }
        }
        match (birthday, r.birthday) {
            (None, b) => birthday = b,
            (Some(kept), Some(other)) if kept != other => problems.push(Problem {
                row: Some(r.row),
                kind: ProblemKind::Conflict,
                value: other.format("%d.%m.%Y").to_string(),
                detail: format!("birthday differs; kept {}", kept.format("%d.%m.%Y")),
            }),
            _ => {}
        }
        if let Some(c) = &r.comment
            && !comments.contains(c)
        {
            comments.push(c.clone());
        }
    }
    Client {
        key,
        name,
        phones,
        emails,
        birthday,
        comment: (!comments.is_empty()).then(|| comments.join("; ")),
        rows,
    }
}

/// "иванова анна" and "Анна" agree with "Анна Иванова" (every word is in the kept name);
/// "Анна Петрова" does not.
fn same_words(a: &str, kept: &str) -> bool {
    let kept: Vec<String> = kept.split_whitespace().map(str::to_lowercase).collect();
    a.split_whitespace()
        .all(|w| kept.contains(&w.to_lowercase()))
}
