//! Every diagnostic code the authoring tools emit (`check`, `fmt`, `import`,
//! `plan`'s policy loading, scripts), in one enum. The code string is part
//! of the JSON output (`check --format json`) and of the rendered text, so a
//! tool may match on it: strings never change once published.
//!
//! docs/language.md lists every code with its meaning; a test renders the
//! table from this enum and fails when the page is out of date.

/// Declares [`Code`] with its string and its doc comment, which is also the
/// meaning printed in docs/language.md.
macro_rules! codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $text:literal, )*) => {
        /// A stable identifier for one kind of finding (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[doc = $doc])+ $variant, )*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The published string, e.g. `policy::unknown-label`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// What the code means (its doc comment), for the documentation table.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => concat!($($doc),+),)*
                }
            }
        }
    };
}

codes! {
    /// The text does not follow the grammar (`grammar/policy.pest`).
    Syntax = "policy::syntax",
    /// A condition nests parentheses and `not`s more than 64 levels deep.
    TooDeep = "policy::too-deep",
    /// A policy file cannot be read.
    Io = "policy::io",
    /// A policy file is not UTF-8 text; the error points at the first bad byte.
    InvalidUtf8 = "policy::invalid-utf8",
    /// An operator the language does not have (`inn`, `NotIn`, `=` in a requirement).
    UnknownOperator = "policy::unknown-operator",
    /// `in`, `not in`, `>` or `<` with no value after it.
    EmptyValues = "policy::empty-values",
    /// Two pools, or two node classes, share a name in one policy set.
    DuplicateName = "policy::duplicate-name",
    /// A pool names a node class that no file of the set defines.
    UnknownNodeClass = "policy::unknown-node-class",
    /// Warning: a pool has no `node-class` and no node class is called `default`.
    DefaultNodeClass = "policy::default-node-class",
    /// A value that must be a number is not one.
    MalformedNumber = "policy::malformed-number",
    /// A resource quantity (limit, reservation, capacity) is negative.
    NegativeQuantity = "policy::negative-quantity",
    /// A resource quantity is not a Kubernetes quantity (`4`, `500m`, `16Gi`).
    MalformedQuantity = "policy::malformed-quantity",
    /// A duration is not one (`30s`, `720h`, `never`).
    MalformedDuration = "policy::malformed-duration",
    /// A value that must be `true` or `false` is not.
    MalformedBool = "policy::malformed-bool",
    /// A percentage is not written as one (`10%`).
    MalformedPercent = "policy::malformed-percent",
    /// A percentage lies outside its allowed range.
    PercentOutOfRange = "policy::percent-out-of-range",
    /// An empty label key.
    EmptyKey = "policy::empty-key",
    /// A key in a reserved domain (kubernetes.io, k8s.io, karpenter) that no one sets: usually a typo.
    UnknownLabel = "policy::unknown-label",
    /// Warning: a short name (`zone`, `instance-family`) used where a label key belongs.
    ShortNameAsLabel = "policy::short-name-as-label",
    /// A setting given twice in one block.
    DuplicateSetting = "policy::duplicate-setting",
    /// A pool's requirements on one key leave no value: no node can satisfy them all.
    Contradiction = "policy::contradiction",
    /// `>` or `<` in a requirement with a value that is not a whole number.
    NonIntegerBound = "policy::non-integer-bound",
    /// `min N` asks for more values than the requirement lists.
    MinValuesTooLarge = "policy::min-values-too-large",
    /// A taint effect other than NoSchedule, PreferNoSchedule or NoExecute.
    UnknownTaintEffect = "policy::unknown-taint-effect",
    /// `image-gc-low` is not below `image-gc-high`.
    ImageGc = "policy::image-gc",
    /// A consolidation policy other than `when-empty` or `when-empty-or-underutilized`.
    UnknownConsolidationPolicy = "policy::unknown-consolidation-policy",
    /// A budget schedule that is not a 5-field cron expression.
    MalformedSchedule = "policy::malformed-schedule",
    /// A budget `schedule` without a `duration`, or the reverse.
    ScheduleWithoutDuration = "policy::schedule-without-duration",
    /// A disruption reason other than `underutilized`, `empty` or `drifted`.
    UnknownReason = "policy::unknown-reason",
    /// A `score with` script that does not exist.
    MissingScript = "policy::missing-script",
    /// A `score with` path that is absolute or leaves the policy file's folder (`..`, or a link that points outside).
    ScriptPath = "policy::script-path",
    /// A `score with` path that does not name a `.rhai` file; nothing else is read as a script.
    NotAScript = "policy::not-a-script",
    /// An AMI family nodewright does not know.
    UnknownAmiFamily = "policy::unknown-ami-family",
    /// An AMI alias without a version (`al2023@latest`).
    MalformedAlias = "policy::malformed-alias",
    /// A Windows AMI family or alias: nodewright launches Linux nodes only, and says so rather than boot Windows with Linux user data.
    WindowsUnsupported = "policy::windows-unsupported",
    /// A selector field that does not apply to what it selects (`alias` on subnets).
    BadSelector = "policy::bad-selector",
    /// An instance store policy other than `raid0`.
    UnknownInstanceStorePolicy = "policy::unknown-instance-store-policy",
    /// A node class that sets both a role and an instance profile.
    RoleAndProfile = "policy::role-and-profile",
    /// A value that is not valid for its `imds` setting.
    BadImds = "policy::bad-imds",
    /// A setting the block does not have.
    UnknownSetting = "policy::unknown-setting",
    /// A comparison with the wrong number of values for its operator.
    WrongArity = "policy::wrong-arity",
    /// A numeric comparison (`<`, `>=`, ...) against a value that is not a number.
    NonNumericBound = "policy::non-numeric-bound",
    /// A rule names a pool that no file of the set defines.
    UnknownPool = "policy::unknown-pool",
    /// A clause about pods reads node attributes, or the reverse.
    WrongSide = "policy::wrong-side",
    /// `label` without a key in a condition (`label("team")`).
    LabelNeedsKey = "policy::label-needs-key",
    /// An attribute that takes no argument was given one.
    UnexpectedArgument = "policy::unexpected-argument",
    /// A pod or node attribute that conditions do not have.
    UnknownAttribute = "policy::unknown-attribute",
    /// A `prefer` weight outside 1..=100.
    WeightOutOfRange = "policy::weight-out-of-range",
    /// A weight on a rule kind that takes none.
    UnexpectedWeight = "policy::unexpected-weight",
    /// A negative price.
    NegativePrice = "policy::negative-price",
    /// A spot-from-on-demand ratio that is not above zero.
    BadRatio = "policy::bad-ratio",
    /// A `ceiling` metric nodewright does not know.
    UnknownMetric = "policy::unknown-metric",
    /// A scoring script cannot be read, or is not UTF-8 text (its content is never shown).
    ScriptIo = "script::io",
    /// A scoring script does not compile as rhai.
    ScriptSyntax = "script::syntax",
    /// A script entry point does not take exactly one parameter.
    ScriptArity = "script::arity",
    /// A script defines no scoring function.
    ScriptNoScore = "script::no-score",
    /// Karpenter YAML that cannot be imported (malformed, unknown field, unsupported kind, empty input), or a note on what was imported approximately.
    Import = "nodewright::import",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Markdown table of every code and its meaning, as docs/language.md holds it.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | meaning |\n|---|---|\n");
    for c in Code::ALL {
        out.push_str(&format!("| `{}` | {} |\n", c.as_str(), c.meaning().trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_unique_and_namespaced() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(c.as_str().contains("::"), "{c}");
            assert!(!c.meaning().trim().is_empty(), "{c}");
        }
    }

    /// docs/language.md lists every code with its meaning, exactly.
    #[test]
    fn the_language_page_lists_every_code() {
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/language.md"))
                .expect("docs/language.md");
        let table = markdown_table();
        assert!(
            page.contains(&table),
            "docs/language.md is missing the current code table; paste:\n{table}"
        );
    }
}
