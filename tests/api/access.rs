//! The route table: every route of the router has an entry (the router is built from
//! it), `docs/api.md` states the same table, and every route × every kind of caller
//! gets the answer the table says — generated from the table, so a new route cannot
//! skip it.

use axum::http::{Method, StatusCode};
use serde_json::json;
use vivified_server::routes::access::{Access, RouteAccess};
use vivified_server::routes::route_table;

use crate::helpers::*;
use crate::operators::operator_with_token;

/// Who calls, in the matrix.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Plugin,
    Operator(&'static str),
    Bootstrap,
}

const CALLERS: [Who; 7] = [
    Who::Nobody,
    Who::Plugin,
    Who::Operator("viewer"),
    Who::Operator("auditor"),
    Who::Operator("operator"),
    Who::Operator("admin"),
    Who::Bootstrap,
];

fn role(name: &str) -> vivified_ports::Role {
    vivified_ports::Role::parse(name).expect("a role")
}

/// The path with its parameters filled: the plugin `target`, the operator `someone`
/// (never the caller), a token prefix that does not exist.
fn concrete(path: &str) -> String {
    path.replace("{id}", "target")
        .replace("{name}", "someone")
        .replace("{prefix}", "000000000000")
}

/// One fresh app per call, so no call sees another's effects: a plugin `target`, an
/// operator `someone`, and a token of the caller.
async fn call(route: &RouteAccess, who: Who) -> (TestResponse, Option<String>) {
    let app = TestApp::dev();
    let plugin = app.register_ok("target").await;
    operator_with_token(&app, "someone", "viewer").await;
    let bearer = match who {
        Who::Nobody => None,
        Who::Plugin => Some(plugin),
        Who::Operator(r) => Some(operator_with_token(&app, &format!("as-{r}"), r).await),
        Who::Bootstrap => Some(ADMIN_TOKEN.to_owned()),
    };
    let body = (route.method == Method::POST).then(|| json!({}));
    let resp = app
        .request(
            route.method.clone(),
            &concrete(route.path),
            bearer.as_deref(),
            body.as_ref(),
        )
        .await;
    (resp, bearer)
}

fn refused(resp: &TestResponse) -> bool {
    matches!(
        resp.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    )
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_table_says() {
    let app = TestApp::dev();
    let table = route_table(&app.settings);
    assert!(table.len() > 20, "the table lists the routes: {table:?}");
    for route in &table {
        for who in CALLERS {
            let (resp, _) = call(route, who).await;
            let what = format!(
                "{} {} as {who:?} ({:?}) → {} {}",
                route.method,
                route.path,
                route.access,
                resp.status,
                resp.text()
            );
            let caller_role = match who {
                Who::Operator(r) => Some(role(r)),
                Who::Bootstrap => Some(vivified_ports::Role::Admin),
                Who::Nobody | Who::Plugin => None,
            };
            match (route.access, who) {
                (Access::Public, _) | (Access::Registration, Who::Nobody | Who::Plugin) => {
                    assert!(!refused(&resp), "{what}");
                }
                (Access::Registration, _) => {}
                (_, Who::Nobody) => {
                    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
                }
                (Access::Plugin | Access::PluginOr(_) | Access::Anyone, Who::Plugin) => {
                    assert!(!refused(&resp), "{what}");
                }
                (Access::Operator(_) | Access::SelfOr(_), Who::Plugin) => {
                    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
                    assert_eq!(resp.json()["reason"], "admin_token_required", "{what}");
                }
                (Access::Plugin, _) => {
                    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
                    assert_eq!(resp.json()["reason"], "plugin_token_required", "{what}");
                }
                (access, _) => {
                    let needed = access.operator_role().expect("an operator route");
                    let has = caller_role.expect("an operator");
                    if has.includes(needed) {
                        assert!(!refused(&resp), "{what}");
                    } else {
                        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
                        assert_eq!(resp.json()["reason"], "insufficient_role", "{what}");
                        assert_eq!(resp.json()["required_role"], needed.as_str(), "{what}");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn an_operator_may_always_reach_its_own_self_routes() {
    let app = TestApp::dev();
    for route in route_table(&app.settings)
        .iter()
        .filter(|r| matches!(r.access, Access::SelfOr(_)))
    {
        for r in ["viewer", "auditor", "operator"] {
            let app = TestApp::dev();
            let token = operator_with_token(&app, "me", r).await;
            let path = route
                .path
                .replace("{name}", "me")
                .replace("{prefix}", "000000000000");
            let body = (route.method == Method::POST).then(|| json!({}));
            let resp = app
                .request(route.method.clone(), &path, Some(&token), body.as_ref())
                .await;
            assert!(
                !refused(&resp),
                "{} {path} as {r} → {} {}",
                route.method,
                resp.status,
                resp.text()
            );
        }
    }
}

/// The table of `docs/api.md` ("Who may call what") as (method, path, who) rows.
fn documented() -> Vec<(String, String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
        .expect("docs/api.md");
    let section = doc
        .split("## Who may call what")
        .nth(1)
        .expect("docs/api.md has a \"Who may call what\" section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[2].clone())
        })
        .collect()
}

#[test]
fn docs_state_the_route_table() {
    // Dev mode with `/metrics` on the API port: every route there is.
    let app = TestApp::dev();
    let mut code: Vec<(String, String, String)> = route_table(&app.settings)
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_owned(), r.access.describe()))
        .collect();
    code.sort();
    let mut docs = documented();
    docs.sort();
    let table: String = code
        .iter()
        .map(|(m, p, w)| format!("| {m} | `{p}` | {w} |\n"))
        .collect();
    assert_eq!(
        docs, code,
        "docs/api.md's \"Who may call what\" table differs from the code's; it should read:\n{table}"
    );
}
