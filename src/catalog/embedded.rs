//! The catalog compiled into the binary, so `nodewright plan` works offline.
//!
//! `data/catalog/us-east-1.postcard` holds the `RawCatalog` (specs, ENI
//! limits, on-demand prices, offerings) pre-parsed with postcard, and
//! `us-east-1.catalog.postcard` the `Catalog` built from it (with the same
//! code live discovery uses), so start-up only decodes.
//! Regenerate with `scripts/gen-catalog.py` (docs/catalog.md).

use std::path::Path;
use std::sync::OnceLock;

use super::raw::RawCatalog;
use super::{Catalog, CatalogError};

/// The embedded data: postcard of `RawCatalog`.
pub static EMBEDDED_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/catalog/us-east-1.postcard"
));

/// Decodes the embedded raw data (no caching; see `embedded_raw`).
pub fn decode_raw(bytes: &[u8]) -> Result<RawCatalog, CatalogError> {
    postcard::from_bytes(bytes).map_err(|e| CatalogError::EmbeddedDecode(e.to_string()))
}

/// The built catalog (`catalog_from_raw` of the raw data), pre-encoded with
/// postcard so that start-up only decodes: building labels and offerings from
/// the raw specs took about 9 ms, twice the load budget.
pub static EMBEDDED_CATALOG_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/catalog/us-east-1.catalog.postcard"
));

/// Decodes the pre-built embedded catalog, every call (what the load-time
/// benchmark measures). Prefer `embedded()`.
pub fn load_embedded() -> Result<Catalog, CatalogError> {
    postcard::from_bytes(EMBEDDED_CATALOG_BYTES)
        .map_err(|e| CatalogError::EmbeddedDecode(e.to_string()))
}

/// Encodes a built catalog as the pre-built embedded form.
pub fn encode_catalog(cat: &Catalog) -> Result<Vec<u8>, CatalogError> {
    postcard::to_stdvec(cat).map_err(|e| CatalogError::Encode(e.to_string()))
}

/// The embedded raw data, decoded once: live discovery takes on-demand prices
/// and ENI limits from here.
pub fn embedded_raw() -> Result<&'static RawCatalog, CatalogError> {
    static RAW: OnceLock<Result<RawCatalog, String>> = OnceLock::new();
    RAW.get_or_init(|| decode_raw(EMBEDDED_BYTES).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| CatalogError::EmbeddedDecode(e.clone()))
}

/// The embedded catalog, built once per process and shared.
pub fn embedded_static() -> Result<&'static Catalog, CatalogError> {
    static CAT: OnceLock<Result<Catalog, String>> = OnceLock::new();
    CAT.get_or_init(|| load_embedded().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| CatalogError::EmbeddedDecode(e.clone()))
}

/// An owned copy of the embedded catalog (us-east-1; spot prices estimated).
pub fn embedded() -> Result<Catalog, CatalogError> {
    embedded_static().cloned()
}

/// Reads the generator's JSON (`data/catalog/<region>.json`), naming line and
/// column on error.
pub fn read_raw_json(path: &Path) -> Result<RawCatalog, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| CatalogError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Encodes raw data as the embedded form.
pub fn encode_raw(raw: &RawCatalog) -> Result<Vec<u8>, CatalogError> {
    postcard::to_stdvec(raw).map_err(|e| CatalogError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::build::{DEFAULT_SPOT_PRICE_FRACTION, catalog_from_raw};

    #[test]
    fn embedded_loads_and_is_current() {
        let cat = embedded_static().expect("embedded catalog decodes");
        assert_eq!(cat.region, "us-east-1");
        assert!(cat.types.len() > 1200, "{} types", cat.types.len());
        assert!(cat.instance_type("m5.large").is_some());
        // The committed postcard must be the committed JSON, re-encoded.
        let json = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/catalog/us-east-1.json");
        let raw = read_raw_json(&json).expect("generator JSON parses");
        assert_eq!(
            encode_raw(&raw).expect("encodes"),
            EMBEDDED_BYTES,
            "data/catalog/us-east-1.postcard is stale: run `nodewright catalog generate`"
        );
        // The pre-built catalog must be exactly what the raw data builds into.
        let built = catalog_from_raw(&raw, DEFAULT_SPOT_PRICE_FRACTION);
        assert_eq!(
            encode_catalog(&built).expect("encodes"),
            EMBEDDED_CATALOG_BYTES,
            "data/catalog/us-east-1.catalog.postcard is stale: run `nodewright catalog generate`"
        );
        assert_eq!(*cat, built);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let err = decode_raw(&EMBEDDED_BYTES[..100]).unwrap_err();
        assert!(matches!(err, CatalogError::EmbeddedDecode(_)));
        let err = postcard::from_bytes::<Catalog>(&EMBEDDED_CATALOG_BYTES[..100]).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}
