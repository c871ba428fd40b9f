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
    /// A folder stands for its `*.yaml` and `*.yml` files.
    #[arg(required = true, value_name = "FILE.yaml|DIR")]
    pub files: Vec<PathBuf>,
    /// Write the policy text to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `nodewright import`: prints warnings to stderr, the policy to stdout or `-o`.
/// Exit 0 on success, 2 when any input cannot be imported.
pub(super) fn run(args: ImportArgs) -> miette::Result<ExitCode> {
    let files = expand(&args.files)?;
    let imported = match crate::import::import_files(&files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Ok(ExitCode::from(2));
        }
    };
    for w in &imported.warnings {
        eprintln!("{:?}", miette::Report::new(w.clone()));
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let text = crate::import::render(&imported, &names);
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The files `paths` stand for: a folder means its `*.yaml` and `*.yml`
/// files, sorted; a folder with none is an error that says what it holds.
fn expand(paths: &[PathBuf]) -> miette::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let rd = std::fs::read_dir(p)
            .map_err(|e| miette::miette!("cannot read the folder {}: {e}", p.display()))?;
        let mut found: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|f| f.is_file() && crate::import::is_yaml(f))
            .collect();
        if found.is_empty() {
            return Err(miette::miette!(
                help = "import reads Karpenter YAML: NodePool, EC2NodeClass, NodeOverlay, Provisioner, AWSNodeTemplate",
                "{} holds no .yaml or .yml files",
                p.display()
            ));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}
