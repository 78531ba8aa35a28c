//! The `conclave` subcommands over the catalog: list, run (and replay), sweep (and merge),
//! shrink, check-determinism.

use std::path::Path;

use conclave_scenarios::Error;

pub(crate) mod determinism;
pub(crate) mod list;
pub(crate) mod run;
pub(crate) mod shrink;
pub(crate) mod sweep;

/// How much a command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The verdict alone.
    Quiet,
    /// A summary sized for a terminal.
    Summary,
    /// Every fault and event too.
    Verbose,
    /// JSON lines for machines.
    Json,
}

/// What a command concluded: every check held, or some failed (exit codes 0 and 1; an
/// [`Error`] is bad usage or input, exit code 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every check judged and held.
    Held,
    /// Some check failed.
    Failed,
}

impl Verdict {
    pub(crate) fn of(held: bool) -> Self {
        if held {
            Self::Held
        } else {
            Self::Failed
        }
    }
}

/// How this command was started, so that a printed replay line works when pasted: through
/// `cargo run` from a checkout, an installed `conclave` on the path, or a path to the
/// binary.
pub(crate) fn program() -> String {
    let arg0 = std::env::args().next().unwrap_or_else(|| "conclave".to_string());
    if std::env::var("CARGO_PKG_NAME").is_ok_and(|p| p == "conclave-scenarios") && arg0.contains("target") {
        let release = if arg0.contains("release") { " --release" } else { "" };
        let features = conclave_scenarios::trial::FEATURES;
        let features = if features.is_empty() { String::new() } else { format!(" --features {features}") };
        return format!("cargo run{release} -p conclave-scenarios{features} --");
    }
    if !arg0.contains('/') && !arg0.contains('\\') {
        return "conclave".to_string();
    }
    arg0
}

/// The file's text, or an error naming it.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })
}

/// Writes the file, or an error naming it.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })
}

/// How many runs at once: every core unless told.
pub(crate) fn parallelism(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)).max(1)
}

/// Runs `work` on each item with `threads` workers; results in the items' order.
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
    done: impl Fn(&R) + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.len()).max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = work(item);
                done(&result);
                // A worker that panicked poisons the lock; the panic is passed on by the scope.
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}
