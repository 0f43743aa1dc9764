//! What asks for a rule reload: SIGHUP, and changes to the rule files (and placeholders).

use super::RunError;
use crate::config::Config;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Sends `"sighup"` on every SIGHUP.
pub(super) fn on_sighup(tx: mpsc::Sender<&'static str>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be handled here; rules reload on file changes only");
            return;
        };
        while hup.recv().await.is_some() {
            if tx.send("sighup").await.is_err() {
                break;
            }
        }
    });
    #[cfg(not(unix))]
    drop(tx);
}

/// Watches the rule paths and the placeholders file; sends `"file change"` on a change.
/// The watcher stops when the returned value is dropped.
pub(super) fn watch_files(
    config: &Config,
    tx: mpsc::Sender<&'static str>,
) -> Result<notify::RecommendedWatcher, RunError> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            matches!(
                e.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Remove(_)
            )
        });
        if relevant {
            // A full channel already holds a pending reload: this change is covered by it.
            let _ = tx.try_send("file change");
        }
    })
    .map_err(|source| RunError::Watch {
        path: "(the watcher did not start)".into(),
        source,
    })?;
    let paths = config
        .rules
        .paths
        .iter()
        .chain(config.rules.placeholders.iter());
    for p in paths {
        watcher
            .watch(p, RecursiveMode::Recursive)
            .map_err(|source| RunError::Watch {
                path: p.display().to_string(),
                source,
            })?;
    }
    Ok(watcher)
}
