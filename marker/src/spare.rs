//! The strings and header vectors of published events, kept per thread for
//! the next events: once a thread has served a request, the events of the
//! next one (method, path, headers, query, route) allocate nothing.
//!
//! A header vector comes back with its strings, one vector per phase
//! (request, response), so the next request's headers are written over the
//! last one's in place.

use std::cell::RefCell;

use timeglass_wire::{Event, Region, PHASE_RESPONSE};

use crate::state;

thread_local! {
    static STRINGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// The request phase's header vector, and the response phase's.
    static HEADERS: RefCell<[Vec<(String, String)>; 2]> =
        const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Most strings kept per thread, and the largest string kept.
const MAX_STRINGS: usize = 64;
const MAX_CAPACITY: usize = 1024;

fn phase_index(phase: u16) -> usize {
    usize::from(phase == PHASE_RESPONSE)
}

/// An empty string, a kept one when there is one.
pub(crate) fn string() -> String {
    STRINGS
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The headers of an event of `phase` being written, over the strings of
/// the last such event's when this thread kept them.
pub(crate) struct Headers {
    pairs: Vec<(String, String)>,
    used: usize,
}

impl Headers {
    pub(crate) fn new(phase: u16) -> Headers {
        let pairs = HEADERS
            .try_with(|h| {
                h.try_borrow_mut()
                    .map(|mut h| std::mem::take(&mut h[phase_index(phase)]))
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        Headers { pairs, used: 0 }
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.pairs.reserve(n.saturating_sub(self.pairs.len()));
    }

    /// The next header's (name, value), both empty.
    pub(crate) fn next(&mut self) -> &mut (String, String) {
        if self.used == self.pairs.len() {
            self.pairs.push(Default::default());
        }
        let pair = &mut self.pairs[self.used];
        self.used += 1;
        pair.0.clear();
        pair.1.clear();
        pair
    }

    /// The headers written.
    pub(crate) fn finish(mut self) -> Vec<(String, String)> {
        self.pairs.truncate(self.used);
        self.pairs
    }
}

/// Publishes an event, then keeps its strings for the next ones.
pub(crate) fn publish(region: &Region, event: Event) {
    state::publish(region, &event);
    keep(event);
}

fn keep(event: Event) {
    match event {
        Event::RequestStart(e) => {
            keep_string(e.method);
            keep_string(e.path);
        }
        Event::RequestEnd(e) => keep_string(e.route),
        Event::RequestContext(e) => {
            keep_headers(e.phase, e.headers);
            keep_string(e.query);
        }
        _ => {}
    }
}

fn keep_string(mut s: String) {
    if s.capacity() == 0 || s.capacity() > MAX_CAPACITY {
        return;
    }
    s.clear();
    let _ = STRINGS.try_with(|strings| {
        if let Ok(mut strings) = strings.try_borrow_mut() {
            if strings.len() < MAX_STRINGS {
                strings.push(s);
            }
        }
    });
}

fn keep_headers(phase: u16, mut headers: Vec<(String, String)>) {
    if headers.capacity() == 0 {
        return;
    }
    headers.retain(|(n, v)| n.capacity() <= MAX_CAPACITY && v.capacity() <= MAX_CAPACITY);
    let _ = HEADERS.try_with(|kept| {
        if let Ok(mut kept) = kept.try_borrow_mut() {
            let slot = &mut kept[phase_index(phase)];
            // Another request's event of the same phase may have been kept meanwhile.
            if slot.capacity() == 0 {
                *slot = headers;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeglass_wire::{RequestContext, RequestStart};

    #[test]
    fn a_published_event_s_strings_come_back_empty() {
        let mut method = string();
        method.push_str("GET");
        let start = Event::RequestStart(RequestStart {
            request_id: 1,
            ts_ns: 0,
            tid: 0,
            method,
            path: String::with_capacity(8),
        });
        keep(start);
        let again = string();
        assert!(again.is_empty() && again.capacity() > 0);
        let mut headers = Headers::new(0);
        headers.next().0.push_str("host");
        keep(Event::RequestContext(RequestContext {
            headers: headers.finish(),
            ..RequestContext::default()
        }));
        let mut again = Headers::new(0);
        let pair = again.next();
        assert!(pair.0.is_empty() && pair.0.capacity() >= 4);
        assert!(again.finish().len() == 1);
    }

    #[test]
    fn huge_strings_are_not_kept() {
        keep_string(String::with_capacity(MAX_CAPACITY + 1));
        STRINGS.with(|s| assert!(s.borrow().iter().all(|s| s.capacity() <= MAX_CAPACITY)));
    }
}
