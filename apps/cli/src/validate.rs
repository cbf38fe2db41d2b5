//! `vivified validate`: the core's own `ManifestValidator` (one schema, one set of
//! rules) over files, for a terminal or, with `--json`, for a machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use vivified_domain::{ManifestValidator, Violation};

use crate::Error;
use crate::text::safe;

/// `vivified validate <MANIFEST>…`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files (JSON). Every file is checked; the exit code is the worst result.
    #[arg(required = true, value_name = "MANIFEST")]
    files: Vec<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// What one file turned out to be.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Outcome {
    /// The core would accept it.
    Valid { plugin_id: String, version: String },
    /// Every violation, sorted by path then code, as the core reports them.
    Invalid { violations: Vec<Violation> },
    /// Not read, or not JSON: nothing was validated.
    Unreadable { error: String },
}

impl Outcome {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Valid { .. } => 0,
            Self::Invalid { .. } => 1,
            Self::Unreadable { .. } => 2,
        }
    }
}

#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Serialize)]
struct Report {
    valid: bool,
    files: Vec<FileReport>,
}

/// Validates every file and prints the result; the exit code is the worst outcome.
pub fn run(args: &Args) -> Result<ExitCode, Error> {
    let validator = ManifestValidator::new()?;
    let files: Vec<FileReport> = args
        .files
        .iter()
        .map(|path| FileReport {
            file: path.display().to_string(),
            outcome: check(&validator, path),
        })
        .collect();
    let code = files
        .iter()
        .map(|f| f.outcome.exit_code())
        .max()
        .unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let report = Report {
            valid: code == 0,
            files,
        };
        serde_json::to_writer_pretty(&mut stdout, &report).map_err(std::io::Error::from)?;
        writeln!(stdout)?;
    } else {
        let mut stderr = std::io::stderr().lock();
        for f in &files {
            write_human(&mut stdout, &mut stderr, f)?;
        }
    }
    stdout.flush()?;
    Ok(ExitCode::from(code))
}

fn check(validator: &ManifestValidator, path: &Path) -> Outcome {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Unreadable {
                error: format!("cannot read: {e}"),
            };
        }
    };
    // As the core reads it: a member named twice is refused, not the last one kept.
    let value = match vivified_domain::json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) if e.is_duplicate() => {
            return Outcome::Unreadable {
                error: format!("not a manifest: {e}"),
            };
        }
        Err(e) => {
            return Outcome::Unreadable {
                error: format!("not JSON: {e}"),
            };
        }
    };
    match validator.validate_owned(value) {
        Ok(manifest) => Outcome::Valid {
            plugin_id: manifest.id.to_string(),
            version: manifest.version,
        },
        Err(violations) => Outcome::Invalid { violations },
    }
}

/// `FILE: valid (ID VERSION)` on stdout; `FILE: invalid, N violations:` and one
/// indented line per violation on stdout; an unreadable file as one error on stderr.
fn write_human(out: &mut impl Write, err: &mut impl Write, f: &FileReport) -> std::io::Result<()> {
    let file = safe(&f.file);
    match &f.outcome {
        Outcome::Valid { plugin_id, version } => {
            writeln!(out, "{file}: valid ({plugin_id} {})", safe(version))
        }
        Outcome::Invalid { violations } => {
            let n = violations.len();
            let noun = if n == 1 { "violation" } else { "violations" };
            writeln!(out, "{file}: invalid, {n} {noun}:")?;
            for v in violations {
                writeln!(out, "  {}", safe(&v.to_string()))?;
            }
            Ok(())
        }
        Outcome::Unreadable { error } => writeln!(err, "vivified: {file}: {}", safe(error)),
    }
}
