//! The text log's field formatter: the bytes of tracing-subscriber's
//! `DefaultFields` without colour, written without its per-field styling.
//! The access log line took 8.7% of a chat run's samples, and formatting its
//! fields a third of that: `DefaultFields` wraps every name in ANSI styles
//! (empty when colour is off) and writes each field through `write!` with
//! three arguments. Here a plain field is its name, `=`, and its value's
//! `Debug`, which is what `DefaultFields` prints without colour; a string
//! that needs no escaping is copied between quotes. The message, raw
//! identifiers (`r#type`) and errors, and everything when colour is on, go
//! through `DefaultFields`' own visitor, so they stay exactly as before.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// Formats fields as `name=value`, space-separated; see the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> PlainVisitor<'a> {
        PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

pub struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// No field written yet: the next one needs no separating space.
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Writes `name=` for a field on the plain path; false when the field
    /// is not on it (already handled, or to go through `DefaultFields`).
    fn plain_name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err()
            || self.writer.has_ansi_escapes()
            || name == "message"
            || name.starts_with("r#")
            || name.starts_with("log.")
        {
            return false;
        }
        if !std::mem::take(&mut self.is_empty) {
            self.result = self.writer.write_char(' ');
        }
        self.result = self
            .result
            .and_then(|()| self.writer.write_str(name))
            .and_then(|()| self.writer.write_char('='));
        self.result.is_ok()
    }

    /// `DefaultFields`' own visitor, for one field.
    fn by_default(&mut self, visit: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut inner = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        visit(&mut inner);
        self.result = inner.finish();
        // It writes every field but `log.*` metadata, which it skips.
        self.is_empty = false;
    }

    fn value(&mut self, value: fmt::Arguments<'_>) {
        self.result = self.writer.write_fmt(value);
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name().starts_with("log.") {
            return;
        }
        if !self.plain_name(field) {
            self.by_default(|v| v.record_str(field, value));
            return;
        }
        // `Debug` of a `str` escapes only `"`, `\` and characters outside
        // printable ASCII here; a string without them is copied as is.
        if value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            self.result = self
                .writer
                .write_char('"')
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'));
        } else {
            self.value(format_args!("{value:?}"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.plain_name(field) {
            self.value(format_args!("{value}"));
        } else {
            self.by_default(|v| v.record_i64(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.plain_name(field) {
            self.value(format_args!("{value}"));
        } else {
            self.by_default(|v| v.record_u64(field, value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.plain_name(field) {
            self.value(format_args!("{value:?}"));
        } else {
            self.by_default(|v| v.record_f64(field, value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.plain_name(field) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        } else {
            self.by_default(|v| v.record_bool(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !field.name().starts_with("log.") {
            self.by_default(|v| v.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name().starts_with("log.") {
            return;
        }
        if self.plain_name(field) {
            self.value(format_args!("{value:?}"));
        } else {
            self.by_default(|v| v.record_debug(field, value));
        }
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::DefaultFields;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// What `emit` logs, formatted with `fields`, without timestamps.
    fn logged<N>(fields: N, ansi: bool, emit: impl Fn()) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(ansi)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    fn same_as_default(emit: impl Fn()) -> String {
        let plain = logged(PlainFields, false, &emit);
        assert_eq!(plain, logged(DefaultFields::new(), false, &emit));
        // With colour everything goes through `DefaultFields`.
        assert_eq!(
            logged(PlainFields, true, &emit),
            logged(DefaultFields::new(), true, &emit)
        );
        plain
    }

    #[derive(Debug)]
    struct Failure;

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upstream \"refused\"")
        }
    }

    impl std::error::Error for Failure {}

    #[test]
    fn the_access_line_is_byte_for_byte_what_default_fields_writes() {
        let out = same_as_default(|| {
            tracing::info!(
                request_id = %"3f2a9c",
                tenant = "acme",
                endpoint = "chat",
                model = "gpt-4o",
                provider = "azure-eu",
                status = 200u16,
                outcome = "ok",
                attempts = 1usize,
                latency_ms = 1.25_f64,
                "request finished"
            );
        });
        assert_eq!(
            out,
            " INFO cordon::cli::log_fields::tests: request finished request_id=3f2a9c \
             tenant=\"acme\" endpoint=\"chat\" model=\"gpt-4o\" provider=\"azure-eu\" status=200 \
             outcome=\"ok\" attempts=1 latency_ms=1.25\n"
        );
    }

    #[test]
    fn every_kind_of_field_matches_default_fields() {
        same_as_default(|| {
            let span = tracing::info_span!("reload", files = 3u64, path = "a \"b\"\n");
            let _in = span.enter();
            tracing::warn!(
                r#type = "raw",
                neg = -7i64,
                whole = 2.0_f64,
                ok = true,
                off = false,
                big = u128::MAX,
                list = ?vec!["x", "y"],
                quoted = "say \"hi\"\\",
                tab = "a\tb",
                unicode = "zürich ✓",
                control = "\u{1b}[31mred",
                error = &Failure as &(dyn std::error::Error + 'static),
                "message with \u{1b}[1m escape and {}",
                "args"
            );
            tracing::error!("only a message");
            tracing::debug!(answer = 42u64);
        });
    }

    proptest! {
        #[test]
        fn any_string_field_matches_default_fields(s in any::<String>(), t in "[ -~]{0,40}") {
            same_as_default(|| tracing::info!(value = s.as_str(), other = t.as_str()));
        }
    }
}
