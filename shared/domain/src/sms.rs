//! SMS body encoding and segment counting.
//!
//! Twilio bills, and carriers deliver, an SMS per *segment*, and the segment size depends on the
//! encoding the whole body needs. The sender uses [`analyse`] to record the segment count on every
//! message and to warn template authors when one stray character (a smart quote, an emoji) turns a
//! one-segment GSM-7 text into a three-segment UCS-2 one. The rules and the test vectors (G1–G16)
//! come from Twilio's official segment calculator; see `docs/contract.md`, "SMS encoding and
//! segments".
//!
//! Decisions taken here:
//! - **Whole-character packing.** A concatenated segment never ends in the middle of a GSM-7
//!   escape sequence (ESC + code, 2 septets) or of a UTF-16 surrogate pair (an emoji outside the
//!   BMP, 2 units): the character moves whole to the next segment and the slot it leaves stays
//!   empty, as Twilio's calculator does. Packing is per Unicode scalar value, not per grapheme, so
//!   a multi-code-point grapheme (a flag, a ZWJ emoji) may still straddle two segments; this only
//!   changes the count when such a grapheme sits exactly on a boundary.
//! - **Empty body.** 0 units, 1 segment, GSM-7 (the calculator's answer, and what one sent
//!   message costs). Twilio refuses an empty `Body`, so the sender must reject it before this
//!   count matters.

use serde::Serialize;

/// Septets in a single, unconcatenated GSM-7 segment.
pub const GSM7_SINGLE_SEGMENT: usize = 160;
/// Septets per segment once a message is concatenated (6-byte user data header).
pub const GSM7_CONCAT_SEGMENT: usize = 153;
/// UTF-16 code units in a single UCS-2 segment.
pub const UCS2_SINGLE_SEGMENT: usize = 70;
/// UTF-16 code units per concatenated UCS-2 segment.
pub const UCS2_CONCAT_SEGMENT: usize = 67;

/// The encoding a body needs: GSM-7 when every character is in the GSM 03.38 basic or extension
/// table, UCS-2 otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet (with its extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2, counted in UTF-16 code units.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name as Twilio's calculator writes it: `GSM-7` or `UCS-2`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units that fit in a message sent as one segment.
    pub const fn single_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE_SEGMENT,
            Encoding::Ucs2 => UCS2_SINGLE_SEGMENT,
        }
    }

    /// Units that fit in each segment of a concatenated message.
    pub const fn concat_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_CONCAT_SEGMENT,
            Encoding::Ucs2 => UCS2_CONCAT_SEGMENT,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a body costs to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SmsAnalysis {
    /// The encoding the whole body needs.
    pub encoding: Encoding,
    /// Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Segments the body is sent as (at least 1).
    pub segments: usize,
}

/// Septets `c` costs in GSM-7: 1 for the basic set, 2 for the extension table (ESC + code), and
/// `None` when GSM-7 cannot carry it at all.
pub fn gsm7_septets(c: char) -> Option<usize> {
    match c {
        '\n' | '\r' | ' '..='_' | 'a'..='z' => match c {
            '[' | '\\' | ']' | '^' => Some(2),
            // The ASCII printable range minus the four extension characters above and the
            // backtick (not in GSM-7; `'a'..='z'` starts after it).
            _ => Some(1),
        },
        '{' | '|' | '}' | '~' | '€' | '\u{0C}' => Some(2),
        '¡' | '£' | '¤' | '¥' | '§' | '¿' | 'Ä' | 'Å' | 'Æ' | 'Ç' | 'É' | 'Ñ' | 'Ö' | 'Ø' | 'Ü'
        | 'ß' | 'à' | 'ä' | 'å' | 'æ' | 'è' | 'é' | 'ì' | 'ñ' | 'ò' | 'ö' | 'ø' | 'ù' | 'ü' => {
            Some(1)
        }
        'Γ' | 'Δ' | 'Θ' | 'Λ' | 'Ξ' | 'Π' | 'Σ' | 'Φ' | 'Ψ' | 'Ω' => Some(1),
        _ => None,
    }
}

/// The characters of `body` that GSM-7 cannot carry (each one forces UCS-2), in order, without
/// repeats. Useful to tell a template author what to replace.
pub fn non_gsm7_chars(body: &str) -> Vec<char> {
    let mut found = Vec::new();
    for c in body.chars().filter(|c| gsm7_septets(*c).is_none()) {
        if !found.contains(&c) {
            found.push(c);
        }
    }
    found
}

/// Encoding, unit count and segment count of an SMS body.
pub fn analyse(body: &str) -> SmsAnalysis {
    let gsm: Option<Vec<usize>> = body.chars().map(gsm7_septets).collect();
    let (encoding, costs) = match gsm {
        Some(costs) => (Encoding::Gsm7, costs),
        None => (Encoding::Ucs2, body.chars().map(char::len_utf16).collect()),
    };
    let units = costs.iter().sum();
    let segments = if units <= encoding.single_segment_units() {
        1
    } else {
        pack(&costs, encoding.concat_segment_units())
    };
    SmsAnalysis {
        encoding,
        units,
        segments,
    }
}

/// Greedy packing of whole characters into segments of `capacity` units each.
fn pack(costs: &[usize], capacity: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for &cost in costs {
        if used + cost > capacity {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repeating `1234567890` string, `len` characters long.
    fn digits(len: usize) -> String {
        "1234567890".chars().cycle().take(len).collect()
    }

    /// The digit string starting at `2`, as the calculator's UCS-2 vectors use.
    fn digits_from_2(len: usize) -> String {
        "2345678901".chars().cycle().take(len).collect()
    }

    fn check(body: &str, encoding: Encoding, units: usize, segments: usize) {
        let got = analyse(body);
        assert_eq!(
            got,
            SmsAnalysis {
                encoding,
                units,
                segments
            },
            "body {body:?}"
        );
    }

    #[test]
    fn gsm7_digit_vectors_g1_to_g3() {
        check(&digits(160), Encoding::Gsm7, 160, 1);
        check(&digits(161), Encoding::Gsm7, 161, 2);
        check(&digits(307), Encoding::Gsm7, 307, 3);
        check(&digits(306), Encoding::Gsm7, 306, 2);
    }

    #[test]
    fn ucs2_emoji_vectors_g4_to_g10() {
        check(&format!("😜{}", digits_from_2(68)), Encoding::Ucs2, 70, 1);
        check(&format!("😜{}", digits_from_2(69)), Encoding::Ucs2, 71, 2);
        check(&format!("😜{}", digits_from_2(133)), Encoding::Ucs2, 135, 3);
        check(&format!("🇮🇹{}", digits_from_2(66)), Encoding::Ucs2, 70, 1);
        check(&format!("🇮🇹{}", digits_from_2(67)), Encoding::Ucs2, 71, 2);
        let rainbow = "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}";
        check(
            &format!("{rainbow}{}", digits_from_2(64)),
            Encoding::Ucs2,
            70,
            1,
        );
        check(
            &format!("{rainbow}{}", digits_from_2(65)),
            Encoding::Ucs2,
            71,
            2,
        );
    }

    #[test]
    fn escape_vectors_g11_g12() {
        for esc in ['^', '€', '{', '}', '[', ']', '~', '\\', '|'] {
            check(&format!("{esc}{}", digits(158)), Encoding::Gsm7, 160, 1);
            check(&format!("{esc}{}", digits(159)), Encoding::Gsm7, 161, 2);
        }
        check(&format!("\u{0C}{}", digits(158)), Encoding::Gsm7, 160, 1);
    }

    #[test]
    fn accented_vectors_g13_g14() {
        for c in ['Á', 'Ú', 'ú', 'ç', 'í', 'Í', 'ó', 'Ó'] {
            check(&c.to_string().repeat(70), Encoding::Ucs2, 70, 1);
            check(&c.to_string().repeat(71), Encoding::Ucs2, 71, 2);
        }
        // Upper-case Ç is in GSM-7, lower-case ç is not.
        check(&"Ç".repeat(160), Encoding::Gsm7, 160, 1);
    }

    #[test]
    fn escape_chars_cost_one_unit_in_ucs2_g15_g16() {
        check(&format!("😀{}", "]".repeat(68)), Encoding::Ucs2, 70, 1);
        check(&format!("😀{}", "]".repeat(69)), Encoding::Ucs2, 71, 2);
    }

    #[test]
    fn escape_sequence_is_not_split_at_the_153_boundary() {
        // 152 + 2 + 152 = 306 septets: two segments by arithmetic, but `{` cannot start in the
        // last septet of segment one, so it moves and the tail spills into a third segment.
        check(
            &format!("{}{{{}", digits(152), digits(152)),
            Encoding::Gsm7,
            306,
            3,
        );
        // The escape fits exactly when it ends on the boundary.
        check(
            &format!("{}{{{}", digits(151), digits(153)),
            Encoding::Gsm7,
            306,
            2,
        );
    }

    #[test]
    fn surrogate_pair_is_not_split_at_the_67_boundary() {
        let body = format!("{}😀{}", "ç".repeat(66), "ç".repeat(66));
        check(&body, Encoding::Ucs2, 134, 3);
        let body = format!("{}😀{}", "ç".repeat(65), "ç".repeat(67));
        check(&body, Encoding::Ucs2, 134, 2);
    }

    #[test]
    fn empty_body_is_one_gsm7_segment_of_zero_units() {
        check("", Encoding::Gsm7, 0, 1);
    }

    #[test]
    fn gsm7_basic_set_has_127_one_septet_code_points() {
        let basic = (0..=0x3FF_u32)
            .filter_map(char::from_u32)
            .filter(|c| gsm7_septets(*c) == Some(1))
            .count();
        assert_eq!(basic, 127);
        let extension: Vec<char> = (0..=0x20FF_u32)
            .filter_map(char::from_u32)
            .filter(|c| gsm7_septets(*c) == Some(2))
            .collect();
        assert_eq!(
            extension,
            vec!['\u{0C}', '[', '\\', ']', '^', '{', '|', '}', '~', '€']
        );
        assert_eq!(gsm7_septets('`'), None);
        assert_eq!(gsm7_septets('’'), None);
    }

    #[test]
    fn non_gsm7_chars_lists_each_offender_once() {
        assert_eq!(non_gsm7_chars("It’s ok’ 😀 ç"), vec!['’', '😀', 'ç']);
        assert!(non_gsm7_chars("Plain {text} €5").is_empty());
    }
}
