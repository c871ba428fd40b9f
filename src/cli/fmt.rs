//! `nodewright fmt`: rewrite policy files in canonical form.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy;

/// Arguments of `nodewright fmt`.
#[derive(Debug, clap::Args)]
pub(super) struct FmtArgs {
    /// Policy files or directories (a directory means every `*.policy` in it).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Change nothing; exit 1 and list the files that are not formatted.
    #[arg(long)]
    pub check: bool,
}

/// Runs `nodewright fmt`. Files with syntax errors are left alone (exit 2).
pub(super) fn run(args: FmtArgs) -> miette::Result<ExitCode> {
    let files = match policy::parse_files(&args.paths) {
        Ok(f) => f,
        Err(d) => {
            eprintln!("{}", d.render(100));
            return Ok(ExitCode::from(2));
        }
    };
    let mut unformatted = 0;
    for f in &files {
        let text = policy::format(f);
        if text.as_str() == &*f.source {
            continue;
        }
        if args.check {
            println!("{}", f.path.display());
            unformatted += 1;
        } else {
            std::fs::write(&f.path, text)
                .map_err(|e| miette::miette!("cannot write {}: {e}", f.path.display()))?;
        }
    }
    Ok(if unformatted > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
