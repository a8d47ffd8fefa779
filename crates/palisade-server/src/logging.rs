//! Structured logs: JSON lines on stdout (or readable text with `log_format = "pretty"`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::{Config, LogFormat};

/// Dependencies whose debug output carries request data: tokio-postgres logs statement parameters
/// (password hashes, token hashes, emails), hyper logs headers (Authorization, Cookie). They log
/// at most at info whatever level is configured, so no log level can leak a secret; and no more
/// than the configured default level either (at `warn`, PostgreSQL's notices stay out).
const QUIET_DEPENDENCIES: &[&str] = &["tokio_postgres", "hyper", "hyper_util", "h2", "reqwest"];

pub fn filter(level: &str) -> EnvFilter {
    let (mut filter, level) = match EnvFilter::try_new(level) {
        Ok(filter) => (filter, level),
        Err(_) => (EnvFilter::new("info"), "info"),
    };
    let quiet = default_level(level).min(LevelFilter::INFO);
    for dependency in QUIET_DEPENDENCIES {
        filter = filter.add_directive(format!("{dependency}={quiet}").parse().expect("a target and a level"));
    }
    filter
}

/// The level of the directives that name no target (`warn` in `warn,palisade_server=debug`);
/// none: tracing's default, error.
fn default_level(directives: &str) -> LevelFilter {
    directives
        .split(',')
        .filter(|directive| !directive.contains('='))
        .filter_map(|directive| directive.trim().parse::<LevelFilter>().ok())
        .max()
        .unwrap_or(LevelFilter::ERROR)
}

pub fn init(config: &Config) {
    let filter = filter(&config.log_level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an event of `$target` at `$level` passes the filter made from `$directives`.
    macro_rules! enabled {
        ($directives:expr, $target:literal, $level:ident) => {{
            use tracing_subscriber::layer::SubscriberExt;
            let subscriber = tracing_subscriber::registry().with(filter($directives));
            tracing::subscriber::with_default(subscriber, || {
                tracing::event_enabled!(target: $target, tracing::Level::$level)
            })
        }};
    }

    #[test]
    fn dependencies_log_no_more_than_info_nor_than_the_configured_default() {
        // debug everywhere: the dependencies that carry request data stay at info.
        assert!(!enabled!("debug", "tokio_postgres::query", DEBUG));
        assert!(enabled!("debug", "tokio_postgres::connection", INFO));
        assert!(enabled!("debug", "palisade_app", DEBUG));
        // warn: their info (PostgreSQL's notices) stays out too; a target raised on its own
        // does not raise them.
        assert!(!enabled!("warn", "tokio_postgres::connection", INFO));
        assert!(!enabled!("warn,palisade_server=debug", "hyper::proto", INFO));
        assert!(enabled!("warn,palisade_server=debug", "palisade_server", DEBUG));
        assert!(enabled!("warn", "tokio_postgres::connection", WARN));
        assert_eq!(default_level("palisade_server=debug"), LevelFilter::ERROR);
    }
}
