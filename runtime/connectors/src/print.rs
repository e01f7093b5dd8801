//! `print`: rows on standard output.

use weir::connector::{ConnectorError, Sink};
use weir::record::Rec;

use crate::changelog::ChangeBatch;
use crate::registry::{ChangelogMode, Connector, SinkArgs, TableOptions};
use crate::rows::print_rows;

/// `print`: rows as `+I[a, b]` on standard output (accepts changelogs).
pub struct Print;

struct PrintSink {
    prefix: String,
}

impl Sink<ChangeBatch> for PrintSink {
    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for r in batch {
            for line in print_rows(&r.value).map_err(ConnectorError::Other)? {
                writeln!(out, "{}{line}", self.prefix).map_err(|e| ConnectorError::io("stdout", e))?;
            }
        }
        Ok(())
    }
}

impl Connector for Print {
    fn name(&self) -> &str {
        "print"
    }
    fn options(&self) -> &[&str] {
        &["print-identifier"]
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::All)
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let prefix = opts.get("print-identifier").map(|p| format!("{p}> ")).unwrap_or_default();
        let h = args.stream.sink(args.name, move |_| PrintSink { prefix: prefix.clone() }).uid(args.uid);
        if let Some(p) = args.parallelism {
            h.parallelism(p);
        }
        Ok(())
    }
}
