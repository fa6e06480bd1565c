//! The request list's query parameters, shared by the page, the API and the
//! live stream, so all three show the same requests.

use serde::Deserialize;
use timeglass_report::{parse_time, ReportError};
use timeglass_store::{RequestFilter, RequestPage, SessionId, Sort, Store};

use crate::error::AppError;
use crate::html::query_value;

pub(crate) const DEFAULT_LIMIT: usize = 50;
pub(crate) const MAX_LIMIT: usize = 1000;

/// `?q=TEXT&method=GET&status=5xx&min_ms=100&session=ID&since=T&until=T&sort=-duration&before=ID&limit=N`;
/// empty values mean "not set", as a submitted filter form sends them.
/// `since` and `until` are read as `timeglass report` reads them (RFC 3339
/// or a time ago, `10m`).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    pub q: Option<String>,
    pub method: Option<String>,
    pub status: Option<String>,
    pub min_ms: Option<String>,
    pub session: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub sort: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}

/// The sorts a list offers: `(parameter, sort, label)`.
pub(crate) const SORTS: &[(&str, Sort, &str)] = &[
    ("-time", Sort::Newest, "newest first"),
    ("time", Sort::Oldest, "oldest first"),
    ("-duration", Sort::Slowest, "slowest first"),
    ("duration", Sort::Fastest, "fastest first"),
    ("-cpu", Sort::MostCpu, "most CPU first"),
    ("cpu", Sort::LeastCpu, "least CPU first"),
    ("-memory", Sort::MostMemory, "highest peak RSS first"),
    ("memory", Sort::LeastMemory, "lowest peak RSS first"),
    ("-allocated", Sort::MostAllocated, "most allocated first"),
    ("allocated", Sort::LeastAllocated, "least allocated first"),
];

impl ListParams {
    /// The page to read: one row more than shown, to know whether more follow.
    pub(crate) fn page(&self) -> Result<RequestPage, AppError> {
        Ok(RequestPage {
            limit: self.limit()? + 1,
            before: number(&self.before, "before")?,
            filter: self.filter()?,
            sort: self.sort()?,
        })
    }

    pub(crate) fn filter(&self) -> Result<RequestFilter, AppError> {
        let min_ms: Option<f64> = number(&self.min_ms, "min_ms")?;
        if min_ms.is_some_and(|m| !m.is_finite() || m < 0.0) {
            return Err(AppError::BadInput(
                "`min_ms` must be a non-negative number".into(),
            ));
        }
        let now = timeglass_report::now_unix_ns();
        let time = |v: &Option<String>| set(v).map(|t| parse_time(t, now)).transpose();
        let (since, until) = (time(&self.since)?, time(&self.until)?);
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(ReportError::EmptyRange.into());
            }
        }
        Ok(RequestFilter {
            text: self.text().map(str::to_string),
            method: self.method()?,
            status_class: self.status_class()?,
            min_duration_us: min_ms.map(|ms| (ms * 1000.0).round() as u64),
            session: self.session()?.map(SessionId),
            since_unix_ns: since,
            until_unix_ns: until,
        })
    }

    /// The session chosen, if one is.
    pub(crate) fn session(&self) -> Result<Option<i64>, AppError> {
        set(&self.session)
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    AppError::BadInput(format!("`session` must be a session id, not `{s}`"))
                })
            })
            .transpose()
    }

    /// A session that is not in the store is bad input, as for the report,
    /// rather than a list that stays empty.
    pub(crate) fn check_session(&self, store: &Store) -> Result<(), AppError> {
        match self.session()? {
            Some(id) if store.session_info(SessionId(id))?.is_none() => {
                Err(ReportError::UnknownSession(id).into())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn limit(&self) -> Result<usize, AppError> {
        let limit = number(&self.limit, "limit")?.unwrap_or(DEFAULT_LIMIT);
        Ok(limit.clamp(1, MAX_LIMIT))
    }

    pub(crate) fn text(&self) -> Option<&str> {
        set(&self.q)
    }

    pub(crate) fn method(&self) -> Result<Option<String>, AppError> {
        match set(&self.method) {
            None => Ok(None),
            Some(m) if m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Ok(Some(m.to_ascii_uppercase()))
            }
            Some(m) => Err(AppError::BadInput(format!(
                "`method` must be an HTTP method such as GET, not `{m}`"
            ))),
        }
    }

    /// `2xx` ... `5xx` (or just the digit).
    pub(crate) fn status_class(&self) -> Result<Option<u8>, AppError> {
        let Some(status) = set(&self.status) else {
            return Ok(None);
        };
        let digit = status.strip_suffix("xx").unwrap_or(status);
        match digit.parse::<u8>() {
            Ok(class @ 1..=5) => Ok(Some(class)),
            _ => Err(AppError::BadInput(format!(
                "`status` must be one of 1xx, 2xx, 3xx, 4xx, 5xx, not `{status}`"
            ))),
        }
    }

    pub(crate) fn sort(&self) -> Result<Sort, AppError> {
        let Some(sort) = set(&self.sort) else {
            return Ok(Sort::Newest);
        };
        SORTS
            .iter()
            .find(|(name, _, _)| *name == sort)
            .map(|(_, sort, _)| *sort)
            .ok_or_else(|| {
                AppError::BadInput(format!(
                    "`sort` must be one of -time, time, -duration, duration, -cpu, cpu, not `{sort}`"
                ))
            })
    }

    pub(crate) fn sort_name(&self) -> &'static str {
        let sort = self.sort().unwrap_or_default();
        SORTS
            .iter()
            .find(|(_, s, _)| *s == sort)
            .map_or("-time", |(name, _, _)| name)
    }

    /// Whether any filter is set (as opposed to paging or sorting).
    pub(crate) fn filtered(&self) -> bool {
        [
            &self.q,
            &self.method,
            &self.status,
            &self.min_ms,
            &self.session,
            &self.since,
            &self.until,
        ]
        .iter()
        .any(|v| set(v).is_some())
    }

    /// The filters and sort as a query string (`q=a&sort=-duration`), without
    /// paging; empty if nothing is set. Values are percent-encoded.
    pub(crate) fn query(&self) -> String {
        let pairs = [
            ("q", &self.q),
            ("method", &self.method),
            ("status", &self.status),
            ("min_ms", &self.min_ms),
            ("session", &self.session),
            ("since", &self.since),
            ("until", &self.until),
            ("sort", &self.sort),
        ];
        pairs
            .iter()
            .filter_map(|(name, value)| set(value).map(|v| format!("{name}={}", query_value(v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(value: &Option<String>, name: &str) -> Result<Option<T>, AppError> {
    match set(value) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            AppError::BadInput(format!("`{name}` must be a non-negative number, not `{v}`"))
        }),
    }
}

/// Splits the one extra row off: the rows to show, and the `before` cursor
/// of the next page if there is one.
pub(crate) fn split_page<T>(
    mut rows: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<i64>) {
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(id);
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_round_trip() {
        let p = ListParams {
            q: Some(" items ".into()),
            method: Some("post".into()),
            status: Some("5xx".into()),
            min_ms: Some("2.5".into()),
            sort: Some("-duration".into()),
            before: Some("".into()),
            limit: None,
            ..ListParams::default()
        };
        let page = p.page().unwrap();
        assert_eq!(page.limit, DEFAULT_LIMIT + 1);
        assert_eq!(page.sort, Sort::Slowest);
        assert_eq!(page.before, None);
        assert_eq!(
            page.filter,
            RequestFilter {
                text: Some("items".into()),
                method: Some("POST".into()),
                status_class: Some(5),
                min_duration_us: Some(2500),
                ..RequestFilter::default()
            }
        );
        assert_eq!(
            p.query(),
            "q=items&method=post&status=5xx&min_ms=2.5&sort=-duration"
        );
        for bad in [
            ListParams {
                sort: Some("size".into()),
                ..ListParams::default()
            },
            ListParams {
                method: Some("G T".into()),
                ..ListParams::default()
            },
            ListParams {
                min_ms: Some("-1".into()),
                ..ListParams::default()
            },
            ListParams {
                session: Some("latest".into()),
                ..ListParams::default()
            },
            ListParams {
                since: Some("yesterday".into()),
                ..ListParams::default()
            },
            ListParams {
                since: Some("2026-09-21T14:00:00Z".into()),
                until: Some("2026-09-21T13:00:00Z".into()),
                ..ListParams::default()
            },
        ] {
            assert!(bad.page().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_and_time_range_are_filters_and_stay_in_the_query() {
        let p = ListParams {
            session: Some("2".into()),
            since: Some("2026-09-21T14:00:00Z".into()),
            until: Some("2026-09-21T16:30:00+02:00".into()),
            ..ListParams::default()
        };
        let filter = p.filter().unwrap();
        assert_eq!(filter.session, Some(SessionId(2)));
        assert_eq!(filter.since_unix_ns, Some(1_789_999_200_000_000_000));
        assert_eq!(filter.until_unix_ns, Some(1_790_001_000_000_000_000));
        assert!(p.filtered());
        assert_eq!(
            p.query(),
            "session=2&since=2026-09-21T14%3A00%3A00Z&until=2026-09-21T16%3A30%3A00%2B02%3A00"
        );
        // A time ago is counted back from now.
        let ago = ListParams {
            since: Some("10m".into()),
            ..ListParams::default()
        };
        let since = ago.filter().unwrap().since_unix_ns.unwrap();
        let expected = timeglass_report::now_unix_ns() - 600_000_000_000;
        assert!((expected - since).abs() < 60_000_000_000, "{since}");
    }
}
