//! What the examples share: one command-line convention, progress bars, and text that fits the
//! terminal.
//!
//! Not an example itself: Cargo builds only `examples/*.rs` and `examples/*/main.rs` as
//! examples. Each example includes this file with `#[path = "common/mod.rs"] pub mod common;`,
//! so no extra crate is needed (`pub` so that tests/examples_smoke.rs, which compiles each
//! example as a module, can name these types).
//!
//! The convention, the same in every example:
//!
//! * `--quick`: a smoke run (the test suite runs every example this way);
//! * `--out DIR` (or `--out=DIR`): where the files go, created if missing; the default is
//!   `out/<example>`. An example that writes no files does not take it;
//! * `-h`, `--help`: the usage on stdout, exit code 0;
//! * anything else (an unknown flag, a stray argument, a flag without its value): the problem
//!   and the usage on stderr, exit code 2. A failure while running: `error: …` on stderr,
//!   exit code 1.
//!
//! Hand-written rather than `clap`: the whole grammar is three shared flags and at most one
//! option of the example's own, and examples are read as much as run, so the parser stays a
//! page a reader can take in at once, with no dependency behind it.

// Each example uses a part of this file.
#![allow(dead_code)]

use indicatif::{ProgressBar, ProgressStyle};
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The width that the examples' terminal output keeps within, counted in bytes of UTF-8.
///
/// Bytes, not characters: a line of at most 100 bytes fits 100 columns whatever it holds, and
/// byte-counting tools (mawk's `length`, the default `awk` on Debian) agree with the count. The
/// text is nearly all ASCII, so a line with `‖∂L/∂W‖` in it only wraps a few columns early.
pub const COLUMNS: usize = 100;

/// An option of one example's own, taking a value (`--epochs N`).
pub struct Extra {
    /// The flag, with its dashes: `--epochs`.
    pub flag: &'static str,
    /// The value's name in the usage: `N`.
    pub value: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// One example's command line: its name, what it does, and what it accepts beyond the shared
/// flags.
pub struct Command {
    /// The example's name, as given to `cargo run --example`.
    pub name: &'static str,
    /// One line on what it shows.
    pub about: &'static str,
    /// What `--quick` does, for the usage.
    pub quick: &'static str,
    /// What `--out DIR` receives, for the usage; `None` for an example that writes no files,
    /// which then refuses `--out`.
    pub writes: Option<&'static str>,
    /// Its own options.
    pub extra: &'static [Extra],
}

/// Why a command line did not lead to a run.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// `--help` was asked for: this text goes to stdout, and the exit code is 0.
    Help(String),
    /// The command line is wrong: this text (the problem, then the usage) goes to stderr, and
    /// the exit code is 2.
    Usage(String),
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// `--quick` was given.
    pub quick: bool,
    /// The output folder: `--out`'s value, or `out/<example>`.
    pub out: PathBuf,
    /// The example's own options that were given, with their values, in order.
    values: Vec<(&'static str, String)>,
    /// The usage, for an error about a value.
    usage: String,
}

impl Args {
    /// The value of the example's own option `flag`, parsed; `Ok(None)` when it was not given
    /// (the last one counts when it was given twice).
    pub fn value<T: FromStr>(&self, flag: &str) -> Result<Option<T>, Stop> {
        let Some((_, text)) = self.values.iter().rev().find(|(f, _)| *f == flag) else {
            return Ok(None);
        };
        let bad = || self.error(&format!("`{text}` is not a valid value for {flag}"));
        text.parse().map(Some).map_err(|_| bad())
    }
}

impl Args {
    /// A bad command line found after parsing (a value out of range): `msg`, then the usage.
    pub fn error(&self, msg: &str) -> Stop {
        Stop::Usage(format!("error: {msg}\n\n{}", self.usage))
    }
}

impl Command {
    /// The default output folder.
    pub fn default_out(&self) -> PathBuf {
        PathBuf::from("out").join(self.name)
    }

    /// The usage text, within [`COLUMNS`].
    pub fn usage(&self) -> String {
        let mut synopsis = format!("usage: {} [--quick]", self.name);
        if self.writes.is_some() {
            synopsis.push_str(" [--out DIR]");
        }
        for e in self.extra {
            let _ = write!(synopsis, " [{} {}]", e.flag, e.value);
        }
        let mut rows: Vec<(String, String)> = vec![("--quick".into(), self.quick.into())];
        if let Some(what) = self.writes {
            let default = self.default_out();
            rows.push((
                "--out DIR".into(),
                format!(
                    "where {what} go (default {}; created if missing)",
                    default.display()
                ),
            ));
        }
        for e in self.extra {
            rows.push((format!("{} {}", e.flag, e.value), e.help.into()));
        }
        rows.push(("-h, --help".into(), "print this help".into()));
        let key = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = format!("{}: {}\n\n{synopsis}\n", self.name, self.about);
        let _ = writeln!(
            s,
            "   or: cargo run --release --example {} -- [OPTIONS]\n\noptions:",
            self.name
        );
        for (k, help) in rows {
            let indent = 2 + key + 2;
            let text = wrap(&help, COLUMNS - indent);
            for (i, line) in text.lines().enumerate() {
                let k = if i == 0 { k.as_str() } else { "" };
                let _ = writeln!(s, "  {k:<key$}  {line}");
            }
        }
        s
    }

    /// Parses the arguments after the program's name.
    pub fn parse(&self, args: impl IntoIterator<Item = String>) -> Result<Args, Stop> {
        let usage = self.usage();
        let bad = |msg: String| Stop::Usage(format!("error: {msg}\n\n{usage}"));
        let mut parsed = Args {
            quick: false,
            out: self.default_out(),
            values: Vec::new(),
            usage: usage.clone(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            // `--flag=value` is `--flag value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| bad(format!("{flag} needs a value ({name})")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Err(Stop::Help(usage.clone())),
                "--quick" if inline.is_none() => parsed.quick = true,
                "--out" if self.writes.is_some() => parsed.out = value("DIR")?.into(),
                f => match self.extra.iter().find(|e| e.flag == f) {
                    Some(e) => {
                        let v = value(e.value)?;
                        parsed.values.push((e.flag, v));
                    }
                    None if f.starts_with('-') => {
                        return Err(bad(format!("unknown option `{arg}`")))
                    }
                    None => return Err(bad(format!("unexpected argument `{arg}`"))),
                },
            }
        }
        Ok(parsed)
    }
}

/// The end of an example's `main`: runs it on a parsed command line and turns the outcome into
/// the exit code (0 ran or `--help`, 1 failed, 2 bad command line), printing what goes with it.
pub fn finish<T>(parsed: Result<T, Stop>, run: impl FnOnce(T) -> Result<(), Box<dyn Error>>) -> u8 {
    match parsed {
        Ok(options) => match run(options) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Err(Stop::Help(text)) => {
            print!("{text}");
            0
        }
        Err(Stop::Usage(text)) => {
            eprint!("{text}");
            2
        }
    }
}

/// A progress bar on stderr for `len` units of work, labelled with `label`; its message (set
/// with `set_message`) follows the count.
///
/// indicatif draws it only when stderr is a terminal (and `TERM` is not `dumb`): redirected to
/// a file or a pipe the bar is hidden and writes nothing, so a log gets no `\r` redraws. Each
/// example therefore prints its own summary line to stdout when a bar's work is done, after
/// `finish_and_clear`, in a terminal and in a log alike.
pub fn progress(len: u64, label: &str) -> ProgressBar {
    // At most 2 + 24 + 1 + 32 + 1 + 9 + 1 + 20 + 8 = 98 columns.
    let style = ProgressStyle::with_template(
        "  {prefix:<24!} [{bar:30}] {pos:>4}/{len:<4} {msg:20!} {elapsed:>6}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(label.to_string())
}

/// The closing lines of a run: how many files it wrote, where, and their names.
pub fn wrote(files: &[PathBuf], dir: &Path) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| match f.strip_prefix(dir) {
            Ok(name) => name.display().to_string(),
            Err(_) => f.display().to_string(),
        })
        .collect();
    format!(
        "Wrote {} files to {}:\n{}",
        names.len(),
        dir.display(),
        indented(&names.join(", "), 2)
    )
}

/// Breaks `text` into lines of at most `width` bytes (see [`COLUMNS`]), at spaces (a longer word
/// gets a line of its own). Line breaks already in `text` are kept.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    for (i, paragraph) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line = 0;
        for word in paragraph.split_whitespace() {
            let len = word.len();
            if line > 0 && line + 1 + len > width {
                out.push('\n');
                line = 0;
            } else if line > 0 {
                out.push(' ');
                line += 1;
            }
            out.push_str(word);
            line += len;
        }
    }
    out
}

/// `text` wrapped to fit [`COLUMNS`] after `indent` spaces, every line indented.
pub fn indented(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    wrap(text, COLUMNS - indent)
        .lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
