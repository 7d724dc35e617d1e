//! Random ids and names, all from the operating system's random source (getrandom): the
//! container ids and generated names, the fresh upper directories of `mount` without
//! `--upper`. A source that fails is an error, never a predictable or all-zero name.

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the system's random source")]
pub struct RandomError(#[source] getrandom::Error);

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(RandomError)?;
    Ok(b)
}

/// `len` random bytes as lower-case hex: an id of `2 * len` characters.
pub fn hex_id(len: usize) -> Result<String, RandomError> {
    let mut b = vec![0u8; len];
    getrandom::fill(&mut b).map_err(RandomError)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_ids_have_twice_the_bytes_in_hex_digits_and_differ() {
        let a = super::hex_id(32).unwrap();
        let b = super::hex_id(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{a}"
        );
        assert_ne!(a, b);
    }
}
