//! Structured logs: JSON lines on stdout (or readable text with `log_format = "pretty"`).

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Dependencies whose debug output carries request data: tokio-postgres logs statement parameters
/// (password hashes, token hashes, emails), hyper logs headers (Authorization, Cookie). They stay
/// at info whatever level is configured, so no log level can leak a secret.
const QUIET_DEPENDENCIES: &[&str] =
    &["tokio_postgres=info", "hyper=info", "hyper_util=info", "h2=info", "reqwest=info"];

pub fn filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in QUIET_DEPENDENCIES {
        filter = filter.add_directive(directive.parse().expect("static directive"));
    }
    filter
}

pub fn init(config: &Config) {
    let filter = filter(&config.log_level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
