//! What an export shows, read from the store: one request, the requests of
//! an endpoint (in one session or all), or a whole session. The profile
//! formats render a [`Recording`]; the dashboard's download links and
//! `timeglass export` read it the same way.

use timeglass_model::{StackCount, Timeline, DEFAULT_RATE_HZ};
use timeglass_store::{
    CallRow, QueryRow, RequestFilter, RequestPage, RequestRow, SessionId, Sort, Store, StoreError,
};

use crate::stages::{stages, Stage};

/// Which requests an export covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Request(i64),
    /// Every request of `method route`, of one session or of all.
    Route {
        method: String,
        route: String,
        session: Option<SessionId>,
    },
    /// Every request of the session and its samples outside any request.
    Session(SessionId),
}

impl Subject {
    /// A title for the profile (`request 7`, `GET /items/{id}`, `session 2`).
    pub fn title(&self) -> String {
        match self {
            Subject::Request(id) => format!("request {id}"),
            Subject::Route {
                method,
                route,
                session: None,
            } => format!("{method} {route}"),
            Subject::Route {
                method,
                route,
                session: Some(s),
            } => format!("{method} {route} (session {})", s.0),
            Subject::Session(s) => format!("session {}", s.0),
        }
    }

    /// One request's own timeline, or many requests merged.
    pub fn is_one_request(&self) -> bool {
        matches!(self, Subject::Request(_))
    }
}

/// Why a subject could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no request with id {0}; list them with `timeglass requests`")]
    NoRequest(i64),
    #[error("no request of `{0} {1}` was recorded{2}; list the endpoints with `timeglass report`")]
    NoRoute(String, String, String),
    #[error("no session with id {0}; list them with `timeglass sessions`")]
    NoSession(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One request with everything the formats draw of it.
#[derive(Clone, Debug)]
pub struct RequestTrack {
    pub row: RequestRow,
    pub stages: Vec<Stage>,
    pub queries: Vec<QueryRow>,
    pub calls: Vec<CallRow>,
    pub stacks: Vec<StackCount>,
    /// Its samples at their times; empty when the subject merges an
    /// endpoint's requests (nothing draws their timelines) and for requests
    /// recorded before sample times were stored.
    pub timeline: Timeline,
    /// The sampling interval of its session: what one sample weighs.
    pub interval_ns: u64,
}

/// Stacks sampled outside any request, with their session's interval.
#[derive(Clone, Debug, Default)]
pub struct Outside {
    pub stacks: Vec<StackCount>,
    /// The same samples at their times, per process pid.
    pub timelines: Vec<(u32, Timeline)>,
    pub interval_ns: u64,
}

/// What an export shows.
#[derive(Clone, Debug)]
pub struct Recording {
    pub subject: Subject,
    /// Oldest first.
    pub requests: Vec<RequestTrack>,
    pub outside: Outside,
}

impl Recording {
    pub fn title(&self) -> String {
        self.subject.title()
    }

    /// Reads the subject; a subject that matches nothing is an error.
    pub fn load(store: &Store, subject: Subject) -> Result<Recording, LoadError> {
        let sessions = store.sessions()?;
        let interval = |session: SessionId| {
            let rate = sessions
                .iter()
                .find(|s| s.id == session)
                .map_or(DEFAULT_RATE_HZ, |s| s.rate_hz)
                .max(1);
            1_000_000_000 / u64::from(rate)
        };
        let mut outside = Outside::default();
        let rows = match &subject {
            Subject::Request(id) => vec![store.request(*id)?.ok_or(LoadError::NoRequest(*id))?],
            Subject::Route {
                method,
                route,
                session,
            } => {
                if let Some(s) = session {
                    if !sessions.iter().any(|x| x.id == *s) {
                        return Err(LoadError::NoSession(s.0));
                    }
                }
                let rows = requests(store, Some(method), Some(route), *session)?;
                if rows.is_empty() {
                    let within = session.map_or(String::new(), |s| format!(" in session {}", s.0));
                    return Err(LoadError::NoRoute(method.clone(), route.clone(), within));
                }
                rows
            }
            Subject::Session(s) => {
                if !sessions.iter().any(|x| x.id == *s) {
                    return Err(LoadError::NoSession(s.0));
                }
                outside = Outside {
                    stacks: store.outside_stacks(*s)?,
                    timelines: store.outside_timelines(*s)?,
                    interval_ns: interval(*s),
                };
                requests(store, None, None, Some(*s))?
            }
        };
        let timelines = !matches!(subject, Subject::Route { .. });
        let mut tracks = Vec::with_capacity(rows.len());
        for row in rows {
            let context = store.request_context(row.id)?;
            let (stacks, timeline) = match timelines {
                true => store.request_profile(row.id)?,
                false => (store.request_stacks(row.id)?, Timeline::default()),
            };
            tracks.push(RequestTrack {
                stacks,
                timeline,
                stages: stages(&row, context.as_ref()),
                queries: store.request_queries(row.id)?,
                calls: store.request_calls(row.id)?,
                interval_ns: interval(row.session_id),
                row,
            });
        }
        Ok(Recording {
            subject,
            requests: tracks,
            outside,
        })
    }
}

/// The requests of a route and/or session, oldest first.
fn requests(
    store: &Store,
    method: Option<&str>,
    route: Option<&str>,
    session: Option<SessionId>,
) -> Result<Vec<RequestRow>, StoreError> {
    let page = RequestPage {
        limit: usize::MAX,
        before: None,
        filter: RequestFilter {
            method: method.map(str::to_string),
            text: route.map(str::to_string),
            session,
            ..RequestFilter::default()
        },
        sort: Sort::Oldest,
    };
    let mut rows = store.request_page(&page)?;
    if let Some(route) = route {
        rows.retain(|r| r.route.as_deref() == Some(route));
    }
    Ok(rows)
}
