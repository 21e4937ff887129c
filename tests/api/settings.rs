//! The settings are written in three places that must agree: the table under
//! "## Configuration" in README.md (the reference: one row per setting, `| `--flag` |
//! `MFAD_VAR` | default | meaning |`), `mfad --help`, and the code's list (`SETTINGS` in
//! `src/`). Each flag and variable of the table is in `--help` and in the code's list, and
//! nothing else is (the code's hidden `test-*` settings aside); and the real binary knows
//! each one: the flag is never an "unknown option", the variable set to a value it cannot
//! take is refused in a line that names it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::common::{now, Server, BIN};

/// A setting as one of the three places names it: the flag without `--`, and its
/// variable (`None` for a flag that has none, such as `--init`).
type Setting = (String, Option<String>);

pub(crate) fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The text of `## heading` in `doc`, up to the next heading of that level.
pub(crate) fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no \"## {heading}\""));
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The README's settings table, strictly: every row of the first table under
/// "## Configuration" has four cells, the flag and the variable each in backticks (`—`
/// for no variable).
fn table_settings() -> Vec<Setting> {
    let doc = readme();
    let lines: Vec<&str> = section(&doc, "Configuration")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(
        lines.len() > 2 && lines[0].starts_with("| flag | variable | default | meaning |"),
        "the first table under ## Configuration must be | flag | variable | default | \
         meaning |: {lines:?}"
    );
    lines[2..]
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "not four cells: {row}");
            let flag = cells[0]
                .strip_prefix("`--")
                .and_then(|f| f.strip_suffix('`'))
                .unwrap_or_else(|| panic!("the flag must be `--name`: {row}"));
            let var = match cells[1] {
                "—" => None,
                v => Some(
                    v.strip_prefix('`')
                        .and_then(|v| v.strip_suffix('`'))
                        .filter(|v| v.starts_with("MFAD_"))
                        .unwrap_or_else(|| panic!("the variable must be `MFAD_…` or —: {row}"))
                        .to_string(),
                ),
            };
            (flag.to_string(), var)
        })
        .collect()
}

fn mfad(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    // Only the variables this test sets: a setting in the test's own environment would
    // change what is probed.
    for (k, _) in std::env::vars() {
        if k.starts_with("MFAD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The OPTIONS of `mfad --help`: each line that starts with `--name`, with the `MFAD_…`
/// variable that line names, if any (`-h, --help` and `-V, --version` are not settings).
fn help_settings() -> Vec<Setting> {
    let o = mfad(&["--help"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = String::from_utf8(o.stdout).unwrap();
    let options = help
        .split_once("\nOPTIONS")
        .unwrap_or_else(|| panic!("no OPTIONS in --help:\n{help}"))
        .1;
    options
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| {
            let mut words = l.split_whitespace();
            let flag = words.next().unwrap().to_string();
            let var = words.find(|w| w.starts_with("MFAD_")).map(String::from);
            (flag, var)
        })
        .collect()
}

/// The code's list: the `("flag", "MFAD_VAR")` pairs of the `SETTINGS` array, wherever in
/// `src/` it is.
fn code_settings() -> Vec<Setting> {
    fn files(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut sources = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let lists: Vec<&str> = sources
        .iter()
        .filter_map(|s| {
            let at = s.find("const SETTINGS: [(&str, &str);")?;
            let body = &s[at..];
            let open = body.find("= [")? + 3;
            Some(&body[open..open + body[open..].find("\n];")?])
        })
        .collect();
    assert_eq!(
        lists.len(),
        1,
        "expected one `const SETTINGS: [(&str, &str); N] = [...]` in src/"
    );
    lists[0]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| {
            let quoted: Vec<&str> = l.split('"').collect();
            assert!(
                quoted.len() == 5 && quoted[0] == "(" && quoted[2] == ", ",
                "not a (\"flag\", \"MFAD_VAR\") pair: {l}"
            );
            (quoted[1].to_string(), Some(quoted[3].to_string()))
        })
        .collect()
}

fn set(v: &[Setting]) -> BTreeSet<Setting> {
    let s: BTreeSet<Setting> = v.iter().cloned().collect();
    assert_eq!(s.len(), v.len(), "a setting named twice: {v:?}");
    s
}

/// Fails with what only one side names.
fn same(table: &BTreeSet<Setting>, other: &BTreeSet<Setting>, what: &str) {
    let only_table: Vec<_> = table.difference(other).collect();
    let only_other: Vec<_> = other.difference(table).collect();
    assert!(
        only_table.is_empty() && only_other.is_empty(),
        "README's settings table and {what} differ: only in the table {only_table:?}, only in \
         {what} {only_other:?}"
    );
}

#[test]
fn the_settings_table_help_and_code_name_the_same_settings() {
    let table = set(&table_settings());
    let help = set(&help_settings());
    let code = set(&code_settings());

    // Settings with a variable: the same pairs in the table, in --help and in the code,
    // where the code may add hidden ones for the tests (and --help must not show them).
    let with_var = |s: &BTreeSet<Setting>| -> BTreeSet<Setting> {
        s.iter().filter(|(_, v)| v.is_some()).cloned().collect()
    };
    let (hidden, code): (BTreeSet<Setting>, BTreeSet<Setting>) =
        code.into_iter().partition(|(f, _)| f.starts_with("test-"));
    same(&with_var(&table), &with_var(&help), "mfad --help");
    same(&with_var(&table), &code, "the code's SETTINGS");
    assert!(
        hidden.iter().all(|h| !help.contains(h)),
        "{hidden:?} are for the tests"
    );

    // A flag with no variable in the table is one of --help too. Those of --help that are
    // not in the table belong to a command, and the README's command table shows them.
    let commands = section(&readme(), "Command line").to_string();
    for (flag, _) in help.iter().filter(|(_, v)| v.is_none()) {
        let in_table = table.contains(&(flag.clone(), None));
        let word = format!("--{flag}");
        let in_commands = commands.match_indices(&word).any(|(i, _)| {
            !commands[i + word.len()..].starts_with(|c: char| c == '-' || c.is_ascii_alphanumeric())
        });
        assert!(
            in_table || in_commands,
            "--{flag} of mfad --help is neither in the settings table nor in README's \
             command line section"
        );
    }
    for (flag, _) in table.iter().filter(|(_, v)| v.is_none()) {
        assert!(
            help.contains(&(flag.clone(), None)),
            "--{flag} of the table is not in mfad --help"
        );
    }
}

#[test]
fn the_binary_knows_every_setting_of_the_table_and_no_other() {
    // The control: a flag the binary does not know is refused as such.
    let o = mfad(&["--no-such-setting", "1", "--help"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown option --no-such-setting"),
        "{}",
        stderr(&o)
    );

    // Values no setting takes, and a setting that takes any value is proved by
    // behaviour below instead.
    let wrong = ["", "not a value"];
    let mut takes_anything = BTreeSet::new();
    for (flag, var) in table_settings() {
        let shown = format!("--{flag}");
        // With --help last, a known flag either parses its value (and the help is
        // printed) or refuses it in a line that names the flag.
        let args: Vec<&str> = match var {
            Some(_) => vec![&shown, "not a value", "--help"],
            None => vec![&shown, "--help"],
        };
        let o = mfad(&args, &[]);
        let err = stderr(&o);
        assert!(!err.contains("unknown option"), "{shown}: {err}");
        assert!(
            o.status.success() || (o.status.code() == Some(2) && err.contains(&shown)),
            "{shown}: {:?} {err}",
            o.status
        );

        let Some(var) = var else { continue };
        // Variables are read before the arguments: a value the setting cannot take
        // stops even --help, in a line that names the variable.
        let refused = wrong.iter().any(|value| {
            let o = mfad(&["--help"], &[(&var, value)]);
            o.status.code() == Some(2) && stderr(&o).starts_with(&format!("mfad: {var}:"))
        });
        if !refused {
            takes_anything.insert(var);
        }
    }
    assert_eq!(
        takes_anything,
        ["MFAD_JWT_AUDIENCE", "MFAD_JWT_EXTERNAL_ISSUER"]
            .map(String::from)
            .into(),
        "these variables take any value, so only their effect can show the binary reads \
         them: prove it in external_token_settings_are_read_from_the_environment"
    );
}

#[test]
fn external_token_settings_are_read_from_the_environment() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let public = fixtures.join("rs256-public.pem");
    let s = Server::start_with(&[], |cmd| {
        cmd.env("MFAD_JWT_PUBLIC_KEY", &public)
            .env("MFAD_JWT_ALGORITHM", "RS256")
            .env("MFAD_JWT_AUDIENCE", "mfad-api")
            .env("MFAD_JWT_EXTERNAL_ISSUER", "https://issuer.example");
    });
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join("rs256-private.pem")).unwrap())
            .unwrap();
    let token = |iss: &str, aud: &str| {
        let claims = json!({"sub": "ext-1", "iss": iss, "aud": aud, "exp": now() + 600});
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &private).unwrap()
    };
    let status = |t: &str| s.get("/api/v1/me/mfa/status", Some(t)).status;
    assert_eq!(status(&token("https://issuer.example", "mfad-api")), 200);
    assert_eq!(status(&token("https://issuer.example", "other")), 401);
    assert_eq!(status(&token("https://other.example", "mfad-api")), 401);
}
