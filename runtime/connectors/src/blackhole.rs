//! `blackhole`: a sink that discards everything.

use weir::connector::blackhole::BlackholeSink;

use crate::registry::{ChangelogMode, Connector, SinkArgs, TableOptions};

/// `blackhole`: discards everything (accepts changelogs).
pub struct Blackhole;

impl Connector for Blackhole {
    fn name(&self) -> &str {
        "blackhole"
    }
    fn options(&self) -> &[&str] {
        &[]
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::All)
    }
    fn add_sink(&self, _opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let h = args.stream.sink(args.name, |_| BlackholeSink::default()).uid(args.uid);
        if let Some(p) = args.parallelism {
            h.parallelism(p);
        }
        Ok(())
    }
}
