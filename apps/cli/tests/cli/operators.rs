//! `vivified operators …` and `vivified whoami` against a real core started in-process.

use serde_json::Value;

use crate::common::{ADMIN_TOKEN, Core, Run, TempDir};

#[test]
fn an_admin_creates_an_operator_who_then_acts_under_its_own_token() {
    let core = Core::start();
    let dir = TempDir::new("cli");
    let run =
        Run::of(
            core.cli(dir.path())
                .args(["operators", "add", "alice", "--role", "operator"]),
        );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "operator alice created with role operator\n");

    let run = Run::of(core.cli(dir.path()).args([
        "operators",
        "token",
        "create",
        "alice",
        "--label",
        "laptop",
        "--ttl",
        "30d",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    let token = run.stdout.trim().to_owned();
    assert!(
        token.starts_with("viv_op_"),
        "the token alone on stdout: {run:?}"
    );
    assert!(run.stderr.contains("not shown again"), "{run:?}");
    let prefix = token.split('_').nth(2).unwrap().to_owned();

    // As alice: her own token, not the admin's.
    let as_alice = |args: &[&str]| {
        let mut cmd = core.cli(dir.path());
        cmd.env_remove("VIVIFIED_ADMIN_TOKEN")
            .env("VIVIFIED_OPERATOR_TOKEN", &token)
            .args(args);
        Run::of(&mut cmd)
    };
    let run = as_alice(&["whoami"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "alice (operator, role operator, by token {prefix}; expires "
        )),
        "{run:?}"
    );
    let run = as_alice(&["whoami", "--json"]);
    let me: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(me["name"], "alice");
    // An operator may not create operators: the core's refusal, exit 1.
    let run = as_alice(&["operators", "add", "bob", "--role", "viewer"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("insufficient_role") || run.stderr.contains("admin role"),
        "{run:?}"
    );

    let run = Run::of(core.cli(dir.path()).args(["operators", "list"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "alice  operator  -\n");
    let run = as_alice(&["operators", "show", "alice"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("  {prefix}  laptop  expires ")),
        "{run:?}"
    );
    assert!(!run.stdout.contains(&token), "{run:?}");

    let run = as_alice(&["operators", "token", "revoke", "alice", &prefix]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("token {prefix} of alice revoked\n"));
    let run = as_alice(&["whoami"]);
    assert_eq!(run.code, 1, "a revoked token is refused: {run:?}");

    let run = Run::of(core.cli(dir.path()).args(["operators", "remove", "alice"]));
    assert_eq!(run.code, 0, "{run:?}");
    let run = Run::of(core.cli(dir.path()).args(["operators", "list"]));
    assert_eq!(run.stdout, "");
    assert!(!run.stdout.contains(ADMIN_TOKEN) && !run.stderr.contains(ADMIN_TOKEN));
}
