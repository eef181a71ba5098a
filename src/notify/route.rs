//! Routing as in Alertmanager: label matchers, the routing tree (flattened, node 0 the
//! root) with its grouping and timing, inhibition, and the question whether a silence
//! mutes an alert (asked of the one silence store, `silence`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{NotifyConfig, RouteConfig, silence};
use crate::alert::Notification;

/// One label matcher, as in Alertmanager.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: Op,
    value: String,
    regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Matcher {
    /// Parses `name="value"` (also `!=`, `=~`, `!~`; the quotes are optional).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("matcher {text:?}: expected name=\"value\""))?;
        let name = t[..end].to_owned();
        if name.is_empty() {
            return Err(format!("matcher {text:?}: the label name is missing"));
        }
        let rest = t[end..].trim_start();
        let (op, rest) = [
            ("=~", Op::Re),
            ("!~", Op::NotRe),
            ("!=", Op::Ne),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (*op, r)))
        .ok_or_else(|| format!("matcher {text:?}: expected one of = != =~ !~ after {name:?}"))?;
        let rest = rest.trim();
        let value = if let Some(inner) = rest.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| format!("matcher {text:?}: unclosed quote"))?;
            unescape(inner)
        } else if rest.contains('"') || rest.starts_with(['=', '~']) {
            return Err(format!(
                "matcher {text:?}: expected name=\"value\" (a stray quote or operator)"
            ));
        } else {
            rest.to_owned()
        };
        let regex = match op {
            Op::Re | Op::NotRe => Some(
                // Anchored, as in Alertmanager.
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher {text:?}: bad regular expression: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// A missing label matches as the empty string (Alertmanager's rule).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            Op::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses every string of a matcher list; one string may hold several matchers, as
/// Alertmanager reads them: `a="x", b=~"y"`, optionally in braces.
pub fn parse_all(list: &[String]) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for text in list {
        for one in split_matchers(text)? {
            out.push(Matcher::parse(&one)?);
        }
    }
    Ok(out)
}

/// Splits `{a="x", b="y,z"}` into `a="x"` and `b="y,z"`: commas inside quotes (and
/// escaped quotes) do not split; an empty part is refused.
fn split_matchers(text: &str) -> Result<Vec<String>, String> {
    let t = text.trim();
    let t = match (t.strip_prefix('{'), t.ends_with('}')) {
        (Some(inner), true) => inner[..inner.len() - 1].trim(),
        (Some(_), false) => return Err(format!("matcher {text:?}: unclosed brace")),
        _ => t,
    };
    let (mut parts, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in t.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    // A trailing comma is allowed, as in Alertmanager.
    if parts.len() > 1 && parts.last().is_some_and(|p| p.trim().is_empty()) {
        parts.pop();
    }
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("matcher {text:?}: an empty matcher between commas"));
    }
    Ok(parts)
}

/// Alertmanager's older `match:` (equality) and `match_re:` (anchored regular
/// expressions) maps, as matcher strings.
pub fn legacy_matchers(
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, String>,
) -> Vec<String> {
    let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    eq.iter()
        .map(|(k, v)| format!("{k}=\"{}\"", quote(v)))
        .chain(re.iter().map(|(k, v)| format!("{k}=~\"{}\"", quote(v))))
        .collect()
}

fn all_match(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

/// The labels routes, inhibitions and silences match on: the alert's labels, then
/// `alertname` (the rule id), `rule_id` and `severity`, which the alert's own labels
/// cannot override.
pub fn match_labels(n: &Notification) -> BTreeMap<String, String> {
    let mut l = n.labels.clone();
    l.insert("alertname".into(), n.rule_id.clone());
    l.insert("rule_id".into(), n.rule_id.clone());
    l.insert("severity".into(), n.severity.as_str().to_owned());
    l
}

/// A route with its inherited settings resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub receiver: String,
    matchers: Vec<Matcher>,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    continue_: bool,
    children: Vec<usize>,
}

/// The routing tree, flattened: node 0 is the root.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    /// Per receiver name, the route used for rules that name it in `route:`.
    direct: BTreeMap<String, usize>,
    inhibit: Vec<(Vec<Matcher>, Vec<Matcher>, Vec<String>)>,
    /// The config's silences and the API's.
    silences: std::sync::Arc<silence::Silences>,
}

impl Router {
    pub fn new(c: &NotifyConfig) -> Result<Router, String> {
        let names: BTreeSet<&str> = c.receivers.iter().map(|r| r.name.as_str()).collect();
        let root = c
            .route
            .as_ref()
            .ok_or("notify.route is missing: give at least `route: {receiver: NAME}`")?;
        let root_receiver = root
            .receiver
            .clone()
            .ok_or("notify.route.receiver is missing: the root route needs a receiver")?;
        let base = Route {
            receiver: root_receiver,
            matchers: Vec::new(),
            group_by: vec!["alertname".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            continue_: false,
            children: Vec::new(),
        };
        let mut routes = Vec::new();
        add_route(root, &base, &mut routes, "notify.route")?;
        for r in &routes {
            if !names.contains(r.receiver.as_str()) {
                return Err(format!(
                    "notify.route: receiver {:?} is not among notify.receivers ({})",
                    r.receiver,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        // Rules that name receivers in `route:` use the root's timing and grouping.
        let mut direct = BTreeMap::new();
        for name in &names {
            let mut r = routes[0].clone();
            r.receiver = (*name).to_owned();
            r.matchers.clear();
            r.children.clear();
            direct.insert((*name).to_owned(), routes.len());
            routes.push(r);
        }
        let inhibit = c
            .inhibit_rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok((
                    parse_all(&r.source_matchers)
                        .map_err(|e| format!("notify.inhibit_rules[{i}]: {e}"))?,
                    parse_all(&r.target_matchers)
                        .map_err(|e| format!("notify.inhibit_rules[{i}]: {e}"))?,
                    r.equal.clone(),
                ))
            })
            .collect::<Result<_, String>>()?;
        let silences = std::sync::Arc::new(silence::Silences::default());
        silences.replace_config(silence::from_config(&c.silences)?);
        Ok(Router {
            routes,
            direct,
            inhibit,
            silences,
        })
    }

    /// Uses `store` (the one the HTTP API shares) for silences, with this config's
    /// silences in place of the store's earlier ones.
    pub fn with_silences(mut self, store: std::sync::Arc<silence::Silences>) -> Router {
        store.replace_config(self.silences.config_silences());
        self.silences = store;
        self
    }

    pub fn route(&self, i: usize) -> &Route {
        &self.routes[i]
    }

    /// Route `i`, or the root when there is no such route (a group made before a
    /// reload changed the tree).
    pub fn route_or_root(&self, i: usize) -> &Route {
        self.routes.get(i).unwrap_or(&self.routes[0])
    }

    /// The routes a notification goes to: the rule's `route: [..]` receivers when it
    /// names some, else the tree (first matching child, or several with `continue`; a
    /// node with no matching child takes the alert itself).
    pub fn routes_for(
        &self,
        rule_route: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Vec<usize> {
        if !rule_route.is_empty() {
            return rule_route
                .iter()
                .filter_map(|r| self.direct.get(r).copied())
                .collect();
        }
        let mut out = Vec::new();
        self.walk(0, labels, &mut out);
        out
    }

    fn walk(&self, node: usize, labels: &BTreeMap<String, String>, out: &mut Vec<usize>) {
        let mut matched = false;
        for &c in &self.routes[node].children {
            if all_match(&self.routes[c].matchers, labels) {
                matched = true;
                self.walk(c, labels, out);
                if !self.routes[c].continue_ {
                    break;
                }
            }
        }
        if !matched {
            out.push(node);
        }
    }

    /// Whether a silence active at `now_ms` (wall clock) covers these labels.
    pub fn silenced(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        self.silences.silences(labels, now_ms)
    }

    /// Whether a firing alert among `firing` inhibits an alert with these labels. An
    /// alert never inhibits itself.
    pub fn inhibited<'a>(
        &self,
        labels: &BTreeMap<String, String>,
        firing: impl Iterator<Item = &'a BTreeMap<String, String>> + Clone,
    ) -> bool {
        self.inhibit.iter().any(|(source, target, equal)| {
            all_match(target, labels)
                && firing.clone().any(|s| {
                    s != labels
                        && all_match(source, s)
                        && equal.iter().all(|k| s.get(k) == labels.get(k))
                })
        })
    }
}

fn add_route(
    c: &RouteConfig,
    parent: &Route,
    out: &mut Vec<Route>,
    at: &str,
) -> Result<usize, String> {
    let r = Route {
        receiver: c
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        matchers: parse_all(
            &c.matchers
                .iter()
                .cloned()
                .chain(legacy_matchers(&c.match_, &c.match_re))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| format!("{at}: {e}"))?,
        group_by: c
            .group_by
            .clone()
            .unwrap_or_else(|| parent.group_by.clone()),
        group_wait: c.group_wait.unwrap_or(parent.group_wait),
        group_interval: c.group_interval.unwrap_or(parent.group_interval),
        repeat_interval: c.repeat_interval.unwrap_or(parent.repeat_interval),
        continue_: c.continue_,
        children: Vec::new(),
    };
    if r.group_interval.is_zero() && r.repeat_interval.is_zero() {
        return Err(format!(
            "{at}: group_interval and repeat_interval are both 0: repeat_interval must be > 0"
        ));
    }
    if r.repeat_interval.is_zero() {
        return Err(format!("{at}: repeat_interval must be > 0"));
    }
    let me = out.len();
    out.push(r.clone());
    for (i, child) in c.routes.iter().enumerate() {
        let ci = add_route(child, &r, out, &format!("{at}.routes[{i}]"))?;
        out[me].children.push(ci);
    }
    Ok(me)
}
