//! The normalisation under which two texts are exact duplicates.

/// Lower-cases, trims, and collapses every run of whitespace to one space.
/// Texts that normalise to the empty string are never grouped.
pub fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn case_and_whitespace_do_not_matter() {
        assert_eq!(normalize("  A  Cat\tsat.\n"), "a cat sat.");
        assert_eq!(normalize("a cat sat."), normalize("A CAT  SAT."));
        assert_ne!(normalize("a cat sat"), normalize("a cat sat."));
        assert_eq!(normalize(" \t "), "");
    }
}
