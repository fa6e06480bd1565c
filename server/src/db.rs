//! Reading the store off the async runtime.

use std::path::PathBuf;
use std::sync::Arc;

use timeglass_store::Store;

use crate::error::AppError;

/// Runs `f` on a blocking thread over a freshly opened store, so a page
/// always shows what the recorder has written so far.
pub(crate) async fn read<T, F>(db: Arc<PathBuf>, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, AppError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&Store::open_existing(&db)?)).await?
}
