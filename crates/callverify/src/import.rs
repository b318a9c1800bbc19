//! `callverify import-phones`: users' phones an administrator vouches for, from a CSV file
//! (`user_id,number,role[,language]`), each row checked (the user id, the number in E.164
//! and against the policy, the role, the language) and the good ones verified at once
//! (`store::Store::import_phone`). Refused rows are told one per line, numbers masked.
//! Bounded: [`MAX_ROWS`] rows, lines of at most [`MAX_LINE`] bytes.

use std::io::BufRead;

use store::{Imported, PhoneNumber, PhoneRole};

/// Rows a file may hold at most.
pub const MAX_ROWS: usize = 100_000;

/// Bytes a line may hold at most (without its line break).
pub const MAX_LINE: usize = 1024;

/// Characters a user id may hold at most (EAM users are `entra:{tid}:{oid}`).
const MAX_USER_ID: usize = 160;

/// A row that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Its line in the file (1-based).
    pub line: usize,
    /// The user, as the store keeps users.
    pub user_id: String,
    /// The number.
    pub phone: PhoneNumber,
    /// Primary or fallback.
    pub role: PhoneRole,
    /// The prompts' language code.
    pub language: String,
}

/// A row refused, and why (the number masked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedRow {
    /// Its line in the file (1-based).
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for RefusedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A file that cannot be imported at all (nothing of it is).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    /// Its first line is not the header.
    #[error(
        "its first line must be the header user_id,number,role or user_id,number,role,language"
    )]
    Header,
    /// It has more rows than [`MAX_ROWS`].
    #[error("it has more than {MAX_ROWS} rows: split it into files of at most that many")]
    TooManyRows,
}

/// What the rows are checked against.
pub struct Checks<'a> {
    /// The configured policy (countries and types of number that may be called).
    pub policy: &'a api::Policy,
    /// The language of a row that names none.
    pub default_language: media::Language,
}

/// The file's rows: those that pass every check, and those refused, in order.
pub fn read_rows(
    mut input: impl BufRead,
    checks: &Checks,
) -> Result<(Vec<Row>, Vec<RefusedRow>), FileError> {
    let mut header = true;
    let (mut rows, mut refused) = (Vec::new(), Vec::new());
    let mut line_no = 0;
    while let Some(line) = next_line(&mut input)? {
        line_no += 1;
        let text = match line {
            Line::Text(t) => t,
            Line::TooLong if header => return Err(FileError::Header),
            Line::NotUtf8 if header => return Err(FileError::Header),
            Line::TooLong => {
                refused.push(refuse(line_no, format!("longer than {MAX_LINE} bytes")));
                continue;
            }
            Line::NotUtf8 => {
                refused.push(refuse(line_no, "not UTF-8 text".into()));
                continue;
            }
        };
        if header {
            check_header(&text)?;
            header = false;
            continue;
        }
        if text.trim().is_empty() {
            continue;
        }
        if rows.len() + refused.len() >= MAX_ROWS {
            return Err(FileError::TooManyRows);
        }
        match check_row(&text, line_no, checks) {
            Ok(row) => rows.push(row),
            Err(reason) => refused.push(refuse(line_no, reason)),
        }
    }
    if header {
        return Err(FileError::Header);
    }
    Ok((rows, refused))
}

fn refuse(line: usize, reason: String) -> RefusedRow {
    RefusedRow { line, reason }
}

/// One line as read.
enum Line {
    /// Its text, without the line break.
    Text(String),
    /// Longer than [`MAX_LINE`] (the rest of it was read and dropped).
    TooLong,
    /// Not UTF-8.
    NotUtf8,
}

/// The next line, reading at most [`MAX_LINE`] bytes of it into memory; `None` at the end.
fn next_line(input: &mut impl BufRead) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let limit = MAX_LINE as u64 + 2;
    let n = std::io::Read::take(&mut *input, limit).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n as u64 == limit {
        skip_rest_of_line(input)?;
        return Ok(Some(Line::TooLong));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if buf.len() > MAX_LINE {
        return Ok(Some(Line::TooLong));
    }
    Ok(Some(match String::from_utf8(buf) {
        Ok(t) => Line::Text(t),
        Err(_) => Line::NotUtf8,
    }))
}

/// Reads and drops what is left of a line, a buffer at a time.
fn skip_rest_of_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
}

/// The header, with or without the language column (a byte order mark allowed before it).
fn check_header(text: &str) -> Result<(), FileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let names: Vec<String> = text
        .split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    let ok = names == ["user_id", "number", "role"]
        || names == ["user_id", "number", "role", "language"];
    ok.then_some(()).ok_or(FileError::Header)
}

/// A row checked, or why it is refused (its number masked).
fn check_row(text: &str, line: usize, checks: &Checks) -> Result<Row, String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let (user, number, role, language) = match fields[..] {
        [u, n, r] => (u, n, r, ""),
        [u, n, r, l] => (u, n, r, l),
        _ => {
            return Err(format!(
                "{} fields: expected user_id,number,role[,language]",
                fields.len()
            ));
        }
    };
    check_user_id(user)?;
    let phone = PhoneNumber::parse(number).map_err(|e| format!("the number: {e}"))?;
    checks
        .policy
        .check_number(&phone)
        .map_err(|r| r.detail.clone())?;
    let role = PhoneRole::from_name(role)
        .ok_or_else(|| format!("role {role:?}: expected primary or fallback"))?;
    let language = match language {
        "" => checks.default_language,
        l => l.parse::<media::Language>()?,
    };
    Ok(Row {
        line,
        user_id: user.to_string(),
        phone,
        role,
        language: language.code().to_string(),
    })
}

/// A user id as the store keeps them: 1 to 160 of A-Z a-z 0-9 . _ @ + - : (not a /demo
/// page's user).
fn check_user_id(u: &str) -> Result<(), String> {
    if u.starts_with("demo:") {
        return Err("user ids starting with demo: belong to the /demo page".into());
    }
    let ok = (1..=MAX_USER_ID).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the user id must be 1 to {MAX_USER_ID} of A-Z a-z 0-9 . _ @ + - :"
        ))
    }
}

/// How many rows each import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Phones added or replacing another (or that would be, in a dry run).
    pub imported: u64,
    /// Of those, how many replaced the user's phone in that role.
    pub replaced: u64,
    /// Rows whose phone was verified in that role already (counted in `imported`).
    pub unchanged: u64,
}

/// Imports the rows into `store`; `dry_run`: only counts them as imported (nothing written).
pub async fn import(store: &store::Store, rows: &[Row], dry_run: bool) -> store::Result<Counts> {
    let mut counts = Counts::default();
    for row in rows {
        counts.imported += 1;
        if dry_run {
            continue;
        }
        let done = store
            .import_phone(
                &row.user_id,
                &row.phone,
                row.role,
                &row.language,
                store::now_ms(),
            )
            .await?;
        match done {
            Imported::Added => {}
            Imported::Replaced => counts.replaced += 1,
            Imported::Unchanged => counts.unchanged += 1,
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> api::Policy {
        api::Policy {
            allowed_countries: api::Countries::Only(vec!["JP".into()]),
            ..api::Policy::default()
        }
    }

    fn read(text: &[u8]) -> Result<(Vec<Row>, Vec<RefusedRow>), FileError> {
        let policy = policy();
        let checks = Checks {
            policy: &policy,
            default_language: media::Language::Ja,
        };
        read_rows(text, &checks)
    }

    #[test]
    fn a_line_longer_than_the_cap_is_refused_and_the_next_one_read() {
        let long = format!("u-{}", "x".repeat(3000));
        let text = format!(
            "user_id,number,role\n{long},+819012345678,primary\nu-2,+819012345679,primary\n"
        );
        let (rows, refused) = read(text.as_bytes()).unwrap();
        assert_eq!(refused, vec![refuse(2, "longer than 1024 bytes".into())]);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].line, rows[0].user_id.as_str()), (3, "u-2"));
        // Exactly at the cap, with a CRLF: read.
        let user = format!(
            "u-{}",
            "y".repeat(MAX_LINE - 2 - ",+819012345678,primary".len())
        );
        let line = format!("{user},+819012345678,primary");
        assert_eq!(line.len(), MAX_LINE);
        let (_, refused) = read(format!("user_id,number,role\r\n{line}\r\n").as_bytes()).unwrap();
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0]
                .reason
                .starts_with("the user id must be 1 to 160")
        );
    }

    #[test]
    fn the_header_decides_whether_the_file_is_read() {
        for bad in [
            &b""[..],
            b"\n",
            b"number,user_id,role\n",
            b"user_id,number\n",
            b"\xff\xfe\n",
        ] {
            assert!(matches!(read(bad), Err(FileError::Header)), "{bad:?}");
        }
        let (rows, _) = read("\u{feff}User_Id, Number, Role, Language\n".as_bytes()).unwrap();
        assert!(rows.is_empty());
        // A row that is not UTF-8 is refused, not the file.
        let (rows, refused) = read(b"user_id,number,role\n\xff,+819012345678,primary\n").unwrap();
        assert!(rows.is_empty());
        assert_eq!(refused, vec![refuse(2, "not UTF-8 text".into())]);
    }

    #[test]
    fn rows_beyond_the_cap_refuse_the_file() {
        let mut text = String::from("user_id,number,role\n");
        for _ in 0..=MAX_ROWS {
            text.push_str("u,+1,primary\n");
        }
        assert!(matches!(read(text.as_bytes()), Err(FileError::TooManyRows)));
    }

    #[test]
    fn each_check_refuses_its_row_masking_the_number() {
        let text = "user_id,number,role,language\n\
            entra:14c2f153-90a7-4689-9db7-9543bf084dad:0f5d,+819012345678,primary,\n\
            demo:x,+819012345678,primary\n\
            bad user,+819012345678,primary\n\
            u,819012345678,primary\n\
            u,+442079460958,primary\n\
            u,+819012345678,secondary\n\
            u,+819012345678,fallback,xx\n\
            u,+819012345678\n\
            u/x,+819012345678,primary\n\
            u,+819012345678,fallback,en\n";
        let (rows, refused) = read(text.as_bytes()).unwrap();
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 11]);
        assert_eq!(
            (rows[0].language.as_str(), rows[1].language.as_str()),
            ("ja", "en")
        );
        assert_eq!(rows[1].role, PhoneRole::Fallback);
        let said: Vec<String> = refused.iter().map(ToString::to_string).collect();
        assert!(
            said[0].starts_with("line 3: user ids starting with demo:"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("line 4: the user id must be"),
            "{said:?}"
        );
        assert!(said[2].starts_with("line 5: the number: "), "{said:?}");
        assert_eq!(
            said[3],
            "line 6: +44 ** **** **58 is in GB; this gateway calls JP"
        );
        assert_eq!(
            said[4],
            "line 7: role \"secondary\": expected primary or fallback"
        );
        assert!(
            said[5].starts_with("line 8: unknown language \"xx\""),
            "{said:?}"
        );
        assert!(said[6].starts_with("line 9: 2 fields"), "{said:?}");
        assert!(said[7].starts_with("line 10: the user id"), "{said:?}");
        assert!(!said.join("\n").contains("2079460958"), "{said:?}");
    }
}
