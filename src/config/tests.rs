//! Unit tests of the loader's leaf checks; the files as a whole are tested
//! end to end in `tests/config_errors.rs`.

use super::load::is_loopback_url;

#[test]
fn only_loopback_hosts_count_as_this_machine() {
    for url in [
        "http://127.0.0.1:8080/v1",
        "http://127.3.4.5/v1",
        "http://localhost:9000",
        "http://LOCALHOST/v1",
        "http://[::1]:9000/v1",
        "http://[::1]/v1",
    ] {
        assert!(is_loopback_url(url), "{url}");
    }
    for url in [
        "http://10.0.0.1/v1",
        "http://128.0.0.1/v1",
        "http://localhost.example.com/v1",
        "http://localhostx/v1",
        "http://127.0.0.1.example.com/v1",
        "http://[::2]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://user@127.0.0.1/v1",
        "http://example.eu/v1?h=127.0.0.1",
        "https://127.0.0.1/v1",
    ] {
        assert!(!is_loopback_url(url), "{url}");
    }
}
