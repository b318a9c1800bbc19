//! `callverify api-keys list` as a table (the `--json` form is the API's `GET /v1/api-keys`
//! answer), and the exit statuses of `api-keys revoke`.

use api::keys::ApiKeyView;

/// `api-keys revoke`: no key has the id.
pub const EXIT_UNKNOWN_KEY: u8 = 3;
/// `api-keys revoke`: the key was revoked already (nothing changed).
pub const EXIT_REVOKED_ALREADY: u8 = 4;

/// The keys as a table: one line a key, `-` for what is not known or not set.
pub fn table(keys: &[ApiKeyView]) -> String {
    let rows: Vec<[String; 7]> = keys
        .iter()
        .map(|k| {
            let mut flags = Vec::new();
            if k.phone_admin {
                flags.push("phone_admin".to_string());
            }
            if let Some(c) = k.confirmation {
                flags.push(format!("confirmation={c}"));
            }
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            [
                k.id.clone(),
                // A name is free text: keep the table one line a key.
                k.name.replace(['\n', '\r', '\t'], " "),
                k.kind.to_string(),
                k.created_at.clone(),
                or_dash(&k.last_used_at),
                or_dash(&k.revoked_at),
                if flags.is_empty() {
                    "-".into()
                } else {
                    flags.join(",")
                },
            ]
        })
        .collect();
    let head = [
        "ID",
        "NAME",
        "KIND",
        "CREATED",
        "LAST USED",
        "REVOKED",
        "FLAGS",
    ];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(head.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_shows_flags() {
        let k = |id: &str, name: &str, admin, used: Option<&str>| ApiKeyView {
            id: id.into(),
            name: name.into(),
            kind: "service",
            created_at: "2026-12-03T10:00:00.000Z".into(),
            revoked_at: None,
            last_used_at: used.map(str::to_string),
            phone_admin: admin,
            confirmation: admin.then_some("spoken_code"),
        };
        let t = table(&[
            k("key_1", "idp\nx", false, None),
            k("key_22", "a", true, Some("2026-12-03T11:00:00.000Z")),
        ]);
        let expected = "\
ID      NAME   KIND     CREATED                   LAST USED                 REVOKED  FLAGS
key_1   idp x  service  2026-12-03T10:00:00.000Z  -                         -        -
key_22  a      service  2026-12-03T10:00:00.000Z  2026-12-03T11:00:00.000Z  -        \
phone_admin,confirmation=spoken_code
";
        assert_eq!(t, expected);
    }
}
