//! Docker-style generated names: `adjective_surname` of a notable scientist or engineer.

const LEFT: [&str; 32] = [
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "charming",
    "clever",
    "compassionate",
    "confident",
    "cool",
    "dazzling",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "nifty",
    "quirky",
    "serene",
    "zen",
];

const RIGHT: [&str; 32] = [
    "albattani",
    "babbage",
    "bardeen",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "wright",
];

/// The name for two random bytes.
pub fn generate(random: [u8; 2]) -> String {
    format!(
        "{}_{}",
        LEFT[random[0] as usize % LEFT.len()],
        RIGHT[random[1] as usize % RIGHT.len()]
    )
}

/// Whether `name` is a valid container name: podman's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, which
/// unlike Docker's also takes one-character names (`--name c`, as the seeds' lab uses).
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_like_dockers() {
        assert_eq!(generate([0, 0]), "admiring_albattani");
        assert!(is_valid("web-1.a_b"));
        assert!(!is_valid("-x"));
        assert!(is_valid("c"));
        assert!(!is_valid("a/b"));
    }
}
