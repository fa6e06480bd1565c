//! Everything between stored stacks and what a person reads: the views
//! (transforms of a set of stacks, [`View`]) and the renderers (the
//! dashboard's call tree, folded text, inferno's SVG, and the profile
//! formats other tools open). The CLI and the dashboard both render through
//! this crate, so an export and a page of the same profile show the same
//! stacks.
//!
//! Capture, transform, render: the store reads stacks, a [`View`] turns them
//! into the stacks to show, and a renderer turns those into bytes. Nothing
//! here does I/O but [`Recording::load`], which reads the store.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod chrome;
mod error;
mod folded;
mod format;
mod json;
mod kind;
pub mod pprof;
mod recording;
mod spans;
mod speedscope;
mod stages;
mod svg;
mod table;
mod tables;
mod timeline;
mod tree;
mod view;

pub use chrome::chrome;
pub use format::{samples, Format};
pub use recording::{LoadError, Outside, Recording, RequestTrack, Subject};
pub use spans::{spans, Span};
pub use speedscope::speedscope;
pub use stages::{stages, Stage};

pub use error::RenderError;
pub use folded::folded;
pub use kind::{file, kind, Kind, LIBRARY_ONLY};
pub use svg::svg;
pub use table::{Cell, Table, TableFormat, Type};
pub use tables::{endpoints_table, requests_table, statements_table};
pub use timeglass_model::sort_stacks;
pub use tree::{focus, functions, tree, FunctionSamples, Node, Profile};
pub use view::{merge, View, Weight};
