//! A structural validator driven by the CommerceML 2.10 XSD (tests/fixtures/onec/
//! commerceml-2.10.xsd, 1C's published schema): every element's children must match its
//! declared content model (sequence order, choices, minOccurs/maxOccurs, groups, extensions),
//! and required attributes must be present. Simple-type facets (lengths, enumerations) are
//! not checked. What the test demands comes from the schema, not from our writer.

use std::collections::{BTreeSet, HashMap};

use quick_xml::events::{BytesRef, Event};
use quick_xml::{Reader, XmlVersion};

#[derive(Debug, Clone, Default)]
pub struct Node {
    pub name: String,
    pub attrs: HashMap<String, String>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all(&self, name: &str) -> Vec<&Node> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

fn strip_prefix(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

/// Parses UTF-8 XML text into a tree (local names; namespace prefixes dropped).
pub fn tree(text: &str) -> Result<Node, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Text is trimmed per element at its end, not per reader event: the reader hands entity
    // references apart, and trimming each piece would eat the spaces around them.
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed near byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        match event {
            Event::Start(e) => stack.push(element(&e)?),
            Event::Empty(e) => {
                let node = element(&e)?;
                stack.last_mut().ok_or("unbalanced")?.children.push(node);
            }
            Event::End(_) => {
                let mut node = stack.pop().ok_or("unbalanced")?;
                node.text = node.text.trim().to_string();
                stack.last_mut().ok_or("unbalanced")?.children.push(node);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let c = reference(&r)?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().ok_or("empty")?;
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.children.pop().ok_or_else(|| "no root element".into())
}

/// The five XML entities and character references; the documents declare no others.
fn reference(r: &BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    quick_xml::escape::resolve_xml_entity(r)
        .map(str::to_string)
        .ok_or_else(|| format!("unknown entity &{};", &**r))
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, String> {
    let mut node = Node {
        name: e.local_name().into_inner().to_string(),
        ..Node::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let key = AsRef::<str>::as_ref(&a.key).to_string();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?
            .into_owned();
        node.attrs.insert(key, value);
    }
    Ok(node)
}

#[derive(Debug, Clone)]
enum Particle {
    Elem {
        name: String,
        decl: Node,
        min: usize,
        max: usize,
    },
    Seq(Vec<Particle>, usize, usize),
    Choice(Vec<Particle>, usize, usize),
}

pub struct Schema {
    types: HashMap<String, Node>,
    elements: HashMap<String, Node>,
    groups: HashMap<String, Node>,
}

fn occurs(n: &Node) -> (usize, usize) {
    let min = n
        .attrs
        .get("minOccurs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let max = match n.attrs.get("maxOccurs").map(String::as_str) {
        Some("unbounded") => usize::MAX,
        Some(v) => v.parse().unwrap_or(1),
        None => 1,
    };
    (min, max)
}

impl Schema {
    pub fn load(xsd_text: &str) -> Schema {
        let root = tree(xsd_text).expect("the XSD is well-formed");
        let mut s = Schema {
            types: HashMap::new(),
            elements: HashMap::new(),
            groups: HashMap::new(),
        };
        for c in root.children {
            let Some(name) = c.attrs.get("name").cloned() else {
                continue;
            };
            match c.name.as_str() {
                "complexType" => {
                    s.types.insert(name, c);
                }
                "element" => {
                    s.elements.insert(name, c);
                }
                "group" => {
                    s.groups.insert(name, c);
                }
                _ => {}
            }
        }
        s
    }

    /// The complex type of an element declaration, or `None` for a simple-typed leaf.
    fn element_type<'a>(&'a self, decl: &'a Node) -> Option<&'a Node> {
        if let Some(r) = decl.attrs.get("ref") {
            let target = self.elements.get(strip_prefix(r))?;
            return self.element_type(target);
        }
        if let Some(t) = decl.attrs.get("type") {
            return self.types.get(strip_prefix(t));
        }
        decl.child("complexType")
    }

    fn particle(&self, n: &Node) -> Option<Particle> {
        let (min, max) = occurs(n);
        match n.name.as_str() {
            "element" => {
                let (name, decl) = match n.attrs.get("ref") {
                    Some(r) => {
                        let name = strip_prefix(r).to_string();
                        let mut decl = self.elements.get(&name)?.clone();
                        decl.attrs.remove("minOccurs");
                        (name, decl)
                    }
                    None => (n.attrs.get("name")?.clone(), n.clone()),
                };
                Some(Particle::Elem {
                    name,
                    decl,
                    min,
                    max,
                })
            }
            "sequence" | "all" => Some(Particle::Seq(
                n.children.iter().filter_map(|c| self.particle(c)).collect(),
                min,
                max,
            )),
            "choice" => Some(Particle::Choice(
                n.children.iter().filter_map(|c| self.particle(c)).collect(),
                min,
                max,
            )),
            "group" => {
                let g = self.groups.get(strip_prefix(n.attrs.get("ref")?))?;
                let inner: Vec<Particle> =
                    g.children.iter().filter_map(|c| self.particle(c)).collect();
                Some(Particle::Seq(inner, min, max))
            }
            _ => None,
        }
    }

    /// The content model and required attributes of a complex type.
    fn model(&self, ty: &Node) -> (Particle, BTreeSet<String>) {
        let mut parts = Vec::new();
        let mut required = BTreeSet::new();
        self.collect(ty, &mut parts, &mut required);
        (Particle::Seq(parts, 1, 1), required)
    }

    fn collect(&self, ty: &Node, parts: &mut Vec<Particle>, required: &mut BTreeSet<String>) {
        for c in &ty.children {
            match c.name.as_str() {
                "sequence" | "choice" | "all" | "group" => parts.extend(self.particle(c)),
                "attribute" => {
                    if c.attrs.get("use").map(String::as_str) == Some("required")
                        && let Some(name) = c.attrs.get("name")
                    {
                        required.insert(name.clone());
                    }
                }
                "complexContent" | "simpleContent" => {
                    for d in &c.children {
                        if let Some(base) = d.attrs.get("base")
                            && d.name == "extension"
                            && let Some(base_ty) = self.types.get(strip_prefix(base))
                        {
                            self.collect(base_ty, parts, required);
                        }
                        self.collect(d, parts, required);
                    }
                }
                _ => {}
            }
        }
    }

    /// Validates `node` as an instance of the top-level element `root`.
    pub fn validate(&self, node: &Node) -> Result<(), String> {
        let decl = self
            .elements
            .get(&node.name)
            .ok_or_else(|| format!("<{}> is not a top-level element of the schema", node.name))?;
        self.check(node, decl, &node.name)
    }

    fn check(&self, node: &Node, decl: &Node, path: &str) -> Result<(), String> {
        let Some(ty) = self.element_type(decl) else {
            if let Some(c) = node.children.first() {
                return Err(format!(
                    "{path}: a simple value must not contain <{}>",
                    c.name
                ));
            }
            return Ok(());
        };
        let (model, required) = self.model(ty);
        for attr in &required {
            if !node.attrs.contains_key(attr) {
                return Err(format!("{path}: required attribute {attr} is missing"));
            }
        }
        let names: Vec<&str> = node.children.iter().map(|c| c.name.as_str()).collect();
        let ends = matches(&model, &names, 0);
        if !ends.contains(&names.len()) {
            return Err(format!(
                "{path}: children {names:?} do not match the schema's content model"
            ));
        }
        let mut decls = HashMap::new();
        declarations(&model, &mut decls);
        for child in &node.children {
            let d = decls
                .get(child.name.as_str())
                .ok_or_else(|| format!("{path}: <{}> is not allowed here", child.name))?;
            self.check(child, d, &format!("{path}/{}", child.name))?;
        }
        Ok(())
    }
}

fn declarations<'a>(p: &'a Particle, out: &mut HashMap<&'a str, &'a Node>) {
    match p {
        Particle::Elem { name, decl, .. } => {
            out.entry(name.as_str()).or_insert(decl);
        }
        Particle::Seq(items, ..) | Particle::Choice(items, ..) => {
            for i in items {
                declarations(i, out);
            }
        }
    }
}

/// Every position the particle can end at when it starts at `pos`.
fn matches(p: &Particle, names: &[&str], pos: usize) -> BTreeSet<usize> {
    let (min, max) = match p {
        Particle::Elem { min, max, .. } => (*min, *max),
        Particle::Seq(_, min, max) | Particle::Choice(_, min, max) => (*min, *max),
    };
    let mut out = BTreeSet::new();
    let mut frontier = BTreeSet::from([pos]);
    if min == 0 {
        out.insert(pos);
    }
    let limit = max.min(names.len() + min + 1);
    for count in 1..=limit {
        let mut next = BTreeSet::new();
        for &at in &frontier {
            next.extend(once(p, names, at));
        }
        if next.is_empty() {
            break;
        }
        if count >= min {
            out.extend(next.iter().copied());
        }
        if next == frontier && count >= min {
            break;
        }
        frontier = next;
    }
    out
}

fn once(p: &Particle, names: &[&str], pos: usize) -> BTreeSet<usize> {
    match p {
        Particle::Elem { name, .. } => {
            if names.get(pos) == Some(&name.as_str()) {
                BTreeSet::from([pos + 1])
            } else {
                BTreeSet::new()
            }
        }
        Particle::Seq(items, ..) => {
            let mut at = BTreeSet::from([pos]);
            for item in items {
                let mut next = BTreeSet::new();
                for &a in &at {
                    next.extend(matches(item, names, a));
                }
                at = next;
                if at.is_empty() {
                    break;
                }
            }
            at
        }
        Particle::Choice(items, ..) => {
            let mut out = BTreeSet::new();
            for item in items {
                out.extend(matches(item, names, pos));
            }
            out
        }
    }
}
