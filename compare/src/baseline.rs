//! Named baselines in the store: save, load, list, remove, export, import.
//! Every check happens before the store is written, so a failed command
//! leaves it as it was.

use timeglass_store::{BaselineRow, SessionId, Store};

use crate::snapshot::Snapshot;
use crate::CompareError;

/// Letters, digits, `.`, `_` and `-`, so a name is also a file name and
/// needs no quoting in CI scripts.
pub fn check_name(name: &str) -> Result<(), CompareError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    match ok {
        true => Ok(()),
        false => Err(CompareError::BadName(name.to_string())),
    }
}

/// Snapshots `session` (the latest when `None`) and keeps it as `name`.
pub fn save(
    store: &mut Store,
    name: &str,
    session: Option<i64>,
    force: bool,
) -> Result<Snapshot, CompareError> {
    check_name(name)?;
    let mut snap = Snapshot::capture(store, session)?;
    if snap.endpoints.is_empty() {
        return Err(CompareError::EmptySession(snap.session));
    }
    snap.name = Some(name.to_string());
    put(store, &snap, Some(SessionId(snap.session)), force)?;
    Ok(snap)
}

fn put(
    store: &mut Store,
    snap: &Snapshot,
    session: Option<SessionId>,
    force: bool,
) -> Result<(), CompareError> {
    let name = snap.name.as_deref().expect("a baseline has a name");
    if !store.save_baseline(name, session, &snap.to_json(), force)? {
        return Err(CompareError::BaselineExists(name.to_string()));
    }
    Ok(())
}

/// The baseline called `name`.
pub fn load(store: &Store, name: &str) -> Result<Snapshot, CompareError> {
    let body = store
        .baseline(name)?
        .ok_or_else(|| CompareError::UnknownBaseline(name.to_string()))?;
    Snapshot::from_json(&body, &format!("baseline `{name}`"))
}

pub fn list(store: &Store) -> Result<Vec<BaselineRow>, CompareError> {
    Ok(store.baselines()?)
}

pub fn remove(store: &mut Store, name: &str) -> Result<(), CompareError> {
    match store.remove_baseline(name)? {
        true => Ok(()),
        false => Err(CompareError::UnknownBaseline(name.to_string())),
    }
}

/// The document `baseline export` writes.
pub fn export(store: &Store, name: &str) -> Result<String, CompareError> {
    Ok(load(store, name)?.to_json())
}

/// Keeps the baseline document `text` (read from `what`) under `name`, or
/// under the name it was exported with; returns the name.
pub fn import(
    store: &mut Store,
    text: &str,
    what: &str,
    name: Option<&str>,
    force: bool,
) -> Result<String, CompareError> {
    let mut snap = Snapshot::from_json(text, what)?;
    let name = match name.or(snap.name.as_deref()) {
        Some(n) => n.to_string(),
        None => {
            return Err(CompareError::NotABaseline {
                what: what.to_string(),
                why: "it has no name; give one with `--name`".into(),
            })
        }
    };
    check_name(&name)?;
    snap.name = Some(name.clone());
    put(store, &snap, None, force)?;
    Ok(name)
}
