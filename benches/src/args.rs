//! What the benchmark programs' command lines have in common: one-line complaints with exit
//! status 2, and options that take a positive number.

use std::str::FromStr;

/// Print `program: message` as one line on stderr and exit with status 2 (a bad command
/// line, or nothing it could run).
pub fn die(program: &str, message: &str) -> ! {
    eprintln!("{program}: {message}");
    std::process::exit(2);
}

/// The value given to option `flag` as a number above zero; a missing or unreadable value,
/// or one that is not positive, gets "FLAG takes a positive number".
pub fn positive<T: FromStr + PartialOrd + Default>(flag: &str, value: Option<&str>) -> Result<T, String> {
    value
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > T::default())
        .ok_or_else(|| format!("{flag} takes a positive number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_numbers_only() {
        assert_eq!(positive::<usize>("--runs", Some("3")), Ok(3));
        assert_eq!(positive::<f64>("--scale", Some("0.5")), Ok(0.5));
        for bad in [None, Some("0"), Some("-1"), Some("x")] {
            assert_eq!(positive::<f64>("--scale", bad), Err("--scale takes a positive number".into()));
        }
    }
}
