//! Kubernetes' own rules for label keys and values, so that a plan never
//! accepts a pod the API server would reject (`bad key!`).
//!
//! The rules are apimachinery's `IsQualifiedName` and `IsValidLabelValue`:
//! a key is an optional prefix (a DNS-1123 subdomain of at most 253
//! characters) and `/`, then a name of at most 63 characters of
//! `[A-Za-z0-9._-]` that starts and ends with a letter or digit; a value is
//! empty, or at most 63 characters of the same set with the same ends.

use std::collections::BTreeMap;

use super::ctx::{At, Ctx};
use super::error::{ErrorKind, WorkloadError};
use super::yaml::Path;

/// Longest label name (and value), as in Kubernetes.
const NAME_MAX: usize = 63;
/// Longest label key prefix (a DNS subdomain), as in Kubernetes.
const PREFIX_MAX: usize = 253;

/// Why `name` is not a valid label name part (or value, when `value`).
fn name_problem(name: &str, what: &str) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.chars().count() > NAME_MAX {
        return Some(format!("{what} must be no more than {NAME_MAX} characters"));
    }
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !name.chars().all(ok_char) || !ends_ok {
        return Some(format!(
            "{what} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    None
}

/// Why `prefix` is not a DNS-1123 subdomain.
fn prefix_problem(prefix: &str) -> Option<String> {
    if prefix.len() > PREFIX_MAX {
        return Some(format!(
            "the prefix must be no more than {PREFIX_MAX} characters"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if prefix.split('.').all(label_ok) {
        None
    } else {
        Some(
            "the prefix must be a DNS subdomain: lower case letters, digits, '-' and '.', each part starting and ending with a letter or digit"
                .into(),
        )
    }
}

/// Why `key` is not a valid label key, or None when Kubernetes accepts it.
pub fn key_problem(key: &str) -> Option<String> {
    match key.split_once('/') {
        None => {
            if key.is_empty() {
                Some("the name part must not be empty".into())
            } else {
                name_problem(key, "the name part")
            }
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Some("the prefix before '/' must not be empty".into());
            }
            if name.contains('/') {
                return Some("a key has at most one '/'".into());
            }
            if name.is_empty() {
                return Some("the name part after '/' must not be empty".into());
            }
            prefix_problem(prefix).or_else(|| name_problem(name, "the name part"))
        }
    }
}

/// Why `value` is not a valid label value, or None when Kubernetes accepts it.
pub fn value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    name_problem(value, "a value")
}

const KEY_HELP: &str = "Kubernetes rejects it: a label key is an optional DNS prefix and '/', then a name of up to 63 letters, digits, '-', '_' or '.', e.g. `app.kubernetes.io/name`";
const VALUE_HELP: &str = "Kubernetes rejects it: a label value is empty, or up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// The error for label `text` (a key or value, `what`) that is invalid
/// for `why`: located at `locate`, named by `shown` in the message.
fn invalid(
    ctx: &Ctx,
    at: &At,
    (locate, shown): (&Path, &Path),
    what: &str,
    text: &str,
    why: String,
) -> WorkloadError {
    let help = if what == "key" { KEY_HELP } else { VALUE_HELP };
    ctx.error(
        at,
        locate,
        ErrorKind::Label,
        format!(
            "{shown}: `{}` is not a valid label {what}: {why}",
            shorten(text)
        ),
        Some(help.into()),
    )
}

/// Errors unless `key` is a valid label key; `path` is where it is written.
pub(super) fn check_key(ctx: &Ctx, at: &At, path: &Path, key: &str) -> Result<(), WorkloadError> {
    match key_problem(key) {
        None => Ok(()),
        Some(why) => Err(invalid(ctx, at, (path, path), "key", key, why)),
    }
}

/// Errors unless every value in `values` is a valid label value; `path` is
/// the list.
pub(super) fn check_values(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    values: &[String],
) -> Result<(), WorkloadError> {
    for (i, v) in values.iter().enumerate() {
        if let Some(why) = value_problem(v) {
            return Err(invalid(
                ctx,
                at,
                (&path.idx(i), &path.idx(i)),
                "value",
                v,
                why,
            ));
        }
    }
    Ok(())
}

/// Errors unless every key and value of the map at `path` is valid.
pub(super) fn check_map(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    labels: &BTreeMap<String, String>,
) -> Result<(), WorkloadError> {
    for (k, v) in labels {
        let here = (&path.key(k), path);
        if let Some(why) = key_problem(k) {
            return Err(invalid(ctx, at, here, "key", k, why));
        }
        if let Some(why) = value_problem(v) {
            return Err(invalid(ctx, at, here, "value", v, why));
        }
    }
    Ok(())
}

/// A key or value as a message quotes it: a megabyte-long one is cut.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX).collect();
    format!("{head}… ({} characters)", s.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes() {
        for ok in [
            "app",
            "a",
            "app.kubernetes.io/name",
            "karpenter.sh/capacity-type",
            "A_b-c.D",
            "x/y",
            &"a".repeat(63),
            &format!("{}/n", "a".repeat(253)),
        ] {
            assert_eq!(key_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("bad key!", "alphanumeric"),
            ("", "empty"),
            ("-app", "start and end"),
            ("app-", "start and end"),
            ("/app", "prefix before '/' must not be empty"),
            ("a/", "after '/'"),
            ("a/b/c", "at most one '/'"),
            ("Example.com/app", "DNS subdomain"),
            ("ex_ample.com/app", "DNS subdomain"),
            ("-ex.com/app", "DNS subdomain"),
            ("ex..com/app", "DNS subdomain"),
            ("é", "alphanumeric"),
        ] {
            let p = key_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(p.contains(why), "{bad:?}: {p}");
        }
        let long = "a".repeat(64);
        assert!(key_problem(&long).is_some_and(|p| p.contains("63")));
        let long_prefix = format!("{}/n", "a".repeat(254));
        assert!(key_problem(&long_prefix).is_some_and(|p| p.contains("253")));
    }

    #[test]
    fn values_follow_kubernetes() {
        for ok in ["", "v1", "a.b_c-d", &"z".repeat(63)] {
            assert_eq!(value_problem(ok), None, "{ok}");
        }
        for bad in ["a b", "-v", "v-", "v/1", &"z".repeat(64), "ü"] {
            assert!(value_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn long_keys_are_shortened_in_messages() {
        let s = shorten(&"k".repeat(1000));
        assert!(s.ends_with("(1000 characters)") && s.len() < 120, "{s}");
    }
}
