//! `nodewright check`: parse and compile policy files, print diagnostics.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy;

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    // Described in `CheckArgs::format`'s help, so that `--help` stays one line a flag.
    // file:line:col, the source line underlined, a hint; the first
    // `policy::diag::MAX_RENDERED` findings, then how many more there are.
    Text,
    // A JSON array of {file, line, column, severity, code, message, help}: every finding.
    Json,
}

/// Arguments of `nodewright check`.
#[derive(Debug, clap::Args)]
pub(super) struct CheckArgs {
    /// Policy files or directories (a directory means every `*.policy` in it, sorted).
    /// All given paths form one policy set.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// `text` for people (file:line:col and a hint, the first 50 findings), `json` for
    /// programs (every finding).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Runs `nodewright check`: exit 0 when clean (warnings allowed), 1 on errors.
pub(super) fn run(args: CheckArgs) -> miette::Result<ExitCode> {
    refuse_yaml(&args.paths)?;
    let (diags, failed) = match policy::load(&args.paths) {
        Ok((set, mut warnings)) => {
            // Scripts compile too: a syntax error or a missing `score` is an
            // error here, not a surprise at plan time.
            let script_errors = match crate::scoring::build_scorer(&set) {
                Ok(_) => Vec::new(),
                Err(errs) => errs,
            };
            let failed = !script_errors.is_empty();
            warnings.extend(script_errors.into_iter().map(|d| *d));
            (policy::Diagnostics(warnings), failed)
        }
        Err(d) => (d, true),
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&diags.to_json()).unwrap_or_else(|_| "[]".into())
        ),
        Format::Text => {
            let width = 100;
            if !diags.0.is_empty() {
                eprintln!("{}", diags.render(width));
            }
            let errors = diags.error_count();
            let warnings = diags.0.len() - errors;
            eprintln!("{errors} error(s), {warnings} warning(s)");
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Refuses what `check` would otherwise misread: a folder with nothing to
/// check (it reported "0 error(s)"), and Karpenter YAML, a file (parsed as
/// policy text, it failed at its first `---`) or a folder of it (it had no
/// `.policy` files, so again "0 error(s)"). `import` checks YAML.
fn refuse_yaml(paths: &[PathBuf]) -> miette::Result<()> {
    crate::import::check_folders(paths)?;
    let files = paths
        .iter()
        .filter(|p| p.is_file() && crate::import::is_yaml(p))
        .cloned();
    let folders = crate::import::yaml_only_folders(paths)
        .into_iter()
        .map(|(dir, _)| dir);
    let yaml: Vec<PathBuf> = files.chain(folders).collect();
    let Some(first) = yaml.first() else {
        return Ok(());
    };
    let list = yaml
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(miette::miette!(
        help = format!(
            "`nodewright import {}` converts Karpenter YAML into policy text; \
             `plan --policy` reads it as it is",
            first.display()
        ),
        "{list}: Karpenter YAML, not policy files"
    ))
}
