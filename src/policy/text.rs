//! Reading a text file as policy (or YAML) source: UTF-8 only, with a
//! leading byte-order mark dropped, and a precise place when it is not UTF-8.

/// A file that is not UTF-8 text.
#[derive(Debug, Clone)]
pub struct NotUtf8 {
    /// Byte offset (in `lossy`, and in the file after any byte-order mark) of the first bad byte.
    pub offset: usize,
    /// The first bad byte.
    pub byte: u8,
    /// The text with every bad sequence replaced by U+FFFD, for the snippet;
    /// identical to the file up to `offset`, so line and column are exact.
    pub lossy: String,
}

impl NotUtf8 {
    /// The error message, e.g. "not UTF-8 text: byte 0xFF is not valid UTF-8".
    pub fn message(&self) -> String {
        format!(
            "not UTF-8 text: byte 0x{:02X} here is not valid UTF-8",
            self.byte
        )
    }

    /// The hint shown with it.
    pub const HELP: &'static str = "save the file as UTF-8 (without NUL or binary bytes); a UTF-16 file, a binary file or a wrong path reads like this";
}

/// The UTF-8 byte-order mark some editors write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text of a file's bytes: UTF-8, without a leading byte-order mark
/// (which editors write and nobody sees; offsets are then counted after it,
/// which keeps every column of line 1 as the editor shows it).
pub fn decode(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    let mut bytes = bytes;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        NotUtf8 {
            offset,
            byte: bytes.get(offset).copied().unwrap_or(0),
            lossy: String::from_utf8_lossy(&bytes).into_owned(),
        }
    })
}

/// `text` without a leading byte-order mark (for text that did not come through [`decode`]).
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{FEFF}').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_is_dropped_and_bad_bytes_are_located() {
        assert_eq!(
            decode(b"\xEF\xBB\xBFpool a {}".to_vec()).ok().as_deref(),
            Some("pool a {}")
        );
        let e = decode(b"\xEF\xBB\xBFab\ncd\xFFe".to_vec()).expect_err("not utf-8");
        assert_eq!((e.offset, e.byte), (5, 0xFF));
        assert_eq!(e.lossy, "ab\ncd\u{FFFD}e");
        assert_eq!(strip_bom("\u{FEFF}x"), "x");
    }
}
