//! Stacks read back from the trie of frames (`stacks`, `frames`): the nodes
//! on the way from some leaves to the root, each once, then the frames they
//! name, each once; the stacks are assembled in memory.
//!
//! The nodes are read a level at a time (the leaves, then the parents not
//! yet read, and so on up), each level one query by primary key. One
//! recursive query did the same walk, but paid for its queue, the
//! deduplication of its `UNION` and a join to `frames` per node: it was a
//! quarter of a 10,000-sample export (perf). Frames are read apart from the
//! nodes because many nodes share one (the same function at the same line
//! under different callers), and each read frame is three allocations.

use rusqlite::types::{Type, Value};
use rusqlite::{params_from_iter, Connection};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use timeglass_model::Frame;

/// The nodes from some leaves up to the root, with their frames.
#[derive(Default)]
pub(crate) struct Trie {
    /// Node id → (parent id, frame id).
    nodes: FxHashMap<i64, (i64, i64)>,
    frames: FxHashMap<i64, Frame>,
}

/// A table's ids are read by one scan of their range when they are at
/// least this dense in it (the rows between them are read too, and are
/// cheaper to step over than a lookup by key is), else by key.
const NODES_DENSITY: i64 = 16;
const FRAMES_DENSITY: i64 = 4;

/// How to select some ids (sorted, distinct, not empty) of a table.
enum Ids<'a> {
    /// `BETWEEN ?1 AND ?2`: every row of the range.
    Range(i64, i64),
    /// `IN (SELECT value FROM json_each(?1))`.
    Keys(&'a [i64]),
}

impl Ids<'_> {
    fn of(ids: &[i64], density: i64) -> Ids<'_> {
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let count = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        match last.saturating_sub(first) < count.saturating_mul(density) {
            true => Ids::Range(first, last),
            false => Ids::Keys(ids),
        }
    }

    /// Runs `sql` with `{ids}` replaced by the condition, `each` on every row.
    fn query(
        &self,
        conn: &Connection,
        sql: &str,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let (condition, values) = match self {
            Ids::Range(first, last) => (
                "BETWEEN ?1 AND ?2",
                vec![Value::Integer(*first), Value::Integer(*last)],
            ),
            Ids::Keys(ids) => (
                "IN (SELECT value FROM json_each(?1))",
                vec![Value::Text(
                    serde_json::to_string(ids).expect("integers serialize"),
                )],
            ),
        };
        let mut stmt = conn.prepare_cached(&sql.replace("{ids}", condition))?;
        let mut rows = stmt.query(params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            each(row)?;
        }
        Ok(())
    }
}

impl Trie {
    /// Reads every node from the `leaves` (0: the empty stack) to the root.
    pub(crate) fn read(
        conn: &Connection,
        leaves: impl Iterator<Item = i64>,
    ) -> rusqlite::Result<Trie> {
        let mut trie = Trie::default();
        let mut level: Vec<i64> = leaves.filter(|&id| id != 0).collect();
        let mut next = Vec::new();
        // Ids asked for (found or not), and nodes whose way up is known or
        // asked for.
        let mut asked: FxHashSet<i64> = FxHashSet::default();
        let mut walked: FxHashSet<i64> = FxHashSet::default();
        loop {
            level.sort_unstable();
            level.dedup();
            if level.is_empty() {
                break;
            }
            // A range holds other nodes too: each is kept, since it may be
            // an ancestor still to come (a node is always newer than its
            // parent).
            let sql = "SELECT id, parent_id, frame_id FROM stacks WHERE id {ids}";
            Ids::of(&level, NODES_DENSITY).query(conn, sql, |row| {
                trie.nodes.insert(row.get(0)?, (row.get(1)?, row.get(2)?));
                Ok(())
            })?;
            asked.extend(level.iter().copied());
            next.clear();
            for &id in &level {
                let mut node = id;
                while node != 0 {
                    match trie.nodes.get(&node) {
                        Some(&(parent, _)) if walked.insert(node) => node = parent,
                        Some(_) => break,
                        None => {
                            if !asked.contains(&node) {
                                next.push(node);
                            }
                            break;
                        }
                    }
                }
            }
            std::mem::swap(&mut level, &mut next);
        }
        // Only the nodes on the way from the leaves, and only their frames.
        trie.nodes.retain(|id, _| walked.contains(id));
        trie.read_frames(conn)?;
        Ok(trie)
    }

    fn read_frames(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut ids: Vec<i64> = self.nodes.values().map(|&(_, frame)| frame).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        self.frames.reserve(ids.len());
        // Frames share their files and often their names: each distinct
        // text is one allocation (and frames that share it compare fast).
        let mut texts: FxHashSet<Arc<str>> = FxHashSet::default();
        let mut text = |row: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<Arc<str>> {
            let value = row.get_ref(i)?.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))
            })?;
            Ok(match texts.get(value) {
                Some(text) => text.clone(),
                None => {
                    let text: Arc<str> = value.into();
                    texts.insert(text.clone());
                    text
                }
            })
        };
        let sql = "SELECT id, name, filename, short, line FROM frames WHERE id {ids}";
        Ids::of(&ids, FRAMES_DENSITY).query(conn, sql, |row| {
            let id: i64 = row.get(0)?;
            if ids.binary_search(&id).is_ok() {
                let frame = Frame {
                    name: text(row, 1)?,
                    filename: text(row, 2)?,
                    short: text(row, 3)?,
                    line: row.get(4)?,
                };
                self.frames.insert(id, frame);
            }
            Ok(())
        })
    }

    /// The stack whose leaf is `leaf`, root first; an error when a node or
    /// frame on the way is missing (the file is damaged).
    pub(crate) fn stack(&self, leaf: i64) -> rusqlite::Result<Arc<[Frame]>> {
        let mut frames = Vec::new();
        let mut node = leaf;
        while node != 0 {
            let Some(&(parent, frame)) = self.nodes.get(&node) else {
                return Err(damaged(format!("stack node {node} is missing")));
            };
            let Some(frame) = self.frames.get(&frame) else {
                return Err(damaged(format!("frame {frame} is missing")));
            };
            // A cycle would never reach the root.
            if frames.len() > self.nodes.len() {
                return Err(damaged(format!("stack node {leaf} is in a cycle")));
            }
            frames.push(frame.clone());
            node = parent;
        }
        frames.reverse();
        Ok(frames.into())
    }
}

fn damaged(what: String) -> rusqlite::Error {
    let msg = format!("{what}: the database is damaged");
    rusqlite::Error::FromSqlConversionFailure(0, Type::Integer, msg.into())
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    /// A connection with the two tables of the trie, frame `f` named `f{f}`.
    fn trie_db(frames: i64, nodes: &[(i64, i64, i64)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE frames (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 filename TEXT NOT NULL, short TEXT NOT NULL, line INTEGER NOT NULL);
             CREATE TABLE stacks (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL,
                 frame_id INTEGER NOT NULL);",
        )
        .unwrap();
        for f in 1..=frames {
            conn.execute(
                "INSERT INTO frames VALUES (?1, ?2, '/srv/app.py', 'app.py', ?1)",
                params![f, format!("f{f}")],
            )
            .unwrap();
        }
        for &(id, parent, frame) in nodes {
            conn.execute(
                "INSERT INTO stacks VALUES (?1, ?2, ?3)",
                params![id, parent, frame],
            )
            .unwrap();
        }
        conn
    }

    fn names(trie: &Trie, leaf: i64) -> Vec<String> {
        let stack = trie.stack(leaf).unwrap();
        stack.iter().map(|f| f.name.to_string()).collect()
    }

    #[test]
    fn stacks_come_back_root_first_whether_nodes_are_read_by_range_or_by_key() {
        // Dense: a chain of 50 nodes and a branch off its middle.
        let mut nodes: Vec<(i64, i64, i64)> = (1..=50).map(|i| (i, i - 1, 1 + i % 3)).collect();
        nodes.push((51, 25, 3));
        let conn = trie_db(3, &nodes);
        let trie = Trie::read(&conn, [50, 51, 0].into_iter()).unwrap();
        assert_eq!(names(&trie, 50).len(), 50);
        assert_eq!(names(&trie, 51)[..2], ["f2", "f3"]);
        assert_eq!(names(&trie, 51).len(), 26);
        assert!(trie.stack(0).unwrap().is_empty(), "0 is the empty stack");
        // Sparse: ids far apart are read by key, a level at a time.
        let conn = trie_db(
            3,
            &[(1, 0, 1), (5_000, 1, 2), (90_000, 5_000, 3), (7, 1, 3)],
        );
        let trie = Trie::read(&conn, [90_000, 7].into_iter()).unwrap();
        assert_eq!(names(&trie, 90_000), ["f1", "f2", "f3"]);
        assert_eq!(names(&trie, 7), ["f1", "f3"]);
        let shared = (trie.stack(90_000).unwrap(), trie.stack(7).unwrap());
        assert!(
            Arc::ptr_eq(&shared.0[0].filename, &shared.1[0].filename),
            "one text per distinct file"
        );
    }

    #[test]
    fn a_missing_node_or_frame_or_a_cycle_is_an_error_not_a_hang() {
        let conn = trie_db(2, &[(1, 0, 1), (2, 1, 9), (3, 77, 1), (5, 6, 1), (6, 5, 2)]);
        let trie = Trie::read(&conn, [2, 3, 5, 40].into_iter()).unwrap();
        let error = |leaf| trie.stack(leaf).unwrap_err().to_string();
        assert!(
            error(40).contains("stack node 40 is missing"),
            "{}",
            error(40)
        );
        assert!(
            error(3).contains("stack node 77 is missing"),
            "{}",
            error(3)
        );
        assert!(error(2).contains("frame 9 is missing"), "{}", error(2));
        assert!(error(5).contains("cycle"), "{}", error(5));
    }
}
