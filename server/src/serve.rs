//! Binding and running the server with its own runtime, so callers (the
//! CLI) stay synchronous and never see tokio.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::{app, ServerError, ServerOptions};

/// Blocking threads reading the store at once.
const READERS: usize = 8;

pub struct Server {
    runtime: Runtime,
    listener: TcpListener,
    app: Router,
    address: SocketAddr,
}

impl Server {
    /// Binds the address; requests are served by [`Server::run`].
    pub fn bind(options: &ServerOptions) -> Result<Server, ServerError> {
        // Every read of the store is a blocking task with a connection of
        // its own: a few at a time keep up with any number of open pages
        // (reads take milliseconds), where tokio's default of 512 threads let
        // 50 live lists hold 50 connections, each with its page cache and
        // allocator arena, at once.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .max_blocking_threads(READERS)
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let bind_error = |source| ServerError::Bind {
            address: format!("{}:{}", options.host, options.port),
            source,
        };
        let listener = runtime
            .block_on(TcpListener::bind((options.host.as_str(), options.port)))
            .map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            runtime,
            listener,
            app: app(options),
            address,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Where to open the dashboard.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Whether other machines may reach it: then anyone who can reach the
    /// port can read the recorded requests, which may carry secrets.
    pub fn is_exposed(&self) -> bool {
        !self.address.ip().is_loopback()
    }

    /// Serves until the process ends.
    pub fn run(self) -> Result<(), ServerError> {
        self.serve(std::future::pending())
    }

    /// Serves until `stop` is set (a signal handler's flag), then returns
    /// without waiting for open pages: a request list's live stream never
    /// ends by itself. Reads of the store still running get a second.
    pub fn run_until(self, stop: Arc<AtomicBool>) -> Result<(), ServerError> {
        self.serve(async move { stopped(&stop).await })
    }

    fn serve(self, stop: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server {
            runtime,
            listener,
            app,
            ..
        } = self;
        let served = runtime.block_on(async move {
            tokio::select! {
                served = axum::serve(listener, app) => served,
                () = stop => Ok(()),
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        served.map_err(ServerError::Serve)
    }
}

async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
