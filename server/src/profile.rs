//! Transforms of stacks, before any renderer sees them: folding library
//! frames into the app code that called them ("my code only"), hiding the
//! synthetic frames TimeGlass adds (`[background]`, `[sql] ...`, the state
//! leaves such as `[blocked]`), and keeping CPU time only (the CPU view).

use std::sync::Arc;

use timeglass_model::{Frame, StackCount};

/// Packages that are the framework around the app, wherever they are installed.
const FRAMEWORK_PACKAGES: &[&str] = &[
    "fastapi/",
    "starlette/",
    "anyio/",
    "uvicorn/",
    "uvloop/",
    "h11/",
    "httptools/",
    "pydantic/",
    "pydantic_core/",
    "timeglass/",
];

/// The root of samples that ran only library code, under "my code only".
pub const LIBRARY_ONLY: &str = "(library code)";

/// What kind of code a frame is, for folding and for colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    App,
    Library,
    Synthetic,
}

pub fn kind(frame: &Frame) -> Kind {
    if frame.is_synthetic() {
        return Kind::Synthetic;
    }
    if &*frame.name == LIBRARY_ONLY && frame.filename.is_empty() {
        return Kind::Library;
    }
    let path = frame.filename.as_ref();
    let library = path.contains("/site-packages/")
        || path.contains("/dist-packages/")
        // The standard library, under any prefix (/usr/lib/python3.12/asyncio/...).
        || path.contains("/lib/python3")
        || path.starts_with("<frozen ")
        || FRAMEWORK_PACKAGES.iter().any(|p| frame.short.starts_with(p));
    match library {
        true => Kind::Library,
        false => Kind::App,
    }
}

/// The view the user chose; the default shows every frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Fold library frames into their caller.
    pub mine: bool,
    /// Hide the synthetic frames.
    pub hide_synthetic: bool,
    /// CPU time only: leave out the stacks that end off the CPU (waits,
    /// blocked calls, awaits, queueing); the wall view (default) keeps them.
    pub cpu: bool,
}

impl View {
    pub fn is_identity(self) -> bool {
        !self.mine && !self.hide_synthetic && !self.cpu
    }

    /// Whether the stack is left out whole. Hidden synthetic frames take
    /// their off-CPU time with them too: it was spent waiting, and must not
    /// become self time of the frame that waited. `[native, on CPU]` is
    /// CPU time of its caller and stays.
    fn drops(self, stack: &[Frame]) -> bool {
        let off_cpu = stack.last().is_some_and(Frame::is_off_cpu);
        off_cpu && (self.cpu || self.hide_synthetic)
    }

    /// The stacks as this view shows them; stacks that become equal are merged.
    pub fn apply(self, stacks: &[StackCount]) -> Vec<StackCount> {
        if self.is_identity() {
            return stacks.to_vec();
        }
        let library_only: Arc<[Frame]> = vec![Frame {
            name: LIBRARY_ONLY.to_string().into(),
            filename: "".into(),
            short: "".into(),
            line: 0,
        }]
        .into();
        let mut merged: std::collections::HashMap<Arc<[Frame]>, u64> = Default::default();
        for sc in stacks {
            if self.drops(&sc.stack) {
                continue;
            }
            let kept: Vec<Frame> = sc
                .stack
                .iter()
                .filter(|f| match kind(f) {
                    Kind::App => true,
                    Kind::Library => !self.mine,
                    Kind::Synthetic => !self.hide_synthetic,
                })
                .cloned()
                .collect();
            let only_library = self.mine && !kept.iter().any(|f| kind(f) == Kind::App);
            let stack = if only_library && kept.is_empty() {
                library_only.clone()
            } else if only_library {
                // Synthetic roots ([background]) stay; the library code under them folds into one frame.
                kept.into_iter()
                    .chain(library_only.iter().cloned())
                    .collect::<Vec<_>>()
                    .into()
            } else {
                kept.into()
            };
            *merged.entry(stack).or_default() += sc.samples;
        }
        let mut out: Vec<StackCount> = merged
            .into_iter()
            .map(|(stack, samples)| StackCount { stack, samples })
            .collect();
        out.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| a.stack.cmp(&b.stack))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, filename: &str, short: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: filename.into(),
            short: short.into(),
            line: 1,
        }
    }

    fn names(sc: &StackCount) -> Vec<&str> {
        sc.stack.iter().map(|f| f.name.as_ref()).collect()
    }

    #[test]
    fn kinds() {
        let site = "/v/lib/python3.12/site-packages/fastapi/routing.py";
        assert_eq!(kind(&f("run", site, "fastapi/routing.py")), Kind::Library);
        assert_eq!(
            kind(&f(
                "run",
                "/usr/lib/python3.12/asyncio/runners.py",
                "asyncio/runners.py"
            )),
            Kind::Library
        );
        assert_eq!(
            kind(&f(
                "_run_module_as_main",
                "<frozen runpy>",
                "<frozen runpy>"
            )),
            Kind::Library
        );
        assert_eq!(
            kind(&f("handler", "/srv/app/main.py", "main.py")),
            Kind::App
        );
        assert_eq!(kind(&Frame::synthetic("[background]")), Kind::Synthetic);
    }

    #[test]
    fn my_code_only_folds_library_frames_into_their_caller() {
        let lib = |n: &str| {
            f(
                n,
                "/v/lib/python3.12/site-packages/starlette/x.py",
                "starlette/x.py",
            )
        };
        let app = |n: &str| f(n, "/srv/app.py", "app.py");
        let stacks = vec![
            StackCount {
                stack: vec![lib("serve"), app("handler"), lib("dumps")].into(),
                samples: 3,
            },
            StackCount {
                stack: vec![lib("serve"), app("handler")].into(),
                samples: 2,
            },
            StackCount {
                stack: vec![lib("serve"), lib("idle")].into(),
                samples: 4,
            },
            StackCount {
                stack: vec![Frame::synthetic("[background]"), lib("send")].into(),
                samples: 1,
            },
        ];
        let mine = View {
            mine: true,
            ..View::default()
        }
        .apply(&stacks);
        assert_eq!(names(&mine[0]), ["handler"]);
        assert_eq!(mine[0].samples, 5);
        assert_eq!(names(&mine[1]), [LIBRARY_ONLY]);
        assert_eq!(mine[1].samples, 4);
        assert_eq!(names(&mine[2]), ["[background]", LIBRARY_ONLY]);

        let plain = View {
            hide_synthetic: true,
            ..View::default()
        }
        .apply(&stacks);
        assert!(plain
            .iter()
            .all(|s| !s.stack.iter().any(Frame::is_synthetic)));
        assert_eq!(plain.iter().map(|s| s.samples).sum::<u64>(), 10);
    }

    #[test]
    fn the_cpu_view_keeps_python_and_native_and_drops_time_off_the_cpu() {
        use timeglass_model::{BLOCKED_FRAME, NATIVE_FRAME, SQL_FRAME_PREFIX};
        let app = |n: &str| f(n, "/srv/app.py", "app.py");
        let with = |leaf: Frame, samples| StackCount {
            stack: vec![app("handler"), leaf].into(),
            samples,
        };
        let stacks = vec![
            with(app("compute"), 5),
            with(Frame::synthetic(NATIVE_FRAME), 3),
            with(Frame::synthetic(BLOCKED_FRAME), 7),
            with(Frame::synthetic("[await asyncio.sleep]"), 11),
            with(Frame::synthetic(&format!("{SQL_FRAME_PREFIX}SELECT 1")), 13),
        ];
        let total = |v: View| v.apply(&stacks).iter().map(|s| s.samples).sum::<u64>();
        assert_eq!(total(View::default()), 39, "wall: everything");
        let cpu = View {
            cpu: true,
            ..View::default()
        };
        assert_eq!(total(cpu), 8);
        let kept = cpu.apply(&stacks);
        let leaves: Vec<&str> = kept
            .iter()
            .map(|s| s.stack.last().unwrap().name.as_ref())
            .collect();
        assert_eq!(leaves, ["compute", NATIVE_FRAME]);
        // Without synthetic frames native time is its caller's self time.
        let plain = View {
            hide_synthetic: true,
            ..View::default()
        }
        .apply(&stacks);
        assert_eq!(names(&plain[0]), ["handler", "compute"]);
        assert_eq!((names(&plain[1]), plain[1].samples), (vec!["handler"], 3));
        assert_eq!(plain.len(), 2);
    }
}
