//! The committed spec is the one the code produces: `openapi/openapi.json` must equal
//! `storeplane openapi`, so clients generated from the file match the server.

#[test]
fn committed_spec_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = storeplane::api::spec_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` \
         and commit the result"
    );
}

#[test]
fn the_spec_binary_prints_the_same_spec() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_storeplane"))
        .arg("openapi")
        .output()
        .expect("run storeplane openapi");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        storeplane::api::spec_json()
    );
}
