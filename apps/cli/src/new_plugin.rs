//! `vivified new-plugin <NAME>`: writes a plugin crate from the templates under
//! `apps/cli/templates/plugin/` (compiled into the binary) — its manifest, the SDK's
//! runner wired in `main`, a test against an in-process core, a README — that builds
//! and registers with a core as generated.
//!
//! Nothing is written unless everything can be: the name and the target are checked
//! first, the files are written into a hidden sibling directory, and that directory is
//! renamed into place at the end — or, when the target is an existing empty directory,
//! its entries are moved into it — and removed again on any failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vivified_domain::ManifestValidator;
use vivified_domain::manifest::RESERVED_IDS;
use vivified_ports::PluginId;

use crate::text::safe;

/// Where the SDK comes from when neither `--sdk-path` nor `--sdk-git` is given: the
/// project's repository (`repository` of the workspace's `Cargo.toml`). The SDK is not
/// published on crates.io.
pub const DEFAULT_SDK_GIT: &str = env!("CARGO_PKG_REPOSITORY");

/// `vivified new-plugin <NAME> [--dir PATH] [--sdk-path PATH | --sdk-git URL [--sdk-rev REV]]`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin id: 1 to 63 characters of a-z, 0-9 and '-', not `register`. The crate
    /// is named after it (`<NAME>-plugin`).
    #[arg(value_name = "NAME")]
    name: String,
    /// Where to write the crate: a directory that does not exist yet or is empty
    /// [default: ./<NAME>].
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Depend on the SDK and the test kit by path: the `sdk` folder of a Vivified
    /// checkout (the test kit is its sibling `../apps/testkit`). The checkout's
    /// Cargo.lock is copied too, so the plugin builds with the same versions (offline
    /// as well).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["sdk_git", "sdk_rev"])]
    sdk_path: Option<PathBuf>,
    /// Depend on the SDK and the test kit from this git repository [default: the
    /// project's repository, https://github.com/vivified/vivified].
    #[arg(long, value_name = "URL")]
    sdk_git: Option<String>,
    /// The commit or tag of the git repository to build against (Cargo's `rev`)
    /// [default: this version's release tag for the project's repository; for
    /// `--sdk-git`, the default branch's head at the first build, kept in Cargo.lock].
    #[arg(long, value_name = "REV")]
    sdk_rev: Option<String>,
}

/// Why no plugin crate was written.
#[derive(Debug, thiserror::Error)]
pub enum NewPluginError {
    /// The name is not a plugin id.
    #[error("invalid plugin name {0:?}: a plugin id is 1 to 63 characters of a-z, 0-9 and '-'")]
    InvalidName(String),
    /// The name is a plugin id the core reserves.
    #[error("invalid plugin name {0:?}: the core reserves this id")]
    ReservedName(String),
    /// The target exists and is not an empty directory.
    #[error("{0} already exists and is not an empty directory; nothing was written")]
    TargetExists(String),
    /// The target's parent directory does not exist.
    #[error("{0} does not exist; nothing was written")]
    NoParent(String),
    /// `--sdk-path` does not point at the SDK, or its test kit is not beside it.
    #[error("--sdk-path: {0}")]
    SdkPath(String),
    /// An option's value cannot go into Cargo.toml.
    #[error("{0}: {1}")]
    BadOption(&'static str, &'static str),
    /// The rendered manifest failed the core's validation (a defect of the template).
    #[error("the generated manifest is invalid: {0}")]
    Manifest(String),
    /// Reading or writing a file failed.
    #[error("cannot {0} {1}: {2}; nothing was written")]
    Io(&'static str, String, #[source] std::io::Error),
}

impl NewPluginError {
    /// 1 when writing failed, 2 for a bad name, target or option (nothing was tried).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Io(..) | Self::Manifest(_) => 1,
            _ => 2,
        }
    }
}

/// One file of the template: its path in the new crate and its text.
struct Template {
    path: &'static str,
    text: &'static str,
}

/// The template, compiled in so that an installed `vivified` carries it.
const TEMPLATES: &[Template] = &[
    Template {
        path: "Cargo.toml",
        text: include_str!("../templates/plugin/Cargo.toml"),
    },
    Template {
        path: "manifest.json",
        text: include_str!("../templates/plugin/manifest.json"),
    },
    Template {
        path: "src/lib.rs",
        text: include_str!("../templates/plugin/src/lib.rs"),
    },
    Template {
        path: "src/main.rs",
        text: include_str!("../templates/plugin/src/main.rs"),
    },
    Template {
        path: "tests/plugin.rs",
        text: include_str!("../templates/plugin/tests/plugin.rs"),
    },
    Template {
        path: "README.md",
        text: include_str!("../templates/plugin/README.md"),
    },
    // Kept as `gitignore` in this repository, where a `.gitignore` would apply to the
    // template folder itself.
    Template {
        path: ".gitignore",
        text: include_str!("../templates/plugin/gitignore"),
    },
];

/// Where the new crate's `vivified-plugin-sdk` and `vivified-testkit` come from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// A Vivified checkout: the SDK's folder, the test kit's folder and the checkout's
    /// `Cargo.lock` (when it has one).
    Path {
        sdk: PathBuf,
        testkit: PathBuf,
        lock: Option<PathBuf>,
    },
    /// A git repository, optionally at a commit or tag.
    Git { url: String, rev: Option<String> },
}

/// Writes the crate and prints what was written and what to do next.
pub fn run(args: Args) -> Result<ExitCode, crate::Error> {
    let id = check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let target = check_target(&dir)?;
    let source = match args.sdk_path {
        Some(path) => path_source(&path)?,
        None => git_source(args.sdk_git, args.sdk_rev)?,
    };
    let names = Names::new(id);
    let files = render_all(&names, &source)?;
    check_manifest(&files)?;
    let lock = match &source {
        Source::Path {
            lock: Some(lock), ..
        } => Some(std::fs::read(lock).map_err(|e| {
            NewPluginError::Io("read", safe(&lock.display().to_string()).into_owned(), e)
        })?),
        _ => None,
    };
    write_atomically(&target, &files, lock.as_deref())?;

    let shown = safe(&dir.display().to_string()).into_owned();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created plugin {} (crate {}) in {shown}",
        names.plugin_id, names.crate_name
    )?;
    writeln!(out, "next: cd {shown} && cargo test")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The name as a plugin id, or why it is not one. (The errors show the name quoted
/// with `{:?}`, which escapes control characters: one inert line.)
fn check_name(name: &str) -> Result<&str, NewPluginError> {
    if !PluginId::is_valid(name) {
        return Err(NewPluginError::InvalidName(name.to_owned()));
    }
    if RESERVED_IDS.contains(&name) {
        return Err(NewPluginError::ReservedName(name.to_owned()));
    }
    Ok(name)
}

/// Where the crate goes: an absolute parent folder and a name in it.
#[derive(Debug)]
struct Target {
    parent: PathBuf,
    leaf: std::ffi::OsString,
    /// An empty directory is already there (it is filled, not replaced, so that a
    /// shell standing in it stays there).
    exists: bool,
}

impl Target {
    fn path(&self) -> PathBuf {
        self.parent.join(&self.leaf)
    }
}

/// The target must be absent or an empty directory, and its parent must exist.
fn check_target(dir: &Path) -> Result<Target, NewPluginError> {
    let shown = || safe(&dir.display().to_string()).into_owned();
    let exists = match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| NewPluginError::Io("read", shown(), e))?;
            if entries.next().is_some() {
                return Err(NewPluginError::TargetExists(shown()));
            }
            true
        }
        Ok(_) => return Err(NewPluginError::TargetExists(shown())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(NewPluginError::Io("inspect", shown(), e)),
    };
    // `.`, `..` and `a/..` name no leaf: an existing directory is resolved instead.
    let (parent, leaf) = match dir.file_name() {
        Some(leaf) if !exists => (parent_of(dir), leaf.to_owned()),
        _ => {
            let resolved = std::fs::canonicalize(dir)
                .map_err(|e| NewPluginError::Io("inspect", shown(), e))?;
            match (resolved.parent(), resolved.file_name()) {
                (Some(parent), Some(leaf)) => (parent.to_path_buf(), leaf.to_owned()),
                _ => return Err(NewPluginError::TargetExists(shown())),
            }
        }
    };
    let parent = std::fs::canonicalize(&parent)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            NewPluginError::NoParent(safe(&parent.display().to_string()).into_owned())
        })?;
    Ok(Target {
        parent,
        leaf,
        exists,
    })
}

/// `dir`'s parent directory (`.` for a bare name).
fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `--sdk-path`: the SDK's folder of a Vivified checkout, the test kit beside it, and
/// the checkout's `Cargo.lock` (the nearest one above the SDK).
fn path_source(path: &Path) -> Result<Source, NewPluginError> {
    let bad = |what: String| NewPluginError::SdkPath(safe(&what).into_owned());
    let sdk = std::fs::canonicalize(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if !is_package(&sdk, "vivified-plugin-sdk") {
        return Err(bad(format!(
            "{} is not the vivified-plugin-sdk package (the `sdk` folder of a Vivified checkout)",
            path.display()
        )));
    }
    let testkit = sdk
        .parent()
        .map(|root| root.join("apps/testkit"))
        .filter(|t| is_package(t, "vivified-testkit"))
        .ok_or_else(|| {
            bad(format!(
                "no vivified-testkit package at ../apps/testkit beside {}",
                sdk.display()
            ))
        })?;
    let lock = sdk
        .ancestors()
        .map(|a| a.join("Cargo.lock"))
        .find(|l| l.is_file());
    Ok(Source::Path { sdk, testkit, lock })
}

/// Whether `dir/Cargo.toml` declares the package `name`.
fn is_package(dir: &Path, name: &str) -> bool {
    let wanted = format!("name = \"{name}\"");
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|text| text.lines().any(|line| line.trim() == wanted))
}

/// The tag of the release this binary belongs to: the default `rev` of the project's
/// repository, so a generated plugin builds against the SDK of this CLI's version.
pub const DEFAULT_SDK_REV: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// `--sdk-git` / `--sdk-rev`, or the project's repository at this version's tag.
fn git_source(url: Option<String>, rev: Option<String>) -> Result<Source, NewPluginError> {
    let rev = match (&url, rev) {
        (None, None) => Some(DEFAULT_SDK_REV.to_owned()),
        (_, rev) => rev,
    };
    let url = url.unwrap_or_else(|| DEFAULT_SDK_GIT.to_owned());
    if url.trim().is_empty() {
        return Err(NewPluginError::BadOption("--sdk-git", "the URL is empty"));
    }
    if rev.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(NewPluginError::BadOption(
            "--sdk-rev",
            "the revision is empty",
        ));
    }
    Ok(Source::Git { url, rev })
}

/// The names the template is filled in with, all derived from the plugin id.
#[derive(Debug)]
struct Names<'a> {
    plugin_id: &'a str,
    /// `<id>-plugin` (the id itself when it already ends in `-plugin`), prefixed with
    /// `plugin-` when the id does not start with a letter: Cargo wants a package name
    /// to start with a letter, and the suffix keeps it clear of Rust's keywords and
    /// reserved crate names (`std`, `test`, …).
    crate_name: String,
    /// The crate name as a Rust identifier (`-` → `_`).
    crate_ident: String,
    /// The plugin's type: the id in CamelCase followed by `Plugin`.
    type_name: String,
    /// The manifest's display name: the id's words, capitalised.
    plugin_name: String,
    /// Another plugin id, for the generated test's publisher.
    peer_id: &'static str,
}

impl<'a> Names<'a> {
    fn new(plugin_id: &'a str) -> Self {
        let starts_with_letter = plugin_id.starts_with(|c: char| c.is_ascii_lowercase());
        let base = if plugin_id.ends_with("-plugin") {
            plugin_id.to_owned()
        } else {
            format!("{plugin_id}-plugin")
        };
        let crate_name = if starts_with_letter {
            base
        } else {
            format!("plugin-{base}")
        };
        let camel: String = plugin_id
            .split('-')
            .filter(|w| !w.is_empty())
            .map(capitalise)
            .collect();
        // Never `Plugin` itself, the SDK's trait the template imports.
        let type_name = if camel.is_empty() {
            "UnnamedPlugin".to_owned()
        } else if !camel.starts_with(|c: char| c.is_ascii_uppercase()) {
            format!("Plugin{camel}")
        } else if camel.ends_with("Plugin") && camel != "Plugin" {
            camel
        } else {
            format!("{camel}Plugin")
        };
        let words: Vec<&str> = plugin_id.split('-').filter(|w| !w.is_empty()).collect();
        let plugin_name = match words.split_first() {
            Some((first, rest)) => std::iter::once(capitalise(first))
                .chain(rest.iter().map(|w| (*w).to_owned()))
                .collect::<Vec<_>>()
                .join(" "),
            None => plugin_id.to_owned(),
        };
        Self {
            plugin_id,
            crate_ident: crate_name.replace('-', "_"),
            crate_name,
            type_name,
            plugin_name,
            peer_id: if plugin_id == "publisher" {
                "publisher-2"
            } else {
                "publisher"
            },
        }
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// A TOML basic string: `"…"` with `\`, `"` and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a TOML string (TOML cannot hold a path that is not UTF-8).
fn toml_path(path: &Path) -> Result<String, NewPluginError> {
    path.to_str().map(toml_string).ok_or_else(|| {
        NewPluginError::SdkPath(format!(
            "{} is not UTF-8, which Cargo.toml cannot hold",
            safe(&path.to_string_lossy())
        ))
    })
}

/// Every template file with its placeholders filled in.
fn render_all(names: &Names<'_>, source: &Source) -> Result<Vec<(String, String)>, NewPluginError> {
    let (sdk_dependency, testkit_dependency, sdk_source_note, sdk_readme_note) = match source {
        Source::Path { sdk, testkit, .. } => (
            format!("{{ path = {} }}", toml_path(sdk)?),
            format!("{{ path = {} }}", toml_path(testkit)?),
            "here by path, from a Vivified checkout.".to_owned(),
            format!(
                "This crate takes them by path from the Vivified checkout at `{}` \
                 (`vivified new-plugin --sdk-path`), and its `Cargo.lock` is that \
                 checkout's, so it builds with the versions the core was tested with. \
                 To build it elsewhere, depend on them by git instead (as \
                 `vivified new-plugin` does without `--sdk-path`).",
                sdk.parent().unwrap_or(sdk).display()
            ),
        ),
        Source::Git { url, rev } => {
            let rev_part = rev
                .as_ref()
                .map(|r| format!(", rev = {}", toml_string(r)))
                .unwrap_or_default();
            let dep = format!("{{ git = {}{rev_part} }}", toml_string(url));
            (
                dep.clone(),
                dep,
                "here from its git repository (Cargo finds both packages in it).".to_owned(),
                format!(
                    "This crate takes them from the git repository `{url}`{}; the first \
                     build fetches it and `Cargo.lock` records the commit. To develop \
                     against a local checkout, point both dependencies at its folders \
                     (`path = \".../sdk\"`, `path = \".../apps/testkit\"`), or generate \
                     the crate with `vivified new-plugin --sdk-path <checkout>/sdk`.",
                    rev.as_ref()
                        .map(|r| format!(" at `{r}`"))
                        .unwrap_or_default()
                ),
            )
        }
    };
    let vars: [(&str, &str); 10] = [
        ("plugin_id", names.plugin_id),
        ("plugin_name", &names.plugin_name),
        ("crate_name", &names.crate_name),
        ("crate_ident", &names.crate_ident),
        ("type_name", &names.type_name),
        ("peer_id", names.peer_id),
        ("sdk_dependency", &sdk_dependency),
        ("testkit_dependency", &testkit_dependency),
        ("sdk_source_note", &sdk_source_note),
        ("sdk_readme_note", &sdk_readme_note),
    ];
    Ok(TEMPLATES
        .iter()
        .map(|t| (t.path.to_owned(), render(t.text, &vars)))
        .collect())
}

/// `template` with every `{{key}}` replaced by its value.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// The rendered `manifest.json` must pass the core's own validator, exactly as
/// `vivified validate` runs it.
fn check_manifest(files: &[(String, String)]) -> Result<(), NewPluginError> {
    let text = files
        .iter()
        .find(|(path, _)| path == "manifest.json")
        .map(|(_, text)| text.as_str())
        .unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| NewPluginError::Manifest(e.to_string()))?;
    let validator =
        ManifestValidator::new().map_err(|e| NewPluginError::Manifest(e.to_string()))?;
    validator
        .validate_owned(value)
        .map(|_| ())
        .map_err(|violations| {
            NewPluginError::Manifest(
                violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

/// Writes `files` (and `Cargo.lock`) into a hidden sibling of the target, then renames
/// it into place (or, for an empty directory already there, moves its entries in); on
/// any failure what was written is removed and the target is left as it was.
fn write_atomically(
    target: &Target,
    files: &[(String, String)],
    lock: Option<&[u8]>,
) -> Result<(), NewPluginError> {
    let shown = |p: &Path| safe(&p.display().to_string()).into_owned();
    let dir = target.path();
    let staging = target.parent.join(format!(
        ".{}.new-plugin-{}",
        target.leaf.to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir(&staging).map_err(|e| NewPluginError::Io("create", shown(&staging), e))?;
    let mut moved: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (path, text) in files {
            let file = staging.join(path);
            if let Some(folder) = file.parent() {
                std::fs::create_dir_all(folder)
                    .map_err(|e| NewPluginError::Io("create", shown(folder), e))?;
            }
            std::fs::write(&file, text)
                .map_err(|e| NewPluginError::Io("write", shown(&file), e))?;
        }
        if let Some(lock) = lock {
            let file = staging.join("Cargo.lock");
            std::fs::write(&file, lock)
                .map_err(|e| NewPluginError::Io("write", shown(&file), e))?;
        }
        if !target.exists {
            return std::fs::rename(&staging, &dir)
                .map_err(|e| NewPluginError::Io("create", shown(&dir), e));
        }
        let entries = std::fs::read_dir(&staging)
            .map_err(|e| NewPluginError::Io("read", shown(&staging), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| NewPluginError::Io("read", shown(&staging), e))?;
            let to = dir.join(entry.file_name());
            std::fs::rename(entry.path(), &to)
                .map_err(|e| NewPluginError::Io("write", shown(&to), e))?;
            moved.push(to);
        }
        std::fs::remove_dir(&staging).map_err(|e| NewPluginError::Io("remove", shown(&staging), e))
    })();
    if result.is_err() {
        for path in &moved {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git() -> Source {
        git_source(None, None).unwrap()
    }

    #[test]
    fn names_are_derived_from_the_id() {
        let n = Names::new("hello-world");
        assert_eq!(n.crate_name, "hello-world-plugin");
        assert_eq!(n.crate_ident, "hello_world_plugin");
        assert_eq!(n.type_name, "HelloWorldPlugin");
        assert_eq!(n.plugin_name, "Hello world");
        assert_eq!(n.peer_id, "publisher");

        let n = Names::new("audit-plugin");
        assert_eq!(n.crate_name, "audit-plugin");
        assert_eq!(n.type_name, "AuditPlugin");

        let n = Names::new("3d-render");
        assert_eq!(n.crate_name, "plugin-3d-render-plugin");
        assert_eq!(n.crate_ident, "plugin_3d_render_plugin");
        assert_eq!(n.type_name, "Plugin3dRender");

        let n = Names::new("-");
        assert_eq!(n.crate_name, "plugin---plugin");
        assert_eq!(n.type_name, "UnnamedPlugin");
        assert_eq!(Names::new("plugin").type_name, "PluginPlugin");

        assert_eq!(Names::new("self").type_name, "SelfPlugin");
        assert_eq!(Names::new("publisher").peer_id, "publisher-2");
    }

    #[test]
    fn names_are_checked_against_the_id_rules() {
        assert!(check_name("hello").is_ok());
        assert!(check_name(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Hello",
            "hello_world",
            "héllo",
            "a b",
            "a\nb",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(check_name(bad), Err(NewPluginError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_name("register"),
            Err(NewPluginError::ReservedName(_))
        ));
        // A control character never reaches the terminal, and the error stays one line.
        let e = check_name("a\nb\u{1b}[31m").unwrap_err().to_string();
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn every_placeholder_is_filled_and_every_manifest_is_valid() {
        for id in ["hello", "a", "3d-render", "publisher", &"x".repeat(63)] {
            let files = render_all(&Names::new(id), &git()).unwrap();
            assert_eq!(files.len(), TEMPLATES.len());
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{id}: {path} keeps a placeholder");
            }
            check_manifest(&files).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("/a/b"), "\"/a/b\"");
        assert_eq!(toml_string("C:\\x\"y"), "\"C:\\\\x\\\"y\"");
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }

    #[test]
    fn the_git_source_is_the_repository_unless_told() {
        let files = render_all(&Names::new("hello"), &git()).unwrap();
        let cargo = &files.iter().find(|(p, _)| p == "Cargo.toml").unwrap().1;
        let dep = format!(
            "vivified-plugin-sdk = {{ git = \"{DEFAULT_SDK_GIT}\", rev = \"{DEFAULT_SDK_REV}\" }}"
        );
        assert!(cargo.contains(&dep), "{cargo}");
        let head = git_source(Some("https://example.com/v.git".into()), None).unwrap();
        assert!(
            matches!(head, Source::Git { rev: None, .. }),
            "another repository: its head"
        );

        let pinned = Source::Git {
            url: "https://example.com/v.git".into(),
            rev: Some("v0.1.0".into()),
        };
        let files = render_all(&Names::new("hello"), &pinned).unwrap();
        let cargo = &files.iter().find(|(p, _)| p == "Cargo.toml").unwrap().1;
        assert!(
            cargo.contains(
                "vivified-testkit = { git = \"https://example.com/v.git\", rev = \"v0.1.0\" }"
            ),
            "{cargo}"
        );
        assert!(git_source(Some(" ".into()), None).is_err());
        assert!(git_source(None, Some(String::new())).is_err());
    }
}
