//! The strings and header vectors of published events, kept per thread for
//! the next events: once a thread has served a request, the events of the
//! next one (method, path, headers, query, route) allocate nothing.

use std::cell::RefCell;

use timeglass_wire::{Event, Region};

use crate::state;

thread_local! {
    static STRINGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static HEADERS: RefCell<Vec<Vec<(String, String)>>> = const { RefCell::new(Vec::new()) };
}

/// Most strings and header vectors kept per thread, and the largest string kept.
const MAX_STRINGS: usize = 64;
const MAX_HEADER_VECS: usize = 4;
const MAX_CAPACITY: usize = 1024;

/// An empty string, a kept one when there is one.
pub(crate) fn string() -> String {
    STRINGS
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// An empty header vector, a kept one when there is one.
pub(crate) fn headers() -> Vec<(String, String)> {
    HEADERS
        .try_with(|h| h.try_borrow_mut().ok().and_then(|mut h| h.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
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
            keep_headers(e.headers);
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

fn keep_headers(mut headers: Vec<(String, String)>) {
    for (name, value) in headers.drain(..) {
        keep_string(name);
        keep_string(value);
    }
    if headers.capacity() == 0 {
        return;
    }
    let _ = HEADERS.try_with(|kept| {
        if let Ok(mut kept) = kept.try_borrow_mut() {
            if kept.len() < MAX_HEADER_VECS {
                kept.push(headers);
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
        let mut headers = headers();
        headers.push(("host".to_owned(), "x".to_owned()));
        keep(Event::RequestContext(RequestContext {
            headers,
            ..RequestContext::default()
        }));
        let again = self::headers();
        assert!(again.is_empty() && again.capacity() >= 1);
    }

    #[test]
    fn huge_strings_are_not_kept() {
        keep_string(String::with_capacity(MAX_CAPACITY + 1));
        STRINGS.with(|s| assert!(s.borrow().iter().all(|s| s.capacity() <= MAX_CAPACITY)));
    }
}
