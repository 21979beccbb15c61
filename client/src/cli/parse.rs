//! Parsing of the command line's own argument forms: `BUCKET/KEY`,
//! `BUCKET[/PREFIX]`, `START-END` ranges and `KEY=VALUE` metadata.

use std::fmt;

/// An object named on the command line as `BUCKET/KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectPath {
    pub bucket: String,
    pub key: String,
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

/// Splits `BUCKET/KEY` at the first `/`; the key may hold further `/`.
pub(crate) fn parse_object_path(arg: &str) -> Result<ObjectPath, String> {
    let Some((bucket, key)) = arg.split_once('/') else {
        return Err(format!("expected BUCKET/KEY, got {arg:?} (no '/')"));
    };
    if bucket.is_empty() {
        return Err(format!("expected BUCKET/KEY, got {arg:?} (empty bucket)"));
    }
    if key.is_empty() {
        return Err(format!("expected BUCKET/KEY, got {arg:?} (empty key)"));
    }
    Ok(ObjectPath {
        bucket: bucket.to_string(),
        key: key.to_string(),
    })
}

/// What `ls` lists: a bucket and a key prefix (empty for every key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListTarget {
    pub bucket: String,
    pub prefix: String,
}

/// Splits `BUCKET[/PREFIX]` at the first `/`.
pub(crate) fn parse_list_target(arg: &str) -> Result<ListTarget, String> {
    let (bucket, prefix) = arg.split_once('/').unwrap_or((arg, ""));
    if bucket.is_empty() {
        return Err(format!(
            "expected BUCKET[/PREFIX], got {arg:?} (empty bucket)"
        ));
    }
    Ok(ListTarget {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// An inclusive byte range, `end` absent meaning to the end of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl ByteRange {
    /// The form the client library takes.
    pub fn as_tuple(self) -> (u64, Option<u64>) {
        (self.start, self.end)
    }

    /// How many bytes of an object of `size` bytes the range covers.
    pub fn len_within(self, size: u64) -> u64 {
        let end = self.end.map_or(size, |end| end.saturating_add(1).min(size));
        end.saturating_sub(self.start)
    }
}

/// Parses `START-END` (both inclusive) or `START-` (to the end).
pub(crate) fn parse_range(arg: &str) -> Result<ByteRange, String> {
    let usage = "expected START-END or START- (byte offsets, END inclusive)";
    let Some((start, end)) = arg.split_once('-') else {
        return Err(format!("{usage}, got {arg:?}"));
    };
    if start.is_empty() {
        return Err(format!(
            "{usage}, got {arg:?} (suffix ranges are not supported)"
        ));
    }
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("{usage}, got {arg:?} ({text:?} is not a byte offset)"))
    };
    let start = number(start)?;
    let end = if end.is_empty() {
        None
    } else {
        Some(number(end)?)
    };
    if let Some(end) = end {
        if end < start {
            return Err(format!("range {arg:?} ends before it starts"));
        }
    }
    Ok(ByteRange { start, end })
}

/// Parses one `KEY=VALUE` metadata pair; the value may contain `=`.
pub(crate) fn parse_metadata(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_path_splits_at_first_slash() {
        let path = parse_object_path("footage/2024/05/cam-7.mp4").expect("valid");
        assert_eq!(path.bucket, "footage");
        assert_eq!(path.key, "2024/05/cam-7.mp4");
        assert_eq!(path.to_string(), "footage/2024/05/cam-7.mp4");
        let path = parse_object_path("b/k").expect("valid");
        assert_eq!((path.bucket.as_str(), path.key.as_str()), ("b", "k"));
        let path = parse_object_path("b//k/").expect("valid");
        assert_eq!(path.key, "/k/");
    }

    #[test]
    fn object_path_bad_forms_are_refused() {
        for bad in ["footage", "footage/", "/key", "/", ""] {
            assert!(parse_object_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_object_path("footage").unwrap_err().contains("no '/'"));
        assert!(parse_object_path("footage/")
            .unwrap_err()
            .contains("empty key"));
    }

    #[test]
    fn list_target_prefix_is_optional() {
        let whole = parse_list_target("footage").expect("valid");
        assert_eq!(
            (whole.bucket.as_str(), whole.prefix.as_str()),
            ("footage", "")
        );
        let slash = parse_list_target("footage/").expect("valid");
        assert_eq!(slash.prefix, "");
        let some = parse_list_target("footage/2024/05").expect("valid");
        assert_eq!(
            (some.bucket.as_str(), some.prefix.as_str()),
            ("footage", "2024/05")
        );
        assert!(parse_list_target("/x").is_err());
        assert!(parse_list_target("").is_err());
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(
            parse_range("0-99"),
            Ok(ByteRange {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            parse_range("100-"),
            Ok(ByteRange {
                start: 100,
                end: None
            })
        );
        assert_eq!(
            parse_range("7-7"),
            Ok(ByteRange {
                start: 7,
                end: Some(7)
            })
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "5-4", "abc", "", "-", "-5", "5", "1-2-3", "a-5", "5-b", " 1-2", "1-2 ", "-1-2", "1--2",
        ] {
            assert!(parse_range(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_range("5-4").unwrap_err().contains("before it starts"));
    }

    #[test]
    fn range_length_within_object() {
        let range = |start, end| ByteRange { start, end };
        assert_eq!(range(0, Some(99)).len_within(1000), 100);
        assert_eq!(range(0, Some(99)).len_within(50), 50);
        assert_eq!(range(100, None).len_within(1000), 900);
        assert_eq!(range(2000, None).len_within(1000), 0);
        assert_eq!(range(0, Some(u64::MAX)).len_within(10), 10);
    }

    #[test]
    fn metadata_pairs_parse() {
        assert_eq!(
            parse_metadata("case=2024-117"),
            Ok(("case".to_string(), "2024-117".to_string()))
        );
        assert_eq!(
            parse_metadata("note=a=b"),
            Ok(("note".to_string(), "a=b".to_string()))
        );
        assert_eq!(
            parse_metadata("empty="),
            Ok(("empty".to_string(), String::new()))
        );
        assert!(parse_metadata("=x").is_err());
        assert!(parse_metadata("novalue").is_err());
    }
}
