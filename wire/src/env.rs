//! Every environment variable TimeGlass reads, defined once.
//!
//! The Python half of the marker reads the same names; `marker/python/timeglass/_env.py`
//! mirrors this list and a test keeps the two in step.

/// Directory where markers create their `<pid>.ring` files. Set by
/// `timeglass run` for its child; otherwise a per-user tmpfs directory.
pub const RUNTIME_DIR: &str = "TIMEGLASS_RUNTIME_DIR";
/// Path of the SQLite store (`--db` overrides it).
pub const DB: &str = "TIMEGLASS_DB";
/// Set to `1` by `timeglass run` in its child: the injected `sitecustomize`
/// wraps every Starlette/FastAPI app without a code change.
pub const AUTO: &str = "TIMEGLASS_AUTO";
/// Set to `0` to turn the marker off entirely (it then passes requests through untouched).
pub const ENABLED: &str = "TIMEGLASS_ENABLED";
/// Where the `timeglass` Python package lives, if not next to the binary.
pub const PYTHON_PACKAGE: &str = "TIMEGLASS_PYTHON_PACKAGE";
/// Set to `0` to not capture request headers, query strings, bodies and
/// response headers (the dashboard's context panel). Secrets are redacted
/// either way.
pub const CONTEXT: &str = "TIMEGLASS_CONTEXT";
/// Set to `0` to turn off capturing SQL statements and outgoing HTTP calls
/// (requests are still recorded). On by default.
pub const CAPTURE: &str = "TIMEGLASS_CAPTURE";
/// Set to `1` by `timeglass run --memory`: the marker samples the app's
/// allocations (bytes allocated per request and where). Off otherwise.
pub const MEMORY: &str = "TIMEGLASS_MEMORY";
/// Set to `1` to time every garbage collection exactly from inside the app
/// (a `gc.callbacks` entry, ~8,500 instructions per collection, most of
/// them CPython's own). Off by default: the recorder reads the collector's
/// state from outside at each sample instead, at no cost to the app.
pub const GC_CALLBACKS: &str = "TIMEGLASS_GC_CALLBACKS";
/// Set to `0` by `timeglass run --no-sql-params`: statements are captured
/// without their parameters.
pub const SQL_PARAMS: &str = "TIMEGLASS_SQL_PARAMS";
/// Set to `0` so that `TimeGlassMiddleware` starts no recorder of its own
/// (without `timeglass run`, the first marked process of a tree starts
/// `timeglass attach` on it).
pub const RECORD: &str = "TIMEGLASS_RECORD";
/// The dashboard's address, for the links the marker gives the app
/// (`request.scope["timeglass"].url`); `http://127.0.0.1:7477` when unset.
pub const UI_URL: &str = "TIMEGLASS_UI_URL";
