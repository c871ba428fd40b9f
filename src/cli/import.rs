//! `nodewright import`: Karpenter YAML → policy text.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nodewright import`.
#[derive(Debug, clap::Args)]
pub(super) struct ImportArgs {
    /// Karpenter YAML files (multi-document): karpenter.sh/v1 NodePool, karpenter.k8s.aws/v1
    /// EC2NodeClass, karpenter.sh/v1alpha1 NodeOverlay, karpenter.sh/v1alpha5 Provisioner,
    /// karpenter.k8s.aws/v1alpha1 AWSNodeTemplate. They are imported together, so a pool
    /// may reference a node class from another file.
    #[arg(required = true, value_name = "FILE.yaml")]
    pub files: Vec<PathBuf>,
    /// Write the policy text to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `nodewright import`: prints warnings to stderr, the policy to stdout or `-o`.
/// Exit 0 on success, 2 when any input cannot be imported.
pub(super) fn run(args: ImportArgs) -> miette::Result<ExitCode> {
    let imported = match crate::import::import_files(&args.files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Ok(ExitCode::from(2));
        }
    };
    for w in &imported.warnings {
        eprintln!("{:?}", miette::Report::new(w.clone()));
    }
    let names: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    let text = crate::import::render(&imported, &names);
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
