//! Writes a synthetic store for `make bench` (bench/dashboard.py): N requests
//! over ten routes of N/10 requests each, with FastAPI-deep stacks, a few
//! distinct stacks per request, long-tailed durations, and a context per
//! request. Deterministic: the same N gives the same store.
//!
//! `cargo run --release -p timeglass-server --example synthetic_store -- OUT.db [N]`

use std::path::PathBuf;
use std::process::ExitCode;

use timeglass_model::{Frame, ProfiledRequest, Request, RequestContext, StackCount};
use timeglass_store::{Batch, ClockMap, NewProcess, NewSession, Store};

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/items/{item_id}"),
    ("GET", "/items"),
    ("POST", "/items"),
    ("GET", "/users/{user_id}"),
    ("GET", "/orders/{order_id}"),
    ("POST", "/orders"),
    ("GET", "/search"),
    ("GET", "/health"),
    ("DELETE", "/items/{item_id}"),
    ("GET", "/reports/{report_id}"),
];

const FRAMEWORK: &[(&str, &str)] = &[
    ("_run_module_as_main", "<frozen runpy>"),
    ("<module>", "uvicorn/__main__.py"),
    ("main", "uvicorn/main.py"),
    ("run", "uvicorn/server.py"),
    ("run", "asyncio/runners.py"),
    ("BaseEventLoop.run_forever", "asyncio/base_events.py"),
    ("BaseEventLoop._run_once", "asyncio/base_events.py"),
    ("Handle._run", "asyncio/events.py"),
    (
        "RequestResponseCycle.run_asgi",
        "uvicorn/protocols/http/h11_impl.py",
    ),
    ("FastAPI.__call__", "fastapi/applications.py"),
    ("Starlette.__call__", "starlette/applications.py"),
    (
        "ServerErrorMiddleware.__call__",
        "starlette/middleware/errors.py",
    ),
    (
        "ExceptionMiddleware.__call__",
        "starlette/middleware/exceptions.py",
    ),
    ("Router.__call__", "starlette/routing.py"),
    ("Route.handle", "starlette/routing.py"),
    ("app", "fastapi/routing.py"),
    ("run_endpoint_function", "fastapi/routing.py"),
];

const LEAVES: &[(&str, &str)] = &[
    ("execute", "sqlalchemy/engine/base.py"),
    ("dumps", "json/__init__.py"),
    ("validate_python", "pydantic/type_adapter.py"),
    ("compute_totals", "app/services.py"),
    ("render", "app/templates.py"),
    ("hash_password", "app/auth.py"),
    ("send", "httpx/_client.py"),
    ("load", "app/cache.py"),
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn frame(name: &str, short: &str, line: u32) -> Frame {
    let prefix = if short.starts_with("app/") {
        "/srv"
    } else {
        "/venv/lib/python3.12/site-packages"
    };
    Frame {
        name: name.to_string(),
        filename: format!("{prefix}/{short}"),
        short: short.to_string(),
        line,
    }
}

fn stacks(rng: &mut Rng, route: usize, samples: u64) -> Vec<StackCount> {
    let handler = frame(
        &format!("handler_{route}"),
        "app/main.py",
        10 + route as u32,
    );
    let base: Vec<Frame> = FRAMEWORK
        .iter()
        .enumerate()
        .map(|(i, (n, f))| frame(n, f, 20 + i as u32))
        .chain(std::iter::once(handler))
        .collect();
    let distinct = 1 + rng.below(6);
    let mut out = Vec::new();
    let mut left = samples;
    for i in 0..distinct {
        if left == 0 {
            break;
        }
        let take = if i + 1 == distinct {
            left
        } else {
            1 + rng.below(left)
        };
        left -= take;
        let (leaf, file) = LEAVES[((route as u64 + rng.below(3)) % LEAVES.len() as u64) as usize];
        let mut stack = base.clone();
        stack.push(frame(
            &format!("helper_{}", rng.below(4)),
            "app/services.py",
            40,
        ));
        stack.push(frame(leaf, file, 100 + rng.below(5) as u32));
        out.push(StackCount {
            stack: stack.into(),
            samples: take,
        });
    }
    out
}

fn context(method: &str, path: &str) -> RequestContext {
    let mut request_headers = vec![
        ("host".to_string(), "127.0.0.1:8000".to_string()),
        ("user-agent".to_string(), "bench/1.0".to_string()),
        ("accept".to_string(), "application/json".to_string()),
        ("authorization".to_string(), "[redacted]".to_string()),
    ];
    let body = match method {
        "POST" => r#"{"name": "hourglass", "price": 12.5, "password": "[redacted]"}"#.to_string(),
        _ => String::new(),
    };
    if !body.is_empty() {
        request_headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    RequestContext {
        request_headers,
        query: format!("trace={}", path.len()),
        body_bytes: body.len() as u64,
        body,
        response_headers: vec![("content-type".to_string(), "application/json".to_string())],
        response_start_ns: None,
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic_store OUT.db [REQUESTS]");
        return ExitCode::from(2);
    };
    let total: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let _ = std::fs::remove_file(&out);
    match generate(&out, total) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synthetic_store: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &std::path::Path, total: u64) -> Result<(), timeglass_store::StoreError> {
    let mut store = Store::open(out)?;
    let clock = ClockMap {
        mono_ns: 0,
        unix_ns: 1_790_000_000_000_000_000,
    };
    let session = store.begin_session(&NewSession {
        command: vec!["uvicorn".into(), "app:app".into()],
        cwd: "/srv".into(),
        rate_hz: 1000,
        clock,
    })?;
    let process = store.add_process(
        session,
        &NewProcess {
            pid: 4242,
            command_line: vec!["python".into()],
            python_version: Some("3.12.3".into()),
        },
    )?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::new();
    for i in 0..total {
        let route = (i % ROUTES.len() as u64) as usize;
        let (method, template) = ROUTES[route];
        let path = template
            .replace("{item_id}", &rng.below(500).to_string())
            .replace("{user_id}", &rng.below(500).to_string())
            .replace("{order_id}", &rng.below(500).to_string())
            .replace("{report_id}", &rng.below(50).to_string());
        // Long-tailed: mostly a few ms, sometimes hundreds.
        let duration_ns =
            ((1.0 + 4.0 * rng.unit()) * (1.0 / (1.0 - 0.97 * rng.unit())) * 1e6) as u64;
        let start_ns = i * 5_000_000;
        let response_end_ns = start_ns + duration_ns;
        let status = match rng.below(100) {
            0 => 500,
            1..=3 => 404,
            _ if method == "POST" => 201,
            _ => 200,
        };
        let samples = duration_ns / 1_000_000;
        batch.push((
            process,
            ProfiledRequest {
                request: Request {
                    marker_id: i + 1,
                    pid: 4242,
                    tid: 4242,
                    method: method.to_string(),
                    path: path.clone(),
                    route: Some(template.to_string()),
                    status: Some(status),
                    errored: status == 500,
                    cancelled: false,
                    start_ns,
                    end_ns: response_end_ns + rng.below(2) * 3_000_000,
                    response_end_ns: Some(response_end_ns),
                },
                stacks: stacks(&mut rng, route, samples),
                switched_samples: rng.below(2),
                torn_samples: 0,
                queries: Vec::new(),
                calls: Vec::new(),
                waits: Vec::new(),
                n_plus_one: None,
                context: Some(context(method, &path)),
            },
        ));
        if batch.len() == 2_000 {
            store.write(&Batch {
                session,
                requests: std::mem::take(&mut batch),
                outside: vec![],
            })?;
        }
    }
    store.write(&Batch {
        session,
        requests: batch,
        outside: vec![],
    })?;
    Ok(())
}
