//! Parsing of contact data at the edge: phones to E.164, emails lower-cased and checked.
//! Everything inside the service holds these types, never raw strings.

use std::fmt;

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, PhoneNumberType, Region};
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

    /// A number read back from state this product wrote itself: already E.164 (`+` and 8 to
    /// 15 digits), so it is taken as it is instead of going through libphonenumber again,
    /// which cost more than the rest of reading a conversation's state. Anything else is
    /// parsed as typed input.
    pub fn from_stored(stored: String) -> Result<Phone, ContactError> {
        let digits = stored.strip_prefix('+').unwrap_or_default();
        if (8..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(Phone(stored))
        } else {
            Phone::parse(&stored)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after the country code (`9123456789`): what every way of writing the number
    /// without separators contains (`+7…`, `8…`, `7…`), so a search for it finds them all.
    pub fn national_digits(&self) -> String {
        PhoneNumber::parse(&self.0, None)
            .map(|n| n.get_national_significant_number())
            .unwrap_or_else(|_| self.0.trim_start_matches('+').to_string())
    }

    /// No number, with nothing to show, search or call: the phone of a client whose personal
    /// data was erased (152-ФЗ), whose bookings stay for the business's counts; or of a client
    /// who left before giving one, in the booking an unfinished-booking lead is written from
    /// ([`crate::crm::LeadRequest::without_contact`]). Never parsed from input and never sent
    /// to a vendor.
    pub fn erased() -> Phone {
        Phone(String::new())
    }

    pub fn is_erased(&self) -> bool {
        self.0.is_empty()
    }

    /// The number as people write it, for text a client reads: `+7 912 345-67-89`,
    /// `+44 20 7946 0958`. libphonenumber's international format knows every country's
    /// grouping; E.164 is kept in the rare case it cannot read its own output back.
    pub fn formatted(&self) -> String {
        if self.is_erased() {
            return "—".into();
        }
        match PhoneNumber::parse(&self.0, None) {
            Ok(n) => n.format_as(PhoneNumberFormat::International).into_owned(),
            Err(_) => self.0.clone(),
        }
    }

    /// The number with its middle digits hidden, for logs and the journal: `+7912***6789`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }

    /// Whether the number belongs to a mobile line, by libphonenumber's numbering plans. Where
    /// the plan cannot tell (fixed-line-or-mobile ranges, e.g. the USA) the number counts as
    /// mobile: people book from the phone in their hand.
    pub fn is_mobile(&self) -> bool {
        PhoneNumber::parse(&self.0, None).is_ok_and(|n| {
            matches!(
                n.get_type(),
                PhoneNumberType::Mobile | PhoneNumberType::FixedLineOrMobile
            )
        })
    }
}

/// Whether a phone as typed (`8 495 …`) is a mobile line; unreadable numbers count as mobile.
pub fn is_mobile_phone(raw: &str) -> bool {
    match Phone::parse(raw) {
        Ok(phone) => phone.is_mobile(),
        Err(_) => true,
    }
}

/// A configured phone in the form clients read; one the parser cannot read (an extension, a
/// short number) is shown as written, and so is one with words in it ("доб. 12"), which
/// formatting would drop.
pub fn display_phone(raw: &str) -> String {
    if raw.chars().any(char::is_alphabetic) {
        return raw.trim().to_string();
    }
    Phone::parse(raw)
        .map(|p| p.formatted())
        .unwrap_or_else(|_| raw.trim().to_string())
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

/// One number found in a cell, with the extension typed after it (`доб. 123`), which E.164
/// cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneEntry {
    pub phone: Phone,
    pub extension: Option<String>,
}

/// What a cell that may hold several numbers yields: the numbers that parsed and, verbatim,
/// the pieces that did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneCell {
    pub phones: Vec<PhoneEntry>,
    pub errors: Vec<ContactError>,
}

const EXTENSION_MARKERS: &[&str] = &["доб.", "доб", "ext.", "ext", "вн.", "#", "x"];

/// Splits off an extension (`… доб. 123`, `… ext 5`, `… #12`) from a number as typed.
fn split_extension(piece: &str) -> (&str, Option<String>) {
    for marker in EXTENSION_MARKERS {
        if let Some((at, len)) = rfind_ignoring_case(piece, marker)
            && at > 0
        {
            let ext: String = piece[at + len..]
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '.')
                .collect();
            if !ext.is_empty() && ext.chars().all(|c| c.is_ascii_digit()) {
                return (piece[..at].trim_end_matches([',', ' ', '(']), Some(ext));
            }
        }
    }
    (piece, None)
}

/// The byte position and length in `text` of the last occurrence of the lower-case `needle`,
/// compared char by char in lower case. Positions come from `text` itself: lower-casing can
/// change a character's length in bytes (`İ`, `ẞ`), so positions found in a lower-cased copy
/// need not fall on `text`'s character boundaries.
fn rfind_ignoring_case(text: &str, needle: &str) -> Option<(usize, usize)> {
    let wanted: Vec<char> = needle.chars().collect();
    text.char_indices().rev().find_map(|(at, _)| {
        let mut chars = text[at..].char_indices();
        for w in &wanted {
            let (_, c) = chars.next()?;
            if !c.to_lowercase().eq(std::iter::once(*w)) {
                return None;
            }
        }
        let len = chars.next().map_or(text.len() - at, |(end, _)| end);
        Some((at, len))
    })
}

/// Parses every number in a spreadsheet cell: `8 (912) 345-67-89, +7 495 123-45-67 доб. 12`,
/// numbers separated by `,`, `;`, `/`, new lines or «или», an extension attached to the number
/// before it. Numbers without a country code are read as Russian; other countries keep theirs.
pub fn parse_phones(cell: &str) -> PhoneCell {
    let mut out = PhoneCell::default();
    let normalised = cell.replace(" или ", ";").replace(" or ", ";");
    let mut pieces: Vec<String> = Vec::new();
    for piece in normalised.split([',', ';', '/', '\n', '\r', '|']) {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        // "…, доб. 123": an extension split off by the separator belongs to the number before.
        let lower = piece.to_lowercase();
        let is_ext = EXTENSION_MARKERS
            .iter()
            .any(|m| lower.starts_with(m) && *m != "x" && *m != "#");
        match pieces.last_mut() {
            Some(prev) if is_ext => {
                prev.push(' ');
                prev.push_str(piece);
            }
            _ => pieces.push(piece.to_string()),
        }
    }
    for piece in pieces {
        let (number, extension) = split_extension(&piece);
        match Phone::parse(number) {
            Ok(phone) => out.phones.push(PhoneEntry { phone, extension }),
            Err(e) => match split_glued(number) {
                // Two numbers typed with only spaces between them.
                Some(phones) => out
                    .phones
                    .extend(phones.into_iter().map(|phone| PhoneEntry {
                        phone,
                        extension: None,
                    })),
                None => out.errors.push(e),
            },
        }
    }
    out
}

/// `89123456789 89234567890`: several whole numbers separated by spaces only. Accepted only
/// when every space-separated token is itself a valid number.
fn split_glued(piece: &str) -> Option<Vec<Phone>> {
    let tokens: Vec<&str> = piece.split_whitespace().collect();
    if tokens.len() < 2 {
        return None;
    }
    let phones: Vec<Phone> = tokens
        .iter()
        .filter(|t| t.chars().filter(char::is_ascii_digit).count() >= 10)
        .map(|t| Phone::parse(t).ok())
        .collect::<Option<Vec<_>>>()?;
    (phones.len() == tokens.len()).then_some(phones)
}

/// Domains people mean when they mistype one; a near miss of these is reported, never fixed.
const KNOWN_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "mail.ru",
    "yandex.ru",
    "ya.ru",
    "inbox.ru",
    "list.ru",
    "bk.ru",
    "rambler.ru",
    "icloud.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.com",
    "yandex.com",
];

/// Misspellings too far from the domain for the distance test but common in client bases.
const KNOWN_TYPOS: &[(&str, &str)] = &[
    ("gmail.ru", "gmail.com"),
    ("mail.com", "mail.ru"),
    ("yandex.ry", "yandex.ru"),
    ("yndex.ru", "yandex.ru"),
    ("gmail.co", "gmail.com"),
];

impl Email {
    /// Like [`Email::parse`], with an internationalised domain (`почта.рф`) in its ASCII
    /// (punycode) form, the one mail systems and CRMs compare.
    pub fn parse_ascii(input: &str) -> Result<Email, ContactError> {
        let email = Email::parse(input)?;
        let Some((local, domain)) = email.0.rsplit_once('@') else {
            return Err(ContactError::EmailInvalid(input.trim().to_string()));
        };
        if domain.is_ascii() {
            return Ok(email);
        }
        let ascii = idna::domain_to_ascii(domain)
            .map_err(|_| ContactError::EmailInvalid(input.trim().to_string()))?;
        Ok(Email(format!("{local}@{ascii}")))
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The address with an internationalised domain in Unicode (`olga@почта.рф`, never
    /// `olga@xn--80a1acny.xn--p1ai`): the form people read and type, so the one written to
    /// the systems managers work in.
    pub fn unicode(&self) -> String {
        unicode_email(&self.0)
    }
}

/// [`Email::unicode`] for an address held as text (an import's values); anything without an
/// `@` or with an undecodable domain is returned as it came.
pub fn unicode_email(raw: &str) -> String {
    let Some((local, domain)) = raw.rsplit_once('@') else {
        return raw.to_string();
    };
    if !domain.split('.').any(|label| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    }) {
        return raw.to_string();
    }
    match idna::domain_to_unicode(domain) {
        (unicode, Ok(())) => format!("{local}@{unicode}"),
        (_, Err(_)) => raw.to_string(),
    }
}

impl Email {
    /// The well-known domain this one looks like a typo of (`gmial.com` → `gmail.com`).
    pub fn likely_typo(&self) -> Option<&'static str> {
        let domain = self.domain();
        if KNOWN_MAIL_DOMAINS.contains(&domain) {
            return None;
        }
        if let Some((_, meant)) = KNOWN_TYPOS.iter().find(|(typo, _)| *typo == domain) {
            return Some(meant);
        }
        // Short domains (bk.ru, ya.ru) are one edit away from many real ones.
        KNOWN_MAIL_DOMAINS
            .iter()
            .find(|known| known.len() >= 7 && edit_distance(domain, known) == 1)
            .copied()
    }
}

/// Damerau–Levenshtein distance with adjacent transpositions counted once (`gmial` → `gmail`
/// is one edit), for short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_business_phone_is_shown_formatted_unless_it_has_words() {
        assert_eq!(display_phone("84951234567"), "+7 495 123-45-67");
        assert_eq!(display_phone(" +7 (495) 123-45-67 "), "+7 495 123-45-67");
        assert_eq!(display_phone("+442079460958"), "+44 20 7946 0958");
        assert_eq!(
            display_phone("+7 495 123-45-67 доб. 12"),
            "+7 495 123-45-67 доб. 12"
        );
        assert_eq!(display_phone("112"), "112");
    }

    #[test]
    fn phones_are_formatted_the_way_each_country_writes_them() {
        let f = |raw: &str| Phone::parse(raw).expect(raw).formatted();
        assert_eq!(f("89123456789"), "+7 912 345-67-89");
        assert_eq!(f("+7 (495) 123-45-67"), "+7 495 123-45-67");
        assert_eq!(f("+44 20 7946 0958"), "+44 20 7946 0958");
        assert_eq!(f("+49 30 901820"), "+49 30 901820");
    }

    #[test]
    fn a_cell_whose_lower_case_shifts_character_boundaries_does_not_panic() {
        // `İ` grows by a byte in lower case and `ẞ` shrinks by one: same total length, but the
        // `x` found in the lower-cased copy sits one byte later than in the cell, inside `Ж`.
        for cell in ["İxЖẞ", "+7 912 345-67-89 İxЖẞ", "8 912 345 67 89 İдобЖẞ 12"] {
            let parsed = parse_phones(cell);
            assert_eq!(parsed.phones.len() + parsed.errors.len(), 1, "{cell}");
        }
        let parsed = parse_phones("+7 912 345-67-89 ДОБ. 12");
        assert_eq!(parsed.phones[0].extension.as_deref(), Some("12"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn any_phone_cell_parses_without_panic_into_e164(cell in "\\PC{0,40}") {
            let parsed = parse_phones(&cell);
            for entry in parsed.phones {
                let p = entry.phone.as_str();
                proptest::prop_assert!(p.starts_with('+') && p[1..].chars().all(|c| c.is_ascii_digit()), "{p}");
                proptest::prop_assert_eq!(Phone::parse(p).map(|x| x.as_str().to_string()), Ok(p.to_string()));
                let _ = entry.phone.masked();
            }
            let _ = Phone::parse(&cell);
            let _ = mask_phone(&cell);
        }

        #[test]
        fn phone_like_cells_with_extensions_parse_without_panic(
            digits in "[+]?[0-9 ()-]{5,20}",
            marker in "(доб|ДОБ|ext|EXT|вн|x|#|İ|ẞ|Ж)[.]?",
            tail in "\\PC{0,8}",
        ) {
            let _ = parse_phones(&format!("{digits} {marker} {tail}"));
            let _ = parse_phones(&format!("{digits}{marker}{tail}, {digits}"));
        }

        #[test]
        fn any_email_parses_without_panic_and_parsing_is_idempotent(text in "\\PC{0,40}") {
            if let Ok(e) = Email::parse(&text) {
                proptest::prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
                let _ = e.likely_typo();
                let _ = e.masked();
            }
            let _ = Email::parse_ascii(&text);
        }

        #[test]
        fn email_shaped_text_parses_without_panic(
            local in "\\PC{0,12}",
            domain in "[\\pL0-9.-]{0,20}",
        ) {
            let text = format!("{local}@{domain}");
            if let Ok(e) = Email::parse_ascii(&text) {
                proptest::prop_assert!(e.as_str().contains('@'));
                let _ = e.likely_typo();
            }
        }
    }

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

    #[test]
    fn a_cell_with_several_numbers_and_extensions() {
        let cell = parse_phones("8 (912) 345-67-89, +7 495 123-45-67 доб. 123; +375 29 123-45-67");
        let got: Vec<(&str, Option<&str>)> = cell
            .phones
            .iter()
            .map(|e| (e.phone.as_str(), e.extension.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("+79123456789", None),
                ("+74951234567", Some("123")),
                ("+375291234567", None)
            ]
        );
        assert!(cell.errors.is_empty());
        let cell = parse_phones("+7 (495) 123-45-67, доб. 45 или 89123456789");
        assert_eq!(cell.phones.len(), 2);
        assert_eq!(cell.phones[0].extension.as_deref(), Some("45"));
        let cell = parse_phones("89123456789 89234567890");
        assert_eq!(cell.phones.len(), 2);
        let cell = parse_phones("9123456789 / нет");
        assert_eq!(cell.phones.len(), 1);
        assert_eq!(
            cell.errors,
            vec![ContactError::PhoneNotANumber("нет".into())]
        );
    }

    #[test]
    fn idn_addresses_go_out_in_unicode_and_lines_know_their_kind() {
        let typed = Email::parse("olga@xn--80a1acny.xn--p1ai").unwrap();
        assert_eq!(typed.unicode(), "olga@почта.рф");
        assert_eq!(
            Email::parse("olga@Почта.РФ").unwrap().unicode(),
            "olga@почта.рф"
        );
        assert_eq!(unicode_email("vera@example.ru"), "vera@example.ru");
        assert_eq!(unicode_email("no-at-sign"), "no-at-sign");
        // A label whose fourth byte falls inside a letter is simply not punycode.
        assert_eq!(unicode_email("a@aпочта.рф"), "a@aпочта.рф");
        assert!(Phone::parse("+7 912 345-67-89").unwrap().is_mobile());
        assert!(!Phone::parse("8 (495) 123-45-67").unwrap().is_mobile());
        assert!(!Phone::parse("+7 343 222-33-44").unwrap().is_mobile());
        assert!(is_mobile_phone("8 912 345 67 89"));
        assert!(!is_mobile_phone("8 495 123 45 67"));
    }

    #[test]
    fn idn_domains_become_punycode_and_typos_are_named() {
        assert_eq!(
            Email::parse_ascii(" Анна@Почта.РФ ").unwrap().as_str(),
            "Анна@xn--80a1acny.xn--p1ai"
        );
        for (typo, meant) in [
            ("a@gmial.com", "gmail.com"),
            ("a@gmail.ru", "gmail.com"),
            ("a@mial.ru", "mail.ru"),
            ("a@yandex.ry", "yandex.ru"),
            ("a@yadnex.ru", "yandex.ru"),
        ] {
            assert_eq!(
                Email::parse(typo).unwrap().likely_typo(),
                Some(meant),
                "{typo}"
            );
        }
        for fine in ["a@gmail.com", "a@bk.ru", "a@ok.ru", "a@school.ru"] {
            assert_eq!(Email::parse(fine).unwrap().likely_typo(), None, "{fine}");
        }
    }
}
