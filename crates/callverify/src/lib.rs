//! The gateway's wiring, shared by the `callverify` binary and the end-to-end tests:
//! the configuration file and how it becomes the settings of the other crates.

pub mod config;

/// Checks that `number` is an E.164 number: '+', a country code not starting with 0, and at
/// most 15 digits in all (at least 8, the shortest numbers in use).
pub fn check_e164(number: &str) -> Result<(), String> {
    let digits = number
        .strip_prefix('+')
        .ok_or_else(|| "the number must start with + and the country code (E.164)".to_string())?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the number may hold only digits after the +".into());
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(format!(
            "{} digits after the +: E.164 numbers have 8 to 15 and do not start with 0",
            digits.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn e164_numbers_are_checked() {
        assert!(super::check_e164("+81901234567").is_ok());
        assert!(super::check_e164("+12025550123").is_ok());
        for bad in [
            "81901234567",
            "+8190-1234",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+",
        ] {
            assert!(super::check_e164(bad).is_err(), "{bad}");
        }
    }
}
