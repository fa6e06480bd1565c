//! What a request waited on: the marker's query and call events turned into
//! model records, their time turned into weighted synthetic stacks, and
//! repeated statements flagged.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use timeglass_model::{
    Caller, Frame, HttpCall, Repeated, SqlQuery, Stack, StackCount, BACKGROUND_FRAME,
    HTTP_FRAME_PREFIX, SQL_FRAME_PREFIX,
};
use timeglass_wire::{Call, Query, StackFrame, StackRef};

use crate::sql;

/// How many frames of the issuing code a query or call keeps for display.
pub const CALLER_FRAMES: usize = 8;

/// Stacks the marker defined, per process: later events name them by id.
#[derive(Default)]
pub(crate) struct Stacks {
    by_id: HashMap<(u32, u64), Issuer>,
    /// Normalised text per statement text: apps run few distinct statements
    /// many times, and normalising tokenises the whole statement.
    normalized: HashMap<String, String>,
    /// Wait stacks built so far, by issuing stack (its address: the `Arc` is
    /// held here, so the address cannot be reused), stage and leaf. A line
    /// in a loop waits under the same stack in every request: it is built
    /// once, and the store knows it by address.
    waits: HashMap<(bool, usize, Frame), (Stack, Stack)>,
}

/// The normalisation cache is dropped whole beyond this many statements.
const MAX_NORMALIZED: usize = 10_000;
/// The wait stack cache is dropped whole beyond this many stacks (a few MB
/// of frames at most).
const MAX_WAIT_STACKS: usize = 4_096;

/// A resolved issuing stack. Cloning it shares its frames.
#[derive(Clone)]
struct Issuer {
    stack: Stack,
    caller: Caller,
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer {
            stack: Arc::new([]),
            caller: Arc::new([]),
        }
    }
}

/// A process's stacks beyond this many are forgotten all at once; the marker
/// sends every stack again before its last copy can have left the ring.
const MAX_STACKS_PER_SESSION: usize = 100_000;

impl Stacks {
    fn resolve(&mut self, pid: u32, r: StackRef) -> Issuer {
        let Some(frames) = r.frames else {
            return self.by_id.get(&(pid, r.id)).cloned().unwrap_or_default();
        };
        let issuer = Issuer {
            caller: caller(&frames),
            stack: frames.into_iter().map(frame).collect::<Vec<_>>().into(),
        };
        if self.by_id.len() >= MAX_STACKS_PER_SESSION {
            self.by_id.clear();
        }
        self.by_id.insert((pid, r.id), issuer.clone());
        issuer
    }

    /// The stack an event of process `pid` was issued from (empty when unknown).
    pub(crate) fn stack_of(&mut self, pid: u32, r: StackRef) -> Stack {
        self.resolve(pid, r).stack
    }

    /// Forgets a process's stacks (it exited).
    pub(crate) fn forget(&mut self, pid: u32) {
        self.by_id.retain(|(p, _), _| *p != pid);
    }

    pub(crate) fn query(&mut self, pid: u32, q: Query) -> SqlQuery {
        let issuer = self.resolve(pid, q.stack);
        let normalized = match self.normalized.get(&q.sql) {
            Some(n) => n.clone(),
            None => {
                if self.normalized.len() >= MAX_NORMALIZED {
                    self.normalized.clear();
                }
                let n = sql::normalize(&q.sql);
                self.normalized.insert(q.sql.clone(), n.clone());
                n
            }
        };
        SqlQuery {
            normalized,
            sql: q.sql,
            sql_len: q.sql_len,
            params: q.params,
            params_len: q.params_len,
            start_ns: q.start_ns,
            end_ns: q.end_ns.max(q.start_ns),
            rows: Some(q.rows).filter(|&r| r >= 0),
            driver: q.driver,
            error: q.error,
            caller: issuer.caller,
            stack: issuer.stack,
        }
    }

    pub(crate) fn call(&mut self, pid: u32, c: Call) -> HttpCall {
        let issuer = self.resolve(pid, c.stack);
        HttpCall {
            method: c.method,
            url: c.url,
            status: Some(c.status).filter(|&s| s != 0),
            start_ns: c.start_ns,
            end_ns: c.end_ns.max(c.start_ns),
            error: c.error,
            library: c.library,
            caller: issuer.caller,
            stack: issuer.stack,
        }
    }
}

fn frame(f: StackFrame) -> Frame {
    Frame {
        name: f.name.into(),
        filename: f.filename.into(),
        short: f.short.into(),
        line: f.line,
    }
}

/// Up to [`CALLER_FRAMES`] frames of the app's own code, innermost first; the
/// innermost frames of any kind if the stack has none of the app's.
fn caller(frames: &[StackFrame]) -> Caller {
    let own: Caller = frames
        .iter()
        .rev()
        .filter(|f| !f.library)
        .take(CALLER_FRAMES)
        .cloned()
        .map(frame)
        .collect();
    if !own.is_empty() {
        return own;
    }
    frames
        .iter()
        .rev()
        .take(CALLER_FRAMES)
        .cloned()
        .map(frame)
        .collect()
}

/// What a wait's synthetic leaf frame is made of. Waits are grouped by it
/// and the frame is made once per group, not once per wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Leaf<'a> {
    /// A statement, by its normalised text.
    Sql(&'a str),
    /// A call, by its method and URL.
    Http(&'a str, &'a str),
}

impl Leaf<'_> {
    /// `[sql] SELECT ... FROM items ...`, `[http] GET api.example.com`.
    fn frame(self) -> Frame {
        match self {
            Leaf::Sql(normalized) => {
                Frame::synthetic(&format!("{SQL_FRAME_PREFIX}{}", sql::label(normalized)))
            }
            Leaf::Http(method, url) => {
                Frame::synthetic(&format!("{HTTP_FRAME_PREFIX}{method} {}", host(url)))
            }
        }
    }
}

/// `host[:port]` of a URL; the URL itself if it has no recognisable host.
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        url
    } else {
        host
    }
}

impl Stacks {
    /// Wall time per synthetic stack, converted to samples at `rate_hz`.
    /// Waits that ended after the response was sent go under `[background]`,
    /// like the samples of that stage (at least one sample for any wait).
    /// Sub-sample remainders are rounded per
    /// stack, so many short identical waits still add up.
    pub(crate) fn weigh<'a>(
        &mut self,
        waits: impl Iterator<Item = (&'a Stack, Leaf<'a>, u64, u64)>,
        response_end_ns: Option<u64>,
        rate_hz: u32,
    ) -> Vec<StackCount> {
        // Statements repeated from one line share their issuing stack (one
        // `Arc` per stack the marker sent), so group by its address first.
        let mut grouped: HashMap<(bool, usize, Leaf<'a>), (&'a Stack, u64)> = HashMap::new();
        for (stack, leaf, start_ns, end_ns) in waits {
            let background = response_end_ns.is_some_and(|sent| start_ns >= sent);
            let key = (background, address(stack), leaf);
            grouped.entry(key).or_insert((stack, 0)).1 += end_ns.saturating_sub(start_ns);
        }
        // Equal frames under different issuing stacks (two statements on one
        // line, a stack the marker sent again) still make one stack.
        let mut wall: HashMap<ByFrames, u64> = HashMap::new();
        for ((background, _, leaf), (stack, ns)) in grouped {
            let full = self.wait_stack(stack, background, leaf.frame());
            *wall.entry(ByFrames(full)).or_insert(0) += ns;
        }
        let mut out: Vec<StackCount> = wall
            .into_iter()
            .filter_map(|(ByFrames(stack), ns)| {
                let samples = (u128::from(ns) * u128::from(rate_hz) + 500_000_000) / 1_000_000_000;
                let samples = u64::try_from(samples).unwrap_or(u64::MAX);
                // A wait shorter than half a period still shows, at one (as a
                // sampled stack does): in a 2 ms request, 0.4 ms of SQL is a
                // fifth of it.
                (ns > 0).then_some(StackCount {
                    stack,
                    samples: samples.max(1),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| a.stack.cmp(&b.stack))
        });
        out
    }

    /// `issuer` with `leaf` under it, under `[background]` if `background`:
    /// the same `Arc` for the same issuer and leaf, request after request.
    fn wait_stack(&mut self, issuer: &Stack, background: bool, leaf: Frame) -> Stack {
        let key = (background, address(issuer), leaf);
        if let Some((_, full)) = self.waits.get(&key) {
            return full.clone();
        }
        let frames = background
            .then(|| Frame::synthetic(BACKGROUND_FRAME))
            .into_iter()
            .chain(issuer.iter().cloned())
            .chain(std::iter::once(key.2.clone()));
        let full: Stack = frames.collect::<Vec<_>>().into();
        if self.waits.len() >= MAX_WAIT_STACKS {
            self.waits.clear();
        }
        self.waits.insert(key, (issuer.clone(), full.clone()));
        full
    }
}

fn address(frames: &[Frame]) -> usize {
    frames.as_ptr() as usize
}

/// A stack compared by its frames but hashed by its length and leaf only:
/// equal stacks hash alike, and the long stacks of waits mostly differ in
/// their leaf, so hashing every frame would buy nothing.
struct ByFrames(Stack);

impl PartialEq for ByFrames {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for ByFrames {}

impl Hash for ByFrames {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.len().hash(state);
        self.0.last().hash(state);
    }
}

/// The most repeated normalised statement, if it ran `threshold` times or more.
pub(crate) fn n_plus_one(queries: &[SqlQuery], threshold: u64) -> Option<Repeated> {
    let mut groups: HashMap<&str, Vec<&SqlQuery>> = HashMap::new();
    for q in queries {
        groups.entry(&q.normalized).or_default().push(q);
    }
    let (normalized, group) = groups
        .into_iter()
        .filter(|(_, g)| g.len() as u64 >= threshold.max(1))
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))?;
    // Statements of one line share their caller: name each caller once.
    let mut callers: HashMap<usize, (&Caller, usize)> = HashMap::new();
    for q in &group {
        callers
            .entry(address(&q.caller))
            .or_insert((&q.caller, 0))
            .1 += 1;
    }
    let mut lines: HashMap<String, usize> = HashMap::new();
    for (caller, n) in callers.into_values() {
        if let Some(f) = caller.first() {
            *lines.entry(f.location()).or_insert(0) += n;
        }
    }
    let caller = lines
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(line, _)| line);
    Some(Repeated {
        normalized: normalized.to_string(),
        count: group.len() as u64,
        caller,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, library: bool) -> StackFrame {
        StackFrame {
            name: name.into(),
            filename: format!("/x/{name}.py"),
            short: format!("{name}.py"),
            line: 3,
            library,
        }
    }

    #[test]
    fn caller_prefers_the_apps_own_frames() {
        let frames = vec![
            f("main", true),
            f("handler", false),
            f("helper", false),
            f("driver", true),
        ];
        let names: Vec<String> = caller(&frames).iter().map(|f| f.name.to_string()).collect();
        assert_eq!(names, ["helper", "handler"]);
        let lib = vec![f("a", true), f("b", true)];
        let names: Vec<String> = caller(&lib).iter().map(|f| f.name.to_string()).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn hosts_come_out_of_urls() {
        assert_eq!(
            host("https://u:p@api.example.com:8443/x?y=1"),
            "api.example.com:8443"
        );
        assert_eq!(host("http://127.0.0.1:9/"), "127.0.0.1:9");
        assert_eq!(host("weird"), "weird");
    }

    #[test]
    fn waits_weigh_wall_time_in_samples() {
        let mut stacks = Stacks::default();
        let s: Stack = vec![Frame::synthetic("[x]")].into();
        let leaf = Leaf::Sql("SELECT ?");
        // Ten 0.3 ms waits at 1 kHz: 3 samples together, none alone.
        let waits = (0..10).map(|i| (&s, leaf, i * 1_000_000, i * 1_000_000 + 300_000));
        let out = stacks.weigh(waits, None, 1000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, 3);
        assert_eq!(
            out[0].stack.last(),
            Some(&Frame::synthetic("[sql] SELECT ?"))
        );
        let late = stacks.weigh(std::iter::once((&s, leaf, 10, 5_000_010)), Some(10), 1000);
        assert_eq!(&*late[0].stack[0].name, BACKGROUND_FRAME);
        assert_eq!(late[0].samples, 5);
    }

    #[test]
    fn a_wait_stack_is_built_once_and_equal_frames_merge() {
        let mut stacks = Stacks::default();
        let frames = vec![Frame::synthetic("[x]")];
        let (a, b): (Stack, Stack) = (frames.clone().into(), frames.into());
        let leaf = Leaf::Http("GET", "http://h/x?a=1");
        let first = stacks.weigh(std::iter::once((&a, leaf, 0, 2_000_000)), None, 1000);
        let again = stacks.weigh(std::iter::once((&a, leaf, 0, 2_000_000)), None, 1000);
        assert!(Arc::ptr_eq(&first[0].stack, &again[0].stack));
        // Two issuing stacks with the same frames, and two URLs of one host.
        let other = Leaf::Http("GET", "http://h/y");
        let waits = [(&a, leaf, 0, 1_400_000), (&b, other, 0, 1_400_000)];
        let merged = stacks.weigh(waits.into_iter(), None, 1000);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].samples, 3);
        assert_eq!(&*merged[0].stack.last().unwrap().name, "[http] GET h");
    }
}
