//! "Did you mean …?": the valid name nearest to one that is not, for error messages.
//!
//! Names are compared as words, so that a reordering or a different spelling of the
//! same words is found: `encryption_required` is near `requires_encryption`, `PHI` is
//! near `phi`, `communication-plugin` near `CommunicationPlugin`. The distance is
//! `strsim`'s Levenshtein distance between the two names' words (lower case, split at
//! `_`, `-`, `.`, spaces and lower-to-upper case changes), taken in order and sorted,
//! whichever is smaller. A name is near if that distance is at most a quarter of the
//! valid name's length (at least 1); the nearest such name wins, the first on a tie.

/// The member of `valid` nearest to `given`, if one is near enough to be a likely
/// misspelling; `None` for an exact match (nothing to suggest) or nothing close.
#[must_use]
pub fn nearest<'a>(given: &str, valid: &[&'a str]) -> Option<&'a str> {
    if given.len() > 256 || valid.contains(&given) {
        return None;
    }
    let given = Words::of(given);
    let mut best: Option<(usize, &'a str)> = None;
    for &candidate in valid {
        let words = Words::of(candidate);
        let distance = given.distance(&words);
        let limit = (words.in_order.len() / 4).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// A name's words, lower case: joined by one space in their order, and sorted.
struct Words {
    in_order: String,
    sorted: String,
}

impl Words {
    fn of(name: &str) -> Self {
        let mut words: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut previous_lower = false;
        for c in name.chars() {
            let boundary = matches!(c, '_' | '-' | '.' | ' ');
            if (boundary || (c.is_uppercase() && previous_lower)) && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            if !boundary {
                current.extend(c.to_lowercase());
            }
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
        }
        if !current.is_empty() {
            words.push(current);
        }
        let in_order = words.join(" ");
        words.sort_unstable();
        Self {
            in_order,
            sorted: words.join(" "),
        }
    }

    fn distance(&self, other: &Self) -> usize {
        strsim::levenshtein(&self.in_order, &other.in_order)
            .min(strsim::levenshtein(&self.sorted, &other.sorted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAITS: &[&str] = &[
        "handles_phi",
        "handles_pii",
        "requires_encryption",
        "external_service",
        "audit_required",
    ];
    const CONTRACTS: &[&str] = &["CommunicationPlugin", "StoragePlugin", "IdentityPlugin"];
    const LEVELS: &[&str] = &["none", "basic", "detailed", "complete"];
    const CLASSES: &[&str] = &["public", "internal", "confidential", "phi", "pii"];

    #[test]
    fn likely_misspellings_find_their_name() {
        for (given, valid, want) in [
            ("encryption_required", TRAITS, "requires_encryption"),
            ("require_encryption", TRAITS, "requires_encryption"),
            ("handles-phi", TRAITS, "handles_phi"),
            ("HandlesPhi", TRAITS, "handles_phi"),
            ("audit_requried", TRAITS, "audit_required"),
            ("external_services", TRAITS, "external_service"),
            ("communication_plugin", CONTRACTS, "CommunicationPlugin"),
            ("StoragePlugins", CONTRACTS, "StoragePlugin"),
            ("identityplugin", CONTRACTS, "IdentityPlugin"),
            ("completed", LEVELS, "complete"),
            ("Detailed", LEVELS, "detailed"),
            ("PHI", CLASSES, "phi"),
            ("confidental", CLASSES, "confidential"),
        ] {
            assert_eq!(nearest(given, valid), Some(want), "{given}");
        }
    }

    #[test]
    fn nothing_is_suggested_for_a_valid_name_or_a_distant_one() {
        for (given, valid) in [
            ("handles_phi", TRAITS),
            ("hipaa", TRAITS),
            ("", TRAITS),
            ("storage", CONTRACTS),
            ("verbose", LEVELS),
            ("secret", CLASSES),
            ("x", CLASSES),
        ] {
            assert_eq!(nearest(given, valid), None, "{given}");
        }
        assert_eq!(nearest(&"a".repeat(10_000), TRAITS), None);
    }

    #[test]
    fn the_nearest_wins_and_the_first_on_a_tie() {
        // One edit from `phi`, one from `pii`: the first listed.
        assert_eq!(nearest("pxi", CLASSES), Some("phi"));
        assert_eq!(nearest("handles_pi", TRAITS), Some("handles_phi"));
    }
}
