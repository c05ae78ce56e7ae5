//! Exchange requests' plain parts: file names kept inside, the session cookie among others.

use super::*;

#[test]
fn filenames_stay_inside_the_exchange() {
    assert!(safe_filename(Some("../etc/passwd")).is_err());
    assert!(safe_filename(Some("/etc/passwd")).is_err());
    assert!(safe_filename(Some("a\\..\\b")).is_err());
    assert!(safe_filename(None).is_err());
    assert_eq!(
        safe_filename(Some("import_files/ab/x.xml")).as_deref(),
        Ok("import_files/ab/x.xml")
    );
}

#[test]
fn the_session_cookie_is_found_among_others() {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_static("a=1; zapis_1c=abc; b=2"),
    );
    assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
}

#[test]
fn ipv6_addresses_count_per_64() {
    let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:5000".parse().unwrap();
    let b: SocketAddr = "[2001:db8:1:2:bbbb::9]:6000".parse().unwrap();
    let c: SocketAddr = "[2001:db8:1:3::1]:6000".parse().unwrap();
    assert_eq!(address_key(Some(a)), address_key(Some(b)));
    assert_ne!(address_key(Some(a)), address_key(Some(c)));
    let mapped: SocketAddr = "[::ffff:10.0.0.7]:1".parse().unwrap();
    assert_eq!(
        address_key(Some(mapped)),
        "10.0.0.7".parse::<IpAddr>().unwrap()
    );
}
