//! Password generation (PROTOCOL.md §8.2), from the operating system's CSPRNG.
//!
//! Per character class, `None` = no requirement, a positive count = at least that many, zero
//! or a negative count = exactly that many (the class is then left out of the remaining
//! characters). When all four counts are given, all ≤ 0, and together shorter than the
//! length, the negative ones turn into minimums. The remaining characters are drawn from the
//! classes without an exact count (all four when there is none). Every character is drawn
//! uniformly (rejection sampling) and the result is shuffled (Fisher–Yates).

use crate::error::{Result, SdkError};

/// The default special characters (21 of them, as in the official Python and JS SDKs).
pub const DEFAULT_SPECIAL_CHARACTERS: &str = "\"!@#$%()+;<>=?[]{}^.,";
/// The default length.
pub const DEFAULT_LENGTH: usize = 32;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

/// Options of [`generate_password_with_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordOptions {
    /// Minimum length (default 32). The result is longer when the counts add up to more.
    pub length: usize,
    /// Lower-case letters.
    pub lowercase: Option<i32>,
    /// Upper-case letters.
    pub uppercase: Option<i32>,
    /// Digits.
    pub digits: Option<i32>,
    /// Special characters.
    pub special: Option<i32>,
    /// The special character set.
    pub special_characters: String,
}

impl Default for PasswordOptions {
    fn default() -> Self {
        Self {
            length: DEFAULT_LENGTH,
            lowercase: None,
            uppercase: None,
            digits: None,
            special: None,
            special_characters: DEFAULT_SPECIAL_CHARACTERS.to_owned(),
        }
    }
}

/// A password of `length` characters with the given per-class counts (see the module docs).
///
/// ```
/// // 20 characters, at least 2 digits, exactly 0 special characters.
/// let p = coffer_sdk::generate_password(20, None, None, Some(2), Some(0)).unwrap();
/// assert_eq!(p.len(), 20);
/// assert!(p.chars().filter(|c| c.is_ascii_digit()).count() >= 2);
/// assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
/// ```
pub fn generate_password(
    length: usize,
    lowercase: Option<i32>,
    uppercase: Option<i32>,
    digits: Option<i32>,
    special: Option<i32>,
) -> Result<String> {
    generate_password_with_options(&PasswordOptions {
        length,
        lowercase,
        uppercase,
        digits,
        special,
        ..PasswordOptions::default()
    })
}

/// A uniformly random index below `n` (n > 0), by rejection sampling over 32-bit numbers.
fn random_below(n: usize) -> usize {
    let n = n as u64;
    let zone = (1u64 << 32) - ((1u64 << 32) % n);
    loop {
        let v = u64::from(u32::from_le_bytes(coffer_crypto::random_bytes::<4>()));
        if v < zone {
            return (v % n) as usize;
        }
    }
}

/// A password per `options` (see the module docs).
pub fn generate_password_with_options(options: &PasswordOptions) -> Result<String> {
    let special: Vec<char> = options.special_characters.chars().collect();
    let sets: [Vec<char>; 4] = [
        LOWER.chars().collect(),
        UPPER.chars().collect(),
        DIGITS.chars().collect(),
        special,
    ];
    let mut counts = [
        options.lowercase,
        options.uppercase,
        options.digits,
        options.special,
    ];
    let total_abs: usize = counts
        .iter()
        .flatten()
        .map(|c| c.unsigned_abs() as usize)
        .sum();
    if counts.iter().all(|c| c.is_some_and(|n| n <= 0)) && total_abs < options.length {
        tracing::warn!(
            "the exact character counts add up to less than the length; using them as minimums"
        );
        for c in counts.iter_mut().flatten() {
            *c = c.abs();
        }
    }
    let mut chars: Vec<char> = Vec::with_capacity(options.length.max(total_abs));
    let mut pool: Vec<char> = Vec::new();
    for (count, set) in counts.iter().zip(&sets) {
        let exact_or_min = count.map_or(0, |n| n.unsigned_abs() as usize);
        if exact_or_min > 0 && set.is_empty() {
            return Err(SdkError::Invalid(
                "special characters are required but the special character set is empty".into(),
            ));
        }
        for _ in 0..exact_or_min {
            chars.push(set[random_below(set.len())]);
        }
        if count.is_none_or(|n| n > 0) {
            pool.extend(set.iter().copied());
        }
    }
    let extra = options.length.saturating_sub(chars.len());
    if extra > 0 {
        if pool.is_empty() {
            pool = sets.iter().flatten().copied().collect();
        }
        for _ in 0..extra {
            chars.push(pool[random_below(pool.len())]);
        }
    }
    for i in (1..chars.len()).rev() {
        let j = random_below(i + 1);
        chars.swap(i, j);
    }
    Ok(chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(p: &str, set: &str) -> usize {
        p.chars().filter(|c| set.contains(*c)).count()
    }

    #[test]
    fn defaults_use_all_classes() {
        let p = generate_password_with_options(&PasswordOptions::default()).unwrap();
        assert_eq!(p.chars().count(), 32);
        // 200 default passwords: every class shows up, every character is from the sets.
        let all: String = (0..200)
            .map(|_| generate_password(32, None, None, None, None).unwrap())
            .collect();
        for set in [LOWER, UPPER, DIGITS, DEFAULT_SPECIAL_CHARACTERS] {
            assert!(count(&all, set) > 0);
        }
        assert_eq!(
            count(
                &all,
                &format!("{LOWER}{UPPER}{DIGITS}{DEFAULT_SPECIAL_CHARACTERS}")
            ),
            6400
        );
        // Not the official Rust SDK's defect (a permutation of a fixed string).
        assert_ne!(
            generate_password(32, None, None, None, None).unwrap(),
            generate_password(32, None, None, None, None).unwrap()
        );
    }

    #[test]
    fn minimums_and_exact_counts() {
        let p = generate_password(10, Some(3), Some(3), Some(3), Some(3)).unwrap();
        assert_eq!(p.len(), 12); // counts exceed the length
        for set in [LOWER, UPPER, DIGITS, DEFAULT_SPECIAL_CHARACTERS] {
            assert!(count(&p, set) >= 3);
        }
        let p = generate_password(16, Some(0), None, Some(-4), Some(0)).unwrap();
        assert_eq!(p.len(), 16);
        assert_eq!(count(&p, DIGITS), 4);
        assert_eq!(count(&p, UPPER), 12);
        // All exact and short of the length: minimums.
        let p = generate_password(20, Some(-2), Some(-2), Some(-2), Some(0)).unwrap();
        assert_eq!(p.len(), 20);
        assert_eq!(count(&p, DEFAULT_SPECIAL_CHARACTERS), 0);
        assert!(count(&p, DIGITS) >= 2);
        // Exactly: all exact, adding up to the length.
        let p = generate_password(6, Some(-1), Some(-2), Some(-3), Some(0)).unwrap();
        assert_eq!(
            (count(&p, LOWER), count(&p, UPPER), count(&p, DIGITS)),
            (1, 2, 3)
        );
        // Every class excluded: all four sets fill the length.
        let p = generate_password(8, Some(0), Some(0), Some(0), Some(0)).unwrap();
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn custom_special_set() {
        let options = PasswordOptions {
            length: 12,
            lowercase: Some(0),
            uppercase: Some(0),
            digits: Some(0),
            special: None,
            special_characters: "*-".into(),
        };
        let p = generate_password_with_options(&options).unwrap();
        assert!(p.chars().all(|c| c == '*' || c == '-'));
        let empty = PasswordOptions {
            special: Some(2),
            special_characters: String::new(),
            ..PasswordOptions::default()
        };
        assert!(generate_password_with_options(&empty).is_err());
    }

    #[test]
    fn random_below_is_in_range() {
        for n in [1usize, 2, 21, 62, 1000] {
            for _ in 0..100 {
                assert!(random_below(n) < n);
            }
        }
    }
}
