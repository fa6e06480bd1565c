//! The differential flame graph's data: the per-request paths of a
//! comparison (`timeglass_compare::path_diff`, or two single requests)
//! merged into a call tree whose nodes carry A's and B's milliseconds per
//! request and a signed change that `diff.js` turns into a colour.
//!
//! Width is B's time (the current one). A change counts as none, and is
//! drawn grey, when it is within the comparison's minimum effect
//! (`MIN_RATIO` of the larger side) or under [`MIN_CHANGE_MS`]: sampling
//! noise should not paint a graph red and blue. Otherwise the intensity is
//! the change against the largest change in the graph, as inferno's
//! differential mode scales it.

use serde::Serialize;
use timeglass_compare::profile::{function_deltas, FunctionDelta, PathDelta};
use timeglass_compare::stats::defaults::MIN_RATIO;

/// Smaller changes per request are drawn as unchanged.
pub(crate) const MIN_CHANGE_MS: f64 = 0.05;
/// A changed frame is at least this intense, so it never looks grey.
const MIN_INTENSITY: f64 = 0.2;

/// One node of the differential call tree (short names: it travels as JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct DiffNode {
    /// Function name.
    pub n: String,
    /// Short file name; empty for synthetic frames.
    pub f: String,
    /// Ms per request with this node on the stack, in A and in B.
    pub a: f64,
    pub b: f64,
    /// The change as a colour: 0 unchanged, up to 1 slower (red), down to
    /// -1 faster (blue).
    pub t: f64,
    pub c: Vec<DiffNode>,
}

impl DiffNode {
    /// The first node named `name` under this one, depth first.
    #[cfg(test)]
    pub(crate) fn find(&self, name: &str) -> Option<&DiffNode> {
        self.c
            .iter()
            .find_map(|c| (c.n == name).then_some(c).or_else(|| c.find(name)))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct DiffProfile {
    /// A root named `all`: every path's time, A and B.
    pub tree: DiffNode,
    /// Every function, the largest change of self time first.
    pub functions: Vec<FunctionDelta>,
}

impl DiffProfile {
    pub(crate) fn new(paths: &[PathDelta]) -> DiffProfile {
        let mut tree = tree(paths);
        let max = max_change(&tree).max(f64::MIN_POSITIVE);
        colour(&mut tree, max);
        DiffProfile {
            tree,
            functions: function_deltas(paths),
        }
    }
}

/// `function (file)` as a comparison names a frame, split in two.
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    match key.strip_suffix(')').and_then(|k| k.rsplit_once(" (")) {
        Some((name, file)) => (name, file),
        None => (key, ""),
    }
}

fn tree(paths: &[PathDelta]) -> DiffNode {
    let mut root = DiffNode {
        n: "all".into(),
        ..DiffNode::default()
    };
    for p in paths {
        root.a += p.a_ms;
        root.b += p.b_ms;
        let mut node = &mut root;
        for key in p.path.split(';') {
            let (name, file) = split_key(key);
            let at = match node.c.iter().position(|c| c.n == name && c.f == file) {
                Some(at) => at,
                None => {
                    node.c.push(DiffNode {
                        n: name.into(),
                        f: file.into(),
                        ..DiffNode::default()
                    });
                    node.c.len() - 1
                }
            };
            node = &mut node.c[at];
            node.a += p.a_ms;
            node.b += p.b_ms;
        }
    }
    sort(&mut root);
    root
}

/// Heaviest in B first, then in A; ties by name, so the picture is stable.
fn sort(node: &mut DiffNode) {
    node.c.sort_by(|x, y| {
        y.b.total_cmp(&x.b)
            .then(y.a.total_cmp(&x.a))
            .then_with(|| x.n.cmp(&y.n))
    });
    node.c.iter_mut().for_each(sort);
}

pub(crate) fn changed(a: f64, b: f64) -> bool {
    let d = (b - a).abs();
    d >= MIN_CHANGE_MS && d > MIN_RATIO * a.max(b)
}

fn max_change(node: &DiffNode) -> f64 {
    node.c
        .iter()
        .map(|c| (c.b - c.a).abs().max(max_change(c)))
        .fold(0.0, f64::max)
}

fn colour(node: &mut DiffNode, max: f64) {
    node.t = match changed(node.a, node.b) {
        true => {
            let d = node.b - node.a;
            d.signum() * (d.abs() / max).clamp(MIN_INTENSITY, 1.0)
        }
        false => 0.0,
    };
    node.c.iter_mut().for_each(|c| colour(c, max));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(path: &str, a_ms: f64, b_ms: f64) -> PathDelta {
        PathDelta {
            path: path.into(),
            a_ms,
            b_ms,
        }
    }

    #[test]
    fn slower_is_red_faster_blue_same_grey_and_sums_climb_the_tree() {
        let p = DiffProfile::new(&[
            path("main (app.py);f (app.py)", 2.0, 4.0),
            path("main (app.py);g (app.py)", 2.0, 2.0),
            path("main (app.py);h (app.py)", 3.0, 1.0),
            path("main (app.py);[sql]", 1.0, 1.02),
        ]);
        let main = &p.tree.c[0];
        assert_eq!((main.n.as_str(), main.f.as_str()), ("main", "app.py"));
        assert_eq!((main.a, main.b), (8.0, 8.02));
        assert_eq!(main.t, 0.0);
        let t = |n: &str| p.tree.find(n).unwrap().t;
        assert_eq!(t("f"), 1.0);
        assert_eq!(t("h"), -1.0);
        assert_eq!(t("g"), 0.0);
        assert_eq!(t("[sql]"), 0.0);
        assert_eq!(p.tree.find("[sql]").unwrap().f, "");
        // B's heaviest first.
        let names: Vec<&str> = main.c.iter().map(|c| c.n.as_str()).collect();
        assert_eq!(names, ["f", "g", "[sql]", "h"]);
        assert_eq!(p.functions[0].function, "f (app.py)");
    }
}
