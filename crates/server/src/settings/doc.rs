//! The key table of docs/configuration.md, generated from [`Key`]. The doc holds it between two
//! markers; a test fails when the doc's copy differs, and with `UPDATE_DOCS=1` the same test writes the
//! table into the doc instead:
//!
//! ```text
//! UPDATE_DOCS=1 cargo test -p cogvisor-server settings::doc
//! ```

use super::Key;

/// The line before the table in docs/configuration.md.
pub const BEGIN: &str = "<!-- key table: generated from crates/server/src/settings/table.rs; \
                         regenerate with `UPDATE_DOCS=1 cargo test -p cogvisor-server settings::doc` -->";
/// The line after it.
pub const END: &str = "<!-- end of key table -->";

/// The markdown table of every key.
pub fn table() -> String {
    let mut out =
        String::from("| key | default | flag | environment | meaning |\n|---|---|---|---|---|\n");
    for &k in Key::ALL {
        let default = match k.cog_sources() {
            Some(cog) => format!("`{cog}`, else `{}`", k.default_text()),
            None => format!("`{}`", k.default_text()),
        };
        out.push_str(&format!(
            "| `{}` | {default} | `--{}` | `{}` | {}. Allowed: {}. |\n",
            k.name(),
            k.flag(),
            k.env(),
            k.help(),
            k.allowed(),
        ));
    }
    out
}

/// `doc` with the text between the markers replaced by [`table`]; `None` when a marker is missing.
pub fn with_table(doc: &str) -> Option<String> {
    let start = doc.find(BEGIN)? + BEGIN.len();
    let end = start + doc[start..].find(END)?;
    Some(format!("{}\n{}{}", &doc[..start], table(), &doc[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_doc_holds_the_generated_key_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
        let expected = with_table(&doc)
            .unwrap_or_else(|| panic!("docs/configuration.md lacks the markers\n{BEGIN}\n{END}"));
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &expected).expect("write docs/configuration.md");
            return;
        }
        assert!(
            doc == expected,
            "docs/configuration.md's key table is not the one the code generates; run\n  \
             UPDATE_DOCS=1 cargo test -p cogvisor-server settings::doc\nto rewrite it. The table:\n{}",
            table()
        );
    }

    #[test]
    fn every_row_names_the_key_its_flag_and_variable() {
        let t = table();
        assert_eq!(t.lines().count(), Key::ALL.len() + 2);
        for &k in Key::ALL {
            let row = t
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", k.name())))
                .unwrap_or_else(|| panic!("no row for {}", k.name()));
            assert!(row.contains(&format!("`--{}`", k.flag())), "{row}");
            assert!(row.contains(&format!("`{}`", k.env())), "{row}");
        }
    }

    #[test]
    fn a_doc_without_markers_is_refused() {
        assert!(with_table("no table here").is_none());
        let doc = format!("before\n{BEGIN}\nstale\n{END}\nafter\n");
        let new = with_table(&doc).expect("markers");
        assert!(new.starts_with("before\n") && new.ends_with(&format!("{END}\nafter\n")));
        assert!(!new.contains("stale") && new.contains("| `concurrency` |"));
    }
}
