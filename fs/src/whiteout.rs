//! OCI whiteout names: `.wh.NAME` hides `NAME` of lower layers, `.wh..wh..opq` makes its
//! directory opaque (hides every lower child).

/// The prefix of a whiteout file name.
pub const PREFIX: &[u8] = b".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// The prefix of AUFS metadata names, which are not whiteouts and never visible.
pub const META_PREFIX: &[u8] = b".wh..wh.";

/// What a file name means to the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary name.
    None,
    /// `.wh.NAME`: hide `NAME` from lower layers.
    Remove(&'a [u8]),
    /// `.wh..wh..opq`: hide every lower child of the containing directory.
    Opaque,
    /// Other `.wh..wh.*` AUFS metadata: ignored, never shown.
    Meta,
    /// `.wh.`, `.wh..` or `.wh...`: a malformed whiteout that names nothing valid.
    Invalid,
}

/// Classifies one path component (not a whole path).
pub fn classify(name: &[u8]) -> Whiteout<'_> {
    if name == OPAQUE {
        return Whiteout::Opaque;
    }
    if name.starts_with(META_PREFIX) {
        return Whiteout::Meta;
    }
    match name.strip_prefix(PREFIX) {
        None => Whiteout::None,
        Some(b"" | b"." | b"..") => Whiteout::Invalid,
        Some(target) if target.contains(&b'/') => Whiteout::Invalid,
        Some(target) => Whiteout::Remove(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases: &[(&[u8], Whiteout<'_>)] = &[
            (b"file", Whiteout::None),
            (b".whx", Whiteout::None),
            (b".wh.file", Whiteout::Remove(b"file")),
            (b".wh..hidden", Whiteout::Remove(b".hidden")),
            (b".wh..wh..opq", Whiteout::Opaque),
            (b".wh..wh.plnk", Whiteout::Meta),
            (b".wh.", Whiteout::Invalid),
            (b".wh..", Whiteout::Invalid),
            (b".wh...", Whiteout::Invalid),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), *want, "{}", String::from_utf8_lossy(name));
        }
    }
}
