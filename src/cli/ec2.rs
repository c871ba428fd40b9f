//! `nodewright ec2 ...`: talk to the EC2 API.

use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "aws")]
use miette::{IntoDiagnostic, WrapErr};

#[cfg(feature = "aws")]
use crate::cloud::ec2::Ec2Settings;
#[cfg(feature = "aws")]
use crate::cloud::resolve::Resolver;
#[cfg(feature = "aws")]
use crate::ir::NodeClass;

/// Subcommands of `nodewright ec2`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum Ec2Command {
    /// Print what a node class's subnet, security-group and AMI selectors resolve to.
    Resolve(ResolveArgs),
}

/// `nodewright ec2 resolve`.
#[derive(Debug, clap::Args)]
pub(super) struct ResolveArgs {
    /// Policy files, directories or Karpenter YAML defining the node class (repeat the flag
    /// for more).
    #[arg(long)]
    pub policy: Vec<PathBuf>,
    /// A node class as JSON or YAML (the IR's `NodeClass`), instead of --policy.
    #[arg(long, conflicts_with = "policy")]
    pub node_class_file: Option<PathBuf>,
    /// The node class to resolve.
    pub node_class: String,
    /// Region (else the standard AWS chain).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Endpoint (else AWS_ENDPOINT_URL or the public one).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AMI owners searched for aliases without --kubernetes-version (`amazon` by default).
    #[arg(long = "alias-owner")]
    pub alias_owners: Vec<String>,
    /// The cluster's Kubernetes version (`1.31`): AMI aliases then resolve
    /// through EKS's public SSM parameters, as the controller resolves them.
    /// Without it, an alias is a DescribeImages name query.
    #[arg(long)]
    pub kubernetes_version: Option<String>,
    /// `table` or `json`.
    #[arg(long, default_value = "table")]
    pub output: String,
}

/// Runs `nodewright ec2 ...`.
pub(super) fn run(cmd: Ec2Command) -> miette::Result<ExitCode> {
    match cmd {
        Ec2Command::Resolve(a) => resolve(a),
    }
}

#[cfg(not(feature = "aws"))]
fn resolve(_: ResolveArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!(
        help = "rebuild with `--features aws`",
        "this nodewright was built without the AWS SDK"
    ))
}

#[cfg(feature = "aws")]
fn load_node_class(a: &ResolveArgs) -> miette::Result<NodeClass> {
    let Some(path) = &a.node_class_file else {
        if a.policy.is_empty() {
            miette::bail!(miette::miette!(
                help = "pass --policy PATH (policy files, a directory, or Karpenter YAML) or --node-class-file FILE",
                "no policy given"
            ));
        }
        let set = crate::cli::inputs::load_policy(&a.policy)?;
        return match set.node_classes.get(&a.node_class) {
            Some(nc) => Ok(nc.clone()),
            None => {
                let known: Vec<&str> = set.node_classes.keys().map(|k| k.as_str()).collect();
                Err(miette::miette!(
                    help = format!("node classes in this policy: {}", known.join(", ")),
                    "the policy defines no node class `{}`",
                    a.node_class
                ))
            }
        };
    };
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    let mut nc: NodeClass = serde_yaml_ng::from_str(&text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        miette::miette!(
            help = "the file must hold one node class (fields as in src/ir/policy.rs `NodeClass`)",
            "{}{loc}: {e}",
            path.display()
        )
    })?;
    // Unknown keys are errors: compare what was written with what was understood.
    let written: serde_json::Value = serde_yaml_ng::from_str(&text).into_diagnostic()?;
    let understood = serde_json::to_value(&nc).into_diagnostic()?;
    if let Some(key) = unknown_key(&written, &understood, "") {
        miette::bail!(miette::miette!(
            help = "check the spelling against the NodeClass fields (snake_case)",
            "{}: unknown key `{key}`",
            path.display()
        ));
    }
    if nc.name.is_empty() {
        nc.name = a.node_class.clone();
    }
    if nc.name != a.node_class {
        miette::bail!(
            "{} defines node class `{}`, not `{}`",
            path.display(),
            nc.name,
            a.node_class
        );
    }
    Ok(nc)
}

#[cfg(feature = "aws")]
/// The first key path in `written` that `understood` lacks.
fn unknown_key(
    written: &serde_json::Value,
    understood: &serde_json::Value,
    at: &str,
) -> Option<String> {
    use serde_json::Value;
    match (written, understood) {
        (Value::Object(w), Value::Object(u)) => w.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match u.get(k) {
                None => Some(path),
                Some(uv) => unknown_key(v, uv, &path),
            }
        }),
        (Value::Array(w), Value::Array(u)) => w
            .iter()
            .zip(u)
            .enumerate()
            .find_map(|(i, (a, b))| unknown_key(a, b, &format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(feature = "aws")]
fn resolve(a: ResolveArgs) -> miette::Result<ExitCode> {
    let nc = load_node_class(&a)?;
    // `1.31` (a patch, `1.31.2`, is accepted and ignored).
    let kubernetes = match &a.kubernetes_version {
        Some(s) => Some(
            crate::cloud::ssm::KubeVersion::parse(s.trim_start_matches('v')).ok_or_else(|| {
                miette::miette!(
                    help = "write major.minor, e.g. --kubernetes-version 1.31",
                    "`{s}` is not a Kubernetes version"
                )
            })?,
        ),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let settings = Ec2Settings {
        region: a.region.clone(),
        endpoint_url: a.endpoint_url.clone(),
        static_credentials: None,
    };
    let resolved = rt.block_on(async {
        let config = crate::cloud::ec2::load(&settings).await;
        let client = aws_sdk_ec2::Client::new(&config);
        let mut r = Resolver::new(client, std::time::Duration::from_secs(60));
        if !a.alias_owners.is_empty() {
            r.alias_owners = a.alias_owners.clone();
        }
        if let Some(k) = kubernetes {
            r.use_ssm(crate::cloud::ec2::ssm(&config));
            r.set_kubernetes_version(k);
        }
        r.resolve(&nc).await
    })?;
    if a.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&*resolved).into_diagnostic()?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "node class {} (AMI family {})",
        resolved.node_class, resolved.ami_family
    );
    println!("subnets:");
    for s in &resolved.subnets {
        println!(
            "  {:<26} {:<12} {:<10} {} free IPs",
            s.id,
            s.zone,
            s.zone_id.as_deref().unwrap_or("-"),
            s.available_ips
        );
    }
    println!("security groups:");
    for g in &resolved.security_groups {
        println!("  {:<26} {}", g.id, g.name);
    }
    println!("AMIs:");
    for (arch, ami) in &resolved.amis {
        println!(
            "  {:<6} {:<22} {} ({})",
            arch, ami.id, ami.name, ami.creation_date
        );
    }
    for w in &resolved.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
