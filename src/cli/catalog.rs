//! `nodewright catalog list|show`: browse the embedded EC2 catalog, filtered
//! with the policy language's requirement syntax; and the hidden
//! `catalog generate`, which turns the generator's JSON into the embedded form.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::catalog::build::DEFAULT_SPOT_PRICE_FRACTION;
use crate::catalog::embedded::{encode_raw, read_raw_json};
use crate::catalog::{
    AllocatableOptions, CapacityType, Catalog, CatalogError, InstanceType, allocatable, build,
    max_pods,
};
use crate::ir::{KubeletConfig, Requirement, Requirements, Resources, labels};

/// Subcommands of `nodewright catalog`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum CatalogCommand {
    /// List instance types × capacity types with price and allocatable, filtered by requirements.
    List(ListArgs),
    /// Show one instance type: labels, capacity, allocatable, max pods and offerings.
    Show(ShowArgs),
    /// Encode the generator's JSON into the embedded postcard file (used by scripts/gen-catalog.py).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// Arguments of `catalog list`.
#[derive(Debug, clap::Args)]
pub(super) struct ListArgs {
    /// A requirement in policy syntax, e.g. `karpenter.k8s.aws/instance-family in [m5, c5]`,
    /// `instance-cpu > 4`, `instance-gpu-name exists`. Repeat to AND several.
    #[arg(long = "require", value_name = "EXPR")]
    pub require: Vec<String>,
    /// Only this zone (name like `us-east-1a`, or id like `use1-az6`).
    #[arg(long)]
    pub zone: Option<String>,
    /// Only this capacity type (`on-demand` or `spot`).
    #[arg(long = "capacity-type", value_name = "TYPE")]
    pub capacity_type: Option<String>,
    /// Sort order (ties by name).
    #[arg(long, value_enum, default_value_t = SortKey::Name)]
    pub sort: SortKey,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Sort keys of `catalog list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum SortKey {
    Name,
    Price,
    Vcpu,
    Memory,
}

/// Output formats of `catalog list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum OutputFormat {
    Table,
    Json,
}

/// Arguments of `catalog show`.
#[derive(Debug, clap::Args)]
pub(super) struct ShowArgs {
    /// Instance type name, e.g. `m5.large`.
    pub instance_type: String,
}

/// Arguments of the hidden `catalog generate`.
#[derive(Debug, clap::Args)]
pub(super) struct GenerateArgs {
    /// The JSON written by scripts/gen-catalog.py.
    #[arg(long, default_value = "data/catalog/us-east-1.json")]
    pub input: PathBuf,
    /// The raw postcard file (live discovery reads prices and ENI limits from it).
    #[arg(long, default_value = "data/catalog/us-east-1.postcard")]
    pub output: PathBuf,
    /// The pre-built catalog the binary decodes at start-up.
    #[arg(long, default_value = "data/catalog/us-east-1.catalog.postcard")]
    pub catalog_output: PathBuf,
}

/// Runs `nodewright catalog ...`.
pub(super) fn run(cmd: CatalogCommand) -> miette::Result<ExitCode> {
    match cmd {
        CatalogCommand::List(a) => list(a),
        CatalogCommand::Show(a) => show(a),
        CatalogCommand::Generate(a) => generate(a),
    }
}

/// One row of `catalog list`: a type in one capacity type, across zones.
#[derive(Debug, serde::Serialize)]
struct Row<'a> {
    instance_type: &'a str,
    capacity_type: &'static str,
    zones: Vec<&'a str>,
    /// Cheapest zone's $/hour.
    price: Option<f64>,
    price_estimated: bool,
    vcpus: u32,
    memory_mib: u64,
    arch: &'a str,
    allocatable: Resources,
    max_pods: u32,
}

fn usage_error(message: String, help: String) -> miette::Report {
    miette::miette!(help = help, "{message}")
}

/// One `--require` expression, read by the policy language's own parser
/// (`policy::parse_requirement`); its diagnostics are printed as `check` prints them.
fn require_flag(text: &str) -> miette::Result<Requirement> {
    let r = crate::policy::parse_requirement("--require", text).map_err(|d| {
        eprint!("{}", d.render(100));
        usage_error(
            format!("invalid --require expression `{text}`"),
            "write it as after `require` in a pool: `KEY in [a, b]`, `KEY not in [a]`, `KEY exists`, `KEY does-not-exist`, `KEY > N` or `KEY < N`".into(),
        )
    })?;
    if r.min_values.is_some() {
        return Err(usage_error(
            format!("--require `{text}`: `min` has no meaning here"),
            "`min` asks a pool's launches to span several values; a catalog filter matches one type at a time, so drop `min N`".into(),
        ));
    }
    Ok(r)
}

fn list(a: ListArgs) -> miette::Result<ExitCode> {
    let cat = crate::catalog::embedded::embedded_static()?;
    let mut reqs = Requirements::new();
    for r in &a.require {
        reqs.add(&require_flag(r)?);
    }
    if let Some(z) = &a.zone {
        let key = if cat.zones.iter().any(|x| &x.name == z) {
            labels::ZONE
        } else if cat.zones.iter().any(|x| &x.id == z) {
            labels::ZONE_ID
        } else {
            let known: Vec<String> = cat
                .zones
                .iter()
                .map(|x| format!("{} ({})", x.name, x.id))
                .collect();
            return Err(usage_error(
                format!("unknown zone `{z}` in region {}", cat.region),
                format!("zones: {}", known.join(", ")),
            ));
        };
        reqs.require_in(key, &[z.as_str()]);
    }
    if let Some(c) = &a.capacity_type {
        if CapacityType::parse(c).is_none() {
            return Err(usage_error(
                format!("unknown capacity type `{c}`"),
                "use `on-demand` or `spot`".into(),
            ));
        }
        reqs.require_in(labels::CAPACITY_TYPE, &[c.as_str()]);
    }
    let bits = cat.index().filter(&reqs);

    let kubelet = KubeletConfig::default();
    let opts = AllocatableOptions::default();
    let mut groups: BTreeMap<(u32, CapacityType), Row> = BTreeMap::new();
    for i in bits.iter() {
        let o = &cat.offerings[i];
        let Some(t) = cat.types.get(o.type_index as usize) else {
            continue;
        };
        let zone = cat
            .zones
            .get(o.zone_index as usize)
            .map_or("?", |z| z.name.as_str());
        let row = groups
            .entry((o.type_index, o.capacity_type))
            .or_insert_with(|| Row {
                instance_type: &t.name,
                capacity_type: o.capacity_type.as_str(),
                zones: Vec::new(),
                price: None,
                price_estimated: o.price_estimated,
                vcpus: t.vcpus,
                memory_mib: t.memory_mib,
                arch: &t.arch,
                allocatable: allocatable(t, &kubelet, &opts),
                max_pods: max_pods(t, &kubelet, &opts),
            });
        row.zones.push(zone);
        if let Some(p) = o.price {
            row.price = Some(row.price.map_or(p, |q: f64| q.min(p)));
        }
    }
    let mut rows: Vec<Row> = groups.into_values().collect();
    let price_key = |r: &Row| r.price.unwrap_or(f64::INFINITY);
    match a.sort {
        SortKey::Name => {}
        SortKey::Price => rows.sort_by(|x, y| price_key(x).total_cmp(&price_key(y))),
        SortKey::Vcpu => rows.sort_by_key(|r| r.vcpus),
        SortKey::Memory => rows.sort_by_key(|r| r.memory_mib),
    }
    match a.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&rows)
                .map_err(|e| miette::miette!("could not render JSON: {e}"))?;
            println!("{text}");
        }
        OutputFormat::Table => print_table(&cat.region, &rows),
    }
    Ok(ExitCode::SUCCESS)
}

fn money(p: Option<f64>, estimated: bool) -> String {
    match p {
        Some(p) if estimated => format!("~{p:.4}"),
        Some(p) => format!("{p:.4}"),
        None => "-".into(),
    }
}

fn cpu_str(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

fn bytes_str(b: i64) -> String {
    const MI: i64 = 1024 * 1024;
    const GI: i64 = 1024 * MI;
    if b % GI == 0 {
        format!("{}Gi", b / GI)
    } else if b % MI == 0 {
        format!("{}Mi", b / MI)
    } else {
        b.to_string()
    }
}

/// Zones are shown without their region prefix (`a,b,c`), whatever the region.
fn print_table(region: &str, rows: &[Row]) {
    let header = [
        "TYPE",
        "CAPACITY",
        "ZONES",
        "$/HOUR",
        "VCPU",
        "MEMORY",
        "ARCH",
        "ALLOC-CPU",
        "ALLOC-MEMORY",
        "PODS",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let zones: Vec<&str> = r
                .zones
                .iter()
                .map(|z| z.strip_prefix(region).unwrap_or(z))
                .collect();
            [
                r.instance_type.to_string(),
                r.capacity_type.to_string(),
                zones.join(","),
                money(r.price, r.price_estimated),
                r.vcpus.to_string(),
                format!("{}Mi", r.memory_mib),
                r.arch.to_string(),
                cpu_str(r.allocatable.cpu_milli),
                bytes_str(r.allocatable.memory),
                r.max_pods.to_string(),
            ]
        })
        .collect();
    let mut w = header.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.len());
        }
    }
    let line = |c: &[&str]| {
        let parts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<width$}", width = w[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(&header);
    for c in &cells {
        line(&c.iter().map(String::as_str).collect::<Vec<_>>());
    }
    println!("{} row(s)", rows.len());
    if rows.iter().any(|r| r.price_estimated) {
        println!(
            "~ spot prices are estimates: {:.0}% of on-demand (no public static source); \
             set a cost rule to override",
            DEFAULT_SPOT_PRICE_FRACTION * 100.0
        );
    }
}

fn suggest(cat: &Catalog, name: &str) -> String {
    let family = name.split('.').next().unwrap_or(name);
    let mut near: Vec<&str> = cat
        .types
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.split('.').next() == Some(family))
        .take(8)
        .collect();
    if near.is_empty() {
        near = cat
            .types
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| n.starts_with(&name[..name.len().min(2)]))
            .take(8)
            .collect();
    }
    if near.is_empty() {
        "list types with `nodewright catalog list`".into()
    } else {
        format!("did you mean one of: {}?", near.join(", "))
    }
}

fn show(a: ShowArgs) -> miette::Result<ExitCode> {
    let cat = crate::catalog::embedded::embedded_static()?;
    let Some(t) = cat.instance_type(&a.instance_type) else {
        return Err(CatalogError::UnknownType {
            name: a.instance_type.clone(),
            help: suggest(cat, &a.instance_type),
        }
        .into());
    };
    print!("{}", render_show(cat, t));
    Ok(ExitCode::SUCCESS)
}

fn resources_line(r: &Resources) -> String {
    let mut parts = vec![
        format!("cpu {}", cpu_str(r.cpu_milli)),
        format!("memory {}", bytes_str(r.memory)),
        format!("ephemeral-storage {}", bytes_str(r.ephemeral_storage)),
        format!("pods {}", r.pods),
    ];
    for (k, v) in &r.extended {
        parts.push(format!("{k} {v}"));
    }
    parts.join(", ")
}

/// The text of `catalog show` for one type.
fn render_show(cat: &Catalog, t: &InstanceType) -> String {
    use std::fmt::Write;
    let kubelet = KubeletConfig::default();
    let opts = AllocatableOptions::default();
    let mut s = String::new();
    let _ = writeln!(s, "{} ({})", t.name, cat.region);
    let _ = writeln!(s, "labels:");
    let _ = writeln!(s, "  {} = {}", labels::INSTANCE_TYPE, t.name);
    for (k, v) in &t.labels {
        let _ = writeln!(s, "  {k} = {v}");
    }
    let _ = writeln!(
        s,
        "  (per offering: {}, {}, {}, {})",
        labels::ZONE,
        labels::ZONE_ID,
        labels::REGION,
        labels::CAPACITY_TYPE
    );
    for g in &t.gpus {
        let _ = writeln!(
            s,
            "gpu: {} × {} {} ({} MiB each)",
            g.count, g.manufacturer, g.name, g.memory_mib
        );
    }
    for g in &t.accelerators {
        let _ = writeln!(
            s,
            "accelerator: {} × {} {}",
            g.count, g.manufacturer, g.name
        );
    }
    let _ = writeln!(s, "capacity: {}", resources_line(&t.capacity));
    let _ = writeln!(
        s,
        "allocatable: {}",
        resources_line(&allocatable(t, &kubelet, &opts))
    );
    let _ = writeln!(
        s,
        "  (default kubelet; {}% VM memory overhead; formula in docs/catalog.md)",
        opts.vm_memory_overhead_percent * 100.0
    );
    let _ = writeln!(
        s,
        "max pods: {} = {} ENIs × ({} IPv4 per ENI − 1) + 2",
        max_pods(t, &kubelet, &opts),
        t.max_enis,
        t.ipv4_per_eni
    );
    let _ = writeln!(s, "offerings:");
    let mut any_estimate = false;
    let mut n = 0;
    for o in cat
        .offerings
        .iter()
        .filter(|o| cat.types.get(o.type_index as usize).map(|x| &x.name) == Some(&t.name))
    {
        n += 1;
        let (zn, zid) = cat
            .zones
            .get(o.zone_index as usize)
            .map_or(("?", "?"), |z| (z.name.as_str(), z.id.as_str()));
        any_estimate |= o.price_estimated && o.price.is_some();
        let price = match o.price {
            Some(p) if o.price_estimated => format!("${p:.4}/hour (estimated)"),
            Some(p) => format!("${p:.4}/hour"),
            None => "no price (usable only if a cost rule prices it)".into(),
        };
        let _ = writeln!(
            s,
            "  {zn:<11} {zid:<9} {:<9} {price}",
            o.capacity_type.as_str()
        );
    }
    if n == 0 {
        let _ = writeln!(s, "  none in {}", cat.region);
    }
    if any_estimate {
        let _ = writeln!(
            s,
            "note: spot prices are estimates ({:.0}% of on-demand); there is no public static \
             source of spot prices. A policy cost rule can override them.",
            build::DEFAULT_SPOT_PRICE_FRACTION * 100.0
        );
    }
    s
}

fn generate(a: GenerateArgs) -> miette::Result<ExitCode> {
    let raw = read_raw_json(&a.input)?;
    let cat = build::catalog_from_raw(&raw, DEFAULT_SPOT_PRICE_FRACTION);
    let bytes = encode_raw(&raw)?;
    std::fs::write(&a.output, &bytes).map_err(|source| CatalogError::Io {
        path: a.output.clone(),
        source,
    })?;
    let built = crate::catalog::embedded::encode_catalog(&cat)?;
    std::fs::write(&a.catalog_output, &built).map_err(|source| CatalogError::Io {
        path: a.catalog_output.clone(),
        source,
    })?;
    eprintln!(
        "wrote {} ({} bytes): {} types ({} usable as Linux nodes), {} offerings",
        a.output.display(),
        bytes.len(),
        raw.specs.len(),
        cat.types.len(),
        cat.offerings.len()
    );
    Ok(ExitCode::SUCCESS)
}
