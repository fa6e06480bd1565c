//! Live updates of the request list: a server-sent event per new request,
//! filtered like the list that asked, a fraction of a second after the
//! recorder stores it.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use timeglass_store::RequestRow;

use crate::error::ApiError;
use crate::list::ListParams;
use crate::pages::{request_line, RouteP95};
use crate::{db, AppState};

/// How often the store is looked at. The recorder writes every 100 ms.
const POLL: Duration = Duration::from_millis(150);
/// Most requests sent per look; the rest follow at the next one.
const BATCH: usize = 200;

#[derive(Deserialize)]
pub(crate) struct After {
    /// The newest request id the list already has.
    #[serde(default)]
    after: i64,
}

/// One `request` event: the request as `/api/v1/requests` lists it (queries,
/// DB time and N+1 flag included), and its row as the list renders it.
#[derive(Serialize)]
struct NewRequest {
    #[serde(flatten)]
    request: RequestRow,
    html: String,
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(after): Query<After>,
    Query(params): Query<ListParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = params.filter()?;
    let start = (state, after.after, filter, true);
    let events = stream::unfold(start, |(state, after, filter, first)| async move {
        if !first {
            tokio::time::sleep(POLL).await;
        }
        let f = filter.clone();
        let cache = state.p95.clone();
        let found = db::read(state.db.clone(), move |store| {
            // The newest id first: a request stored after it is sent next time.
            let last = store.last_request_id()?;
            let mut rows = store.requests_after(after, &f, BATCH)?;
            rows.retain(|r| r.id <= last);
            let p95 = RouteP95::read(store, &cache, &rows)?;
            let lines: Vec<NewRequest> = rows
                .into_iter()
                .map(|r| NewRequest {
                    html: request_line(&r, &p95),
                    request: r,
                })
                .collect();
            Ok((lines, last))
        })
        .await;
        let (events, after) = match found {
            Ok((lines, last)) => {
                // Requests the filter hides move the cursor on too.
                let next = match lines.len() {
                    BATCH => lines.last().map_or(after, |l| l.request.id),
                    _ => last.max(after),
                };
                let events: Vec<Event> = lines
                    .iter()
                    .map(|l| {
                        Event::default()
                            .event("request")
                            .json_data(l)
                            .expect("serializes")
                    })
                    .collect();
                (events, next)
            }
            // No store yet, or a busy one: try again at the next look.
            Err(_) => (Vec::new(), after),
        };
        Some((
            stream::iter(events.into_iter().map(Ok)),
            (state, after, filter, false),
        ))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(events.flatten()).keep_alive(KeepAlive::default()))
}
