//! Parsing edge cases: decimals, truncated and foreign files, entity references, encodings.

use super::parse::{parse_minor, parse_scaled};
use super::*;

#[test]
fn decimals_are_read_without_floating_point() {
    assert_eq!(parse_minor("1719"), Some(171_900));
    assert_eq!(parse_minor("9335.42"), Some(933_542));
    assert_eq!(parse_minor("1 496,5"), Some(149_650));
    assert_eq!(parse_scaled("1.00", 3), Some(1000));
    assert_eq!(parse_scaled("abc", 3), None);
    assert_eq!(parse_scaled("", 3), None);
}

#[test]
fn a_file_cut_short_is_refused() {
    let err = parse("<КоммерческаяИнформация><Каталог><Товары>".as_bytes()).unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err}");
}

#[test]
fn a_foreign_root_is_refused() {
    let err = parse("<?xml version=\"1.0\"?><html/>".as_bytes()).unwrap_err();
    assert!(err.to_string().contains("КоммерческаяИнформация"), "{err}");
}

#[test]
fn entity_references_keep_the_spaces_around_them() {
    let xml = "<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>a1</Ид>\
               <Наименование>  Шампунь &amp; бальзам &#1040;&#x0411; </Наименование>\
               </Товар></Товары></Каталог></КоммерческаяИнформация>";
    let pkg = parse(xml.as_bytes()).unwrap();
    assert_eq!(pkg.catalog[0].name, "Шампунь & бальзам АБ");
    let bad = xml.replace("&amp;", "&nbsp;");
    let err = parse(bad.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("nbsp"), "{err}");
}

#[test]
fn windows_1251_is_decoded_by_its_declaration() {
    let text = "<?xml version=\"1.0\" encoding=\"windows-1251\"?><a>Привет</a>";
    let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(text);
    assert_eq!(decode(&bytes).unwrap(), text);
}
