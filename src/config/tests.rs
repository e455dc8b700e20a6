//! The settings' own checks: the test defaults read no environment, secrets are never flags.

use super::*;

#[test]
fn test_settings_read_no_environment_variable() {
    let with_env: Vec<String> = defaults_command()
        .get_arguments()
        .filter(|a| a.get_env().is_some())
        .map(|a| a.get_id().to_string())
        .collect();
    assert!(
        with_env.is_empty(),
        "arguments still read the environment: {with_env:?}"
    );
    let cfg = Config::for_tests(PathBuf::from("/tmp/x"));
    assert_eq!((cfg.redis_url, cfg.mongodb_uri), (None, None));
    assert_eq!(cfg.port, 0);
}

#[test]
fn every_setting_of_the_command_line_reads_its_environment_variable() {
    use clap::CommandFactory;
    // The opposite check: the real command line still has its `env` (the test above is not
    // vacuous because `for_tests` builds its own).
    let cmd = Cli::command();
    let port = cmd
        .get_arguments()
        .find(|a| a.get_id() == "port")
        .expect("the PORT argument");
    assert_eq!(port.get_env(), Some(std::ffi::OsStr::new("PORT")));
}

#[test]
fn secrets_are_never_flags_and_never_shown_by_debug() {
    use clap::CommandFactory;
    // No flag takes a secret: `ps` would show it to every local user.
    for flag in [
        "--jwt-secret",
        "--file-url-secret",
        "--mongodb-uri",
        "--redis-url",
    ] {
        let parsed = Cli::try_parse_from(["switchboard", flag, "s3cr3t-value-xyz"]);
        assert!(parsed.is_err(), "{flag} is accepted");
    }
    let cmd = Cli::command();
    for name in SECRET_VARIABLES {
        assert!(
            cmd.get_arguments()
                .all(|a| a.get_env() != Some(std::ffi::OsStr::new(name))),
            "{name} is an argument"
        );
    }
    // They come from the environment, and `Debug` shows none of them.
    let mut cfg = Config::for_tests(PathBuf::from("/tmp/x"));
    cfg.read_secrets(|name| Some(format!("s3cr3t-{name}")));
    assert_eq!(cfg.jwt_secret.as_deref(), Some("s3cr3t-JWT_SECRET"));
    assert_eq!(cfg.redis_url.as_deref(), Some("s3cr3t-REDIS_URL"));
    let shown = format!(
        "{cfg:?} {:?}",
        Cli::try_parse_from(["switchboard"]).unwrap()
    );
    let mut cli = Cli::try_parse_from(["switchboard"]).unwrap();
    cli.config = cfg;
    let shown = format!("{shown} {cli:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    // Empty is unset.
    let mut cfg = Config::for_tests(PathBuf::from("/tmp/x"));
    cfg.read_secrets(|_| Some(String::new()));
    assert_eq!(cfg.jwt_secret, None);
}
