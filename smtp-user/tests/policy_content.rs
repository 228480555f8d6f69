//! The streaming body automata against one-shot matching: for random
//! keyword sets, regexes and haystacks, cut into random chunks, the set of
//! patterns the stream reports equals what the `regex` crate finds in the
//! whole haystack at once (start-state skipping, state carried across
//! chunks, matches at the very end).

use std::collections::BTreeSet;

use proptest::prelude::*;
use smtp_user::policy::content::{
    KeywordSpec, Keywords, Matchers, Owner, Regexes, ScanState, Source,
};

const OWNER: Owner = Owner { rule: 0, cond: 0 };

/// The patterns the streaming matchers report for `hay` cut at `cuts`.
fn streamed(m: &Matchers, hay: &[u8], cuts: &[usize]) -> BTreeSet<(u8, usize)> {
    let mut st = ScanState::default();
    let mut seen = BTreeSet::new();
    let mut from = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (hay.len() + 1)).collect();
    points.sort_unstable();
    points.push(hay.len());
    for to in points {
        let chunk = hay.get(from..to).unwrap_or(&[]);
        m.scan(&mut st, chunk, |s, p| {
            seen.insert((matches!(s, Source::Regex) as u8, p));
        });
        from = from.max(to);
    }
    m.finish(&mut st, |s, p| {
        seen.insert((matches!(s, Source::Regex) as u8, p));
    });
    seen
}

fn matchers(keywords: &[String], regexes: &[String]) -> Matchers {
    let kw = (!keywords.is_empty()).then(|| {
        Keywords::build(
            keywords
                .iter()
                .map(|k| KeywordSpec {
                    text: k.clone(),
                    nocase: false,
                    owner: OWNER,
                })
                .collect(),
        )
        .expect("keywords")
    });
    let rx = (!regexes.is_empty()).then(|| {
        Regexes::build(regexes.iter().map(|r| (r.clone(), OWNER)).collect()).expect("regexes")
    });
    Matchers {
        keywords: kw,
        regexes: rx,
    }
}

/// What one-shot matching finds in the whole haystack.
fn oneshot(keywords: &[String], regexes: &[String], hay: &[u8]) -> BTreeSet<(u8, usize)> {
    let mut out = BTreeSet::new();
    for (i, k) in keywords.iter().enumerate() {
        if hay.windows(k.len()).any(|w| w == k.as_bytes()) {
            out.insert((0, i));
        }
    }
    for (i, r) in regexes.iter().enumerate() {
        if regex::bytes::Regex::new(r).expect("regex").is_match(hay) {
            out.insert((1, i));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_one_shot(
        keywords in proptest::collection::vec("[abxyz]{1,4}", 0..5),
        regexes in proptest::collection::vec(
            prop_oneof![
                Just("ab+x".to_string()),
                Just("x[ab]{2}".to_string()),
                Just("(?i)BA".to_string()),
                Just("a.*x".to_string()),
                Just("b{3}".to_string()),
            ],
            0..3,
        ),
        hay in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'x'), Just(b'y'), Just(b'z'), Just(b' '), Just(b'\n')], 0..64),
        cuts in proptest::collection::vec(0usize..100, 0..6),
    ) {
        prop_assume!(!keywords.is_empty() || !regexes.is_empty());
        let m = matchers(&keywords, &regexes);
        prop_assert_eq!(streamed(&m, &hay, &cuts), oneshot(&keywords, &regexes, &hay));
    }
}

#[test]
fn rare_first_bytes_are_skipped_exactly() {
    // Few bytes leave the start states: the memchr path.
    let keywords = vec!["FORBIDDEN-KEYWORD".to_string()];
    let regexes = vec!["Zq[0-9]{3}".to_string()];
    let m = matchers(&keywords, &regexes);
    let mut hay = vec![b'.'; 10_000];
    hay.extend_from_slice(b"FORBIDDEN-KEY");
    hay.extend_from_slice(b"WORD and Zq12");
    hay.extend_from_slice(b"3");
    for cut in [0, 9_999, 10_005, 10_013, 10_020, 10_025] {
        let got = streamed(&m, &hay, &[cut]);
        assert_eq!(got, oneshot(&keywords, &regexes, &hay), "cut {cut}");
        assert_eq!(got.len(), 2);
    }
}
