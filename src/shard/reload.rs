//! Reloading the config while the router runs (`SIGHUP`, `POST /reload`): read and check the
//! file, refuse it whole if anything in it needs a restart ([`Config::diff`]), else publish it
//! for the cores, each of which applies it at its next tick (`CoreState::apply_config`), and
//! wait until they have. Links and Prepares in flight are untouched.
//!
//! One reload runs at a time. A refused reload leaves the running config as it was, and is
//! logged and counted like an applied one.

use crate::config::{Change, Config, ConfigError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `run` applied to the file's config (command-line overrides), applied again to each
/// reloaded one.
pub type Overrides = Arc<dyn Fn(&mut Config) -> Result<(), ConfigError> + Send + Sync>;

/// How long a reload waits for every core to apply it.
const APPLY_DEADLINE: Duration = Duration::from_secs(5);

/// The running config, and reloads.
pub(crate) struct ConfigHub {
    current: Mutex<Option<Arc<Config>>>,
    /// Bumped by every applied reload; each core applies up to it.
    epoch: AtomicU64,
    /// Per core: the epoch it applied.
    applied: Vec<AtomicU64>,
    source: Mutex<Option<(PathBuf, Option<Overrides>)>>,
    /// One reload at a time.
    running: Mutex<()>,
    /// Reloads applied and refused.
    pub(crate) reloads: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl std::fmt::Debug for ConfigHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHub")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl ConfigHub {
    pub(crate) fn new(cores: usize) -> ConfigHub {
        ConfigHub {
            current: Mutex::new(None),
            epoch: AtomicU64::new(0),
            applied: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            source: Mutex::new(None),
            running: Mutex::new(()),
            reloads: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Sets the running config and where a reload reads the next one.
    pub(crate) fn start(
        &self,
        config: Arc<Config>,
        path: Option<PathBuf>,
        overrides: Option<Overrides>,
    ) {
        *lock(&self.current) = Some(config);
        *lock(&self.source) = path.map(|p| (p, overrides));
    }

    /// The running config (`None` before `start`).
    pub(crate) fn current(&self) -> Option<Arc<Config>> {
        lock(&self.current).clone()
    }

    /// The latest epoch.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A core applied `epoch`.
    pub(crate) fn applied(&self, core: usize, epoch: u64) {
        self.applied[core].store(epoch, Ordering::Release);
    }

    /// Reads the file again and applies it; returns what changed, or why nothing did (the
    /// config error names its key).
    pub(crate) fn reload(&self) -> Result<Vec<Change>, String> {
        let _one = lock(&self.running);
        let result = self.try_reload();
        match &result {
            Ok(changes) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(changes = changes.len(), "config reloaded");
                for change in changes {
                    tracing::info!("  {}", change.what);
                }
            }
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("config reload refused, the running config stays: {e}");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<Vec<Change>, String> {
        let (path, overrides) = lock(&self.source)
            .clone()
            .ok_or("the router was started without a config file to reload")?;
        let old = self.current().ok_or("the router has not started")?;
        // A file without ilp_address keeps the address learned from the parent at start.
        let mut new =
            Config::load_with_address(&path, Some(old.ilp_address())).map_err(|e| e.to_string())?;
        if let Some(overrides) = overrides {
            overrides(&mut new).map_err(|e| e.to_string())?;
        }
        let changes = old.diff(&new);
        let restart: Vec<&str> = changes
            .iter()
            .filter(|c| !c.live)
            .map(|c| c.what.as_str())
            .collect();
        if !restart.is_empty() {
            return Err(format!(
                "these changes need a restart: {}",
                restart.join("; ")
            ));
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        *lock(&self.current) = Some(Arc::new(new));
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let start = Instant::now();
        while self
            .applied
            .iter()
            .any(|a| a.load(Ordering::Acquire) < epoch)
        {
            if start.elapsed() > APPLY_DEADLINE {
                return Err("published, but not every core applied it within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(changes)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
