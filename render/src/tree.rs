//! The call tree the dashboard's flame graph draws
//! (`flamegraph-templates/flame.js`), and the functions by self and total
//! samples.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use timeglass_model::{Frame, StackCount};

use crate::kind::{file, kind};

/// One node of the call tree. Field names are short: a merged tree can have
/// thousands of nodes and travels as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Function name.
    pub n: String,
    /// Short file name; empty for synthetic frames.
    pub f: String,
    /// The line of this function with the most samples here.
    pub l: u32,
    /// Samples with this node on the stack.
    pub v: u64,
    /// Samples with this node as the innermost frame.
    pub s: u64,
    /// 0 app code, 1 library, 2 synthetic.
    pub k: u8,
    pub c: Vec<Node>,
    #[serde(skip)]
    lines: HashMap<u32, u64>,
}

/// A profile as the dashboard draws it.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub samples: u64,
    /// A root named `all` whose children are the outermost frames.
    pub tree: Node,
    /// Most self samples first.
    pub functions: Vec<FunctionSamples>,
    /// Where the graph opens: child indices from the root down to the node
    /// shown at full width (empty: the whole stack). See [`focus`].
    pub focus: Vec<usize>,
}

impl Profile {
    pub fn new(stacks: &[StackCount]) -> Profile {
        let tree = tree(stacks);
        Profile {
            samples: stacks.iter().map(|s| s.samples).sum(),
            focus: focus(&tree),
            tree,
            functions: functions(stacks),
        }
    }
}

/// Merges stacks into a call tree: frames of the same function (name and
/// file) under the same parent are one node, whatever their line.
pub fn tree(stacks: &[StackCount]) -> Node {
    let mut root = Node {
        n: "all".to_string(),
        ..Node::default()
    };
    for sc in stacks {
        root.v += sc.samples;
        let mut node = &mut root;
        for frame in sc.stack.iter() {
            let at = match node
                .c
                .iter()
                .position(|c| *c.n == *frame.name && c.f == file(frame))
            {
                Some(at) => at,
                None => {
                    node.c.push(Node {
                        n: frame.name.to_string(),
                        f: file(frame).to_string(),
                        k: kind_code(frame),
                        ..Node::default()
                    });
                    node.c.len() - 1
                }
            };
            node = &mut node.c[at];
            node.v += sc.samples;
            *node.lines.entry(frame.line).or_default() += sc.samples;
        }
        node.s += sc.samples;
    }
    finish(&mut root);
    root
}

/// Picks each node's line and orders children heaviest first (ties by name,
/// so the picture is stable).
fn finish(node: &mut Node) {
    node.l = node
        .lines
        .iter()
        .max_by_key(|(line, samples)| (**samples, std::cmp::Reverse(**line)))
        .map_or(0, |(line, _)| *line);
    node.lines = HashMap::new();
    node.c
        .sort_by(|a, b| b.v.cmp(&a.v).then_with(|| a.n.cmp(&b.n)));
    node.c.iter_mut().for_each(finish);
}

/// The share of all samples a frame must hold for the graph to open on it.
const FOCUS_SHARE: f64 = 0.9;

/// Where the app's own code begins, as pyinstrument opens on it: the path to
/// the first app frame under the chain of library frames (uvicorn, Starlette,
/// FastAPI, asyncio) that nearly every sample shares, or to the last frame of
/// that chain when no single app frame holds that share. Stops at synthetic
/// frames, and at the root when no library frame is that common.
///
/// The root's children are where each thread's stack starts. A sync (`def`)
/// endpoint runs on a worker thread while the event loop's thread routes,
/// validates and answers for it, so its samples split between two roots
/// whose share depends on how short it is: when real frames hold the share
/// between them and the heaviest root holds most, the chain is followed
/// under that root, with the share taken of that root's samples, if it
/// leads to the app's code (else the graph opens at the root, where both
/// threads show).
pub fn focus(root: &Node) -> Vec<usize> {
    let mut floor = root.v as f64 * FOCUS_SHARE;
    let mut path = Vec::new();
    let mut node = root;
    let synthetic: u64 = root
        .c
        .iter()
        .filter(|c| c.k == K_SYNTHETIC)
        .map(|c| c.v)
        .sum();
    let mut split = false;
    if let Some(first) = root.c.first() {
        split = (first.v as f64) < floor
            && 2 * first.v >= root.v
            && first.k == K_LIBRARY
            && synthetic as f64 <= root.v as f64 - floor;
        if split {
            path.push(0);
            node = first;
            floor = first.v as f64 * FOCUS_SHARE;
        }
    }
    // Children are sorted heaviest first, so only the first can hold the share.
    while let Some(child) = node.c.first().filter(|c| c.v > 0 && c.v as f64 >= floor) {
        match child.k {
            K_LIBRARY => {}
            K_APP => {
                path.push(0);
                return path;
            }
            _ => break,
        }
        path.push(0);
        node = child;
    }
    if split {
        // That thread's chain holds none of the app's code.
        path.clear();
    }
    path
}

const K_APP: u8 = 0;
const K_LIBRARY: u8 = 1;
const K_SYNTHETIC: u8 = 2;

fn kind_code(frame: &Frame) -> u8 {
    kind(frame).code()
}

/// Samples of one function (all its lines together).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionSamples {
    pub name: String,
    /// Short file name; empty for synthetic frames.
    pub file: String,
    /// 0 app code, 1 library, 2 synthetic.
    pub kind: u8,
    /// Samples whose innermost frame is this function.
    pub self_samples: u64,
    /// Samples with this function anywhere on the stack, counted once per
    /// sample even when it recurses.
    pub total_samples: u64,
}

/// Every function on the stacks, most self samples first.
pub fn functions(stacks: &[StackCount]) -> Vec<FunctionSamples> {
    let mut by_function: HashMap<(&str, &str), FunctionSamples> = HashMap::new();
    for sc in stacks {
        let mut seen = HashSet::new();
        for frame in sc.stack.iter() {
            let key = (frame.name.as_ref(), file(frame));
            let entry = by_function.entry(key).or_insert_with(|| FunctionSamples {
                name: frame.name.to_string(),
                file: file(frame).to_string(),
                kind: kind_code(frame),
                self_samples: 0,
                total_samples: 0,
            });
            if seen.insert(key) {
                entry.total_samples += sc.samples;
            }
        }
        if let Some(leaf) = sc.stack.last() {
            if let Some(entry) = by_function.get_mut(&(leaf.name.as_ref(), file(leaf))) {
                entry.self_samples += sc.samples;
            }
        }
    }
    let mut all: Vec<FunctionSamples> = by_function.into_values().collect();
    all.sort_by(|a, b| {
        (b.self_samples, b.total_samples)
            .cmp(&(a.self_samples, a.total_samples))
            .then_with(|| (&a.name, &a.file).cmp(&(&b.name, &b.file)))
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, line: u32) -> Frame {
        Frame {
            name: name.into(),
            filename: "/abs/app.py".into(),
            short: "app.py".into(),
            line,
        }
    }

    fn count(frames: Vec<Frame>, samples: u64) -> StackCount {
        StackCount {
            stack: frames.into(),
            samples,
        }
    }

    #[test]
    fn self_and_total_count_each_sample_once() {
        let recursive = count(vec![frame("main", 1), frame("fib", 2), frame("fib", 3)], 4);
        let other = count(vec![frame("main", 1), frame("io", 9)], 1);
        let f = functions(&[recursive, other]);
        let get = |n: &str| f.iter().find(|x| x.name == n).cloned().unwrap();
        assert_eq!(get("fib").self_samples, 4);
        assert_eq!(get("fib").total_samples, 4);
        assert_eq!(get("main").total_samples, 5);
        assert_eq!(get("main").self_samples, 0);
        assert_eq!(f[0].name, "fib");
    }

    #[test]
    fn tree_merges_lines_of_a_function_and_keeps_the_hottest() {
        let t = tree(&[
            count(vec![frame("main", 1), frame("work", 10)], 3),
            count(vec![frame("main", 2), frame("work", 11)], 5),
            count(vec![frame("main", 1)], 1),
        ]);
        assert_eq!(t.v, 9);
        let main = &t.c[0];
        assert_eq!((main.n.as_str(), main.v, main.s, main.l), ("main", 9, 1, 2));
        let work = &main.c[0];
        assert_eq!(
            (work.v, work.s, work.l, work.f.as_str()),
            (8, 8, 11, "app.py")
        );
    }

    fn lib(name: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: "/v/lib/python3.12/site-packages/starlette/routing.py".into(),
            short: "starlette/routing.py".into(),
            line: 1,
        }
    }

    /// The nodes along a focus path, root excluded.
    fn names_along<'a>(root: &'a Node, path: &[usize]) -> Vec<&'a str> {
        let mut node = root;
        path.iter()
            .map(|&i| {
                node = &node.c[i];
                node.n.as_str()
            })
            .collect()
    }

    #[test]
    fn focus_opens_on_the_first_app_frame_under_the_shared_library_frames() {
        let t = tree(&[
            count(
                vec![
                    lib("serve"),
                    lib("route"),
                    frame("handler", 3),
                    frame("work", 4),
                ],
                95,
            ),
            count(vec![lib("serve"), lib("route"), lib("json")], 4),
            count(vec![lib("serve"), lib("idle")], 1),
        ]);
        // `route` holds 99%, `handler` 95%: the app's function opens at full width.
        assert_eq!(names_along(&t, &focus(&t)), ["serve", "route", "handler"]);
    }

    #[test]
    fn focus_stops_at_the_library_frame_when_the_app_code_under_it_splits() {
        let t = tree(&[
            count(vec![lib("serve"), lib("route"), frame("auth", 3)], 40),
            count(vec![lib("serve"), lib("route"), frame("handler", 3)], 60),
        ]);
        assert_eq!(names_along(&t, &focus(&t)), ["serve", "route"]);
    }

    #[test]
    fn focus_of_a_sync_endpoint_follows_its_worker_thread() {
        // A short `def` endpoint: 70% of its samples on the worker thread,
        // 30% on the event loop routing and answering for it.
        let t = tree(&[
            count(
                vec![
                    lib("Thread._bootstrap"),
                    lib("WorkerThread.run"),
                    frame("sync_handler", 3),
                    frame("work", 4),
                ],
                70,
            ),
            count(vec![lib("serve"), lib("route"), lib("serialize")], 30),
        ]);
        assert_eq!(
            names_along(&t, &focus(&t)),
            ["Thread._bootstrap", "WorkerThread.run", "sync_handler"]
        );
        // The loop's thread holds more, with no app code under it: hiding
        // the worker would hide the app's code, so both threads show.
        let t = tree(&[
            count(vec![lib("serve"), lib("route"), lib("serialize")], 60),
            count(vec![lib("Thread._bootstrap"), frame("sync_handler", 3)], 40),
        ]);
        assert_eq!(names_along(&t, &focus(&t)), Vec::<&str>::new());
    }

    #[test]
    fn focus_stays_at_the_root_without_a_common_library_prefix() {
        let t = tree(&[
            count(vec![lib("serve"), frame("handler", 3)], 85),
            count(vec![Frame::synthetic("[background]"), lib("send")], 15),
        ]);
        assert!(focus(&t).is_empty());
        // Only a synthetic root: nothing to skip either.
        let synthetic = tree(&[count(vec![Frame::synthetic("[background]"), lib("x")], 5)]);
        assert!(focus(&synthetic).is_empty());
        assert!(focus(&tree(&[])).is_empty());
    }
}
