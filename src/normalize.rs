//! Parsing of contact data at the edge: phones to E.164, emails lower-cased and checked.
//! Everything inside the service holds these types, never raw strings.

use std::fmt;

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ContactError {
    #[error("no phone number found in {0:?}")]
    PhoneNotANumber(String),
    #[error("{0:?} is not a valid phone number")]
    PhoneInvalid(String),
    #[error("{0:?} is not a valid email address")]
    EmailInvalid(String),
}

/// A phone number in E.164 form (`+79123456789`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    /// Parses a number as a person would type it. Numbers without a country code are read as
    /// Russian (`8 912 …`, `912 …`), the market the product serves first.
    pub fn parse(input: &str) -> Result<Phone, ContactError> {
        let trimmed = input.trim();
        if !trimmed.chars().any(|c| c.is_ascii_digit()) {
            return Err(ContactError::PhoneNotANumber(trimmed.to_string()));
        }
        // Bare "7XXXXXXXXXX" and "8XXXXXXXXXX" are both national Russian forms; libphonenumber
        // reads the first correctly only with a leading "+".
        let digits: String = trimmed.chars().filter(|c| c.is_ascii_digit()).collect();
        let candidate =
            if !trimmed.starts_with('+') && digits.len() == 11 && digits.starts_with('7') {
                format!("+{digits}")
            } else {
                trimmed.to_string()
            };
        let number = PhoneNumber::parse(&candidate, Some(Region::RU))
            .map_err(|_| ContactError::PhoneInvalid(trimmed.to_string()))?;
        if !number.is_valid() {
            return Err(ContactError::PhoneInvalid(trimmed.to_string()));
        }
        Ok(Phone(
            number.format_as(PhoneNumberFormat::E164).into_owned(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with its middle digits hidden, for logs and the journal: `+7912***6789`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Hides the middle of anything that looks like a phone number, keeping the first five and the
/// last two characters.
pub fn mask_phone(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug output goes to logs, so it is masked.
impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

impl TryFrom<String> for Phone {
    type Error = ContactError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Phone::parse(&value)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

/// An email address, trimmed, with a lower-cased domain.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Email, ContactError> {
        let trimmed = input.trim();
        let invalid = || ContactError::EmailInvalid(trimmed.to_string());
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.chars().any(|c| c.is_whitespace() || c == '@');
        if !domain_ok || !local_ok {
            return Err(invalid());
        }
        Ok(Email(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        }
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

impl TryFrom<String> for Email {
    type Error = ContactError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_numbers_in_every_common_shape_become_one() {
        for raw in [
            "8 (912) 345-67-89",
            "+7 912 3456789",
            "9123456789",
            "7-912-345-67-89",
            "79123456789",
            " +7 (912) 345 67 89 ",
        ] {
            assert_eq!(Phone::parse(raw).unwrap().as_str(), "+79123456789", "{raw}");
        }
    }

    #[test]
    fn numbers_with_an_eight_in_the_area_code_stay_intact() {
        assert_eq!(
            Phone::parse("+7 800 555 35 35").unwrap().as_str(),
            "+78005553535"
        );
        assert_eq!(
            Phone::parse("8 (812) 123-45-67").unwrap().as_str(),
            "+78121234567"
        );
        assert_eq!(
            Phone::parse("+7 (843) 123-45-67").unwrap().as_str(),
            "+78431234567"
        );
    }

    #[test]
    fn foreign_numbers_keep_their_country() {
        assert_eq!(
            Phone::parse("+375 29 123-45-67").unwrap().as_str(),
            "+375291234567"
        );
        assert_eq!(
            Phone::parse("+49 30 901820").unwrap().as_str(),
            "+4930901820"
        );
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(matches!(
            Phone::parse("hello"),
            Err(ContactError::PhoneNotANumber(_))
        ));
        assert!(matches!(
            Phone::parse("123"),
            Err(ContactError::PhoneInvalid(_))
        ));
        assert!(matches!(
            Phone::parse("+7 000 000"),
            Err(ContactError::PhoneInvalid(_))
        ));
    }

    #[test]
    fn phones_are_masked_in_debug_output() {
        let p = Phone::parse("+79123456789").unwrap();
        assert_eq!(format!("{p:?}"), "Phone(+7912*****89)");
        assert!(!format!("{p:?}").contains("345678"));
    }

    #[test]
    fn emails_are_trimmed_and_domain_lowercased() {
        assert_eq!(
            Email::parse(" Anna@Mail.RU ").unwrap().as_str(),
            "Anna@mail.ru"
        );
        assert_eq!(
            Email::parse("анна@почта.рф").unwrap().as_str(),
            "анна@почта.рф"
        );
        for bad in [
            "anna",
            "anna@",
            "@mail.ru",
            "anna@mail",
            "an na@mail.ru",
            "a@b..ru",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
