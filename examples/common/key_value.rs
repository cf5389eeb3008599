//! The `-X KEY=VALUE` argument parser of the example command lines.

/// Parses `KEY=VALUE`. An argument without `=` may be a secret given with another
/// separator (`-X sasl.password:hunter2`), so its error shows at most the key it starts
/// with; clap quotes the whole argument in the error of a parser function, hence a parser
/// of our own.
#[derive(Clone)]
pub struct KeyValue;

impl clap::builder::TypedValueParser for KeyValue {
    type Value = (String, String);

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<(String, String), clap::Error> {
        let fail = |kind, why: String| {
            let arg = arg.map(|a| format!(" for '{a}'")).unwrap_or_default();
            clap::Error::raw(kind, format!("invalid value{arg}: {why}")).format(&mut cmd.clone())
        };
        let text = value.to_str().ok_or_else(|| {
            let why = "not UTF-8 (not shown)".to_string();
            fail(clap::error::ErrorKind::InvalidUtf8, why)
        })?;
        text.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| {
                fail(
                    clap::error::ErrorKind::ValueValidation,
                    without_equals(text),
                )
            })
    }
}

/// Why `text`, which has no `=`, is refused, quoting only its start up to the first `:` or
/// white space, and only if that is written as config keys are (dotted, lowercase): a lone
/// word may be the secret itself.
fn without_equals(text: &str) -> String {
    let start = text
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or_default();
    let key_like = start.contains('.')
        && start.len() <= 100
        && start.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    match (key_like, start.len() == text.len()) {
        (true, true) => format!("expected KEY=VALUE, got \"{start}\" without '='"),
        (true, false) => {
            format!("expected KEY=VALUE, got \"{start}\" and then no '=' (the rest not shown)")
        }
        (false, _) => "expected KEY=VALUE, got no '=' (the value is not shown)".to_string(),
    }
}
