//! Privacy under faults: nothing the fleet logged during the chaos run — errors, retries,
//! reconnects and panics included — names a person or holds a secret. Every log file of every
//! worker is read in full and searched for each phone number and email address the run used (in
//! any spelling a log line could take: `+` or `%2B`, with or without the country code, `@` or
//! `%40`, any case) and for the run's tokens (API keys, the Twilio auth token).

use std::collections::HashSet;
use std::path::PathBuf;

/// One finding: which file, what kind, and the line (with the personal value masked).
#[derive(Debug, Clone)]
pub struct Hit {
    pub file: String,
    pub what: &'static str,
    pub line: String,
}

pub struct Secrets {
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub tokens: Vec<String>,
}

/// Searches every file; returns the hits (at most 20 per file) and the bytes read.
pub fn scan(files: &[PathBuf], secrets: &Secrets) -> (Vec<Hit>, u64) {
    // A phone is found as a run of digits: the full number, or the national part.
    let digits: HashSet<String> = secrets
        .phones
        .iter()
        .flat_map(|p| {
            let d: String = p.chars().filter(char::is_ascii_digit).collect();
            let national = d
                .get(d.len().saturating_sub(10)..)
                .unwrap_or("")
                .to_string();
            [d, national]
        })
        .collect();
    let emails: HashSet<String> = secrets.emails.iter().map(|e| e.to_lowercase()).collect();
    let mut hits = Vec::new();
    let mut bytes = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        bytes += text.len() as u64;
        let name = file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut found = 0;
        for line in text.lines() {
            if found >= 20 {
                break;
            }
            let what = if digit_runs(line).any(|run| digits.contains(run)) {
                Some("phone number")
            } else if email_candidates(line).any(|e| emails.contains(&e)) {
                Some("email address")
            } else if secrets.tokens.iter().any(|t| line.contains(t.as_str())) {
                Some("token")
            } else {
                None
            };
            if let Some(what) = what {
                found += 1;
                hits.push(Hit {
                    file: name.clone(),
                    what,
                    line: mask(line),
                });
            }
        }
    }
    (hits, bytes)
}

/// Maximal runs of ASCII digits of 10 or more.
fn digit_runs(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= 10)
}

/// Every `local@domain` around an `@` or a `%40`, lowercased.
fn email_candidates(line: &str) -> impl Iterator<Item = String> + '_ {
    let lower = line.to_lowercase().replace("%40", "@");
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    let found: Vec<String> = lower
        .match_indices('@')
        .map(|(at, _)| {
            let local: String = lower[..at]
                .chars()
                .rev()
                .take_while(|c| part(*c))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let domain: String = lower[at + 1..].chars().take_while(|c| part(*c)).collect();
            format!("{local}@{}", domain.trim_end_matches('.'))
        })
        .collect();
    found.into_iter()
}

/// The line with every digit and every character around an `@` replaced, so a report never
/// repeats what it found.
fn mask(line: &str) -> String {
    let short: String = line.chars().take(240).collect();
    short
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect::<String>()
        .replace('@', "<at>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_spelling_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("chaos-privacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("w.log");
        std::fs::write(
            &file,
            "ok id=550e8400-e29b-41d4-a716-446655440000 sid=SM0123456789\n\
             to=%2B14155551000\n\
             national 4155551001 here\n\
             mail Chaos.Person3%40Example.com\n\
             key cfk_secret\n\
             clean 14155559999\n",
        )
        .expect("write");
        let secrets = Secrets {
            phones: vec!["+14155551000".into(), "+14155551001".into()],
            emails: vec!["chaos.person3@example.com".into()],
            tokens: vec!["cfk_secret".into()],
        };
        let (hits, _) = scan(&[file], &secrets);
        let kinds: Vec<&str> = hits.iter().map(|h| h.what).collect();
        assert_eq!(
            kinds,
            ["phone number", "phone number", "email address", "token"]
        );
        assert!(hits.iter().all(|h| !h.line.contains("1000")));
        let _ = std::fs::remove_dir_all(dir);
    }
}
