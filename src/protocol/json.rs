//! Bounds on JSON that cordon forwards without parsing all of it: the
//! routing fields are read and the rest is passed on as raw text, so nothing
//! else would notice a body nested a hundred thousand levels deep until a
//! provider's parser (or a translation's) does.

/// Whether `json` nests arrays and objects deeper than `max` levels. Brackets
/// inside strings do not count. The text need not be valid JSON; this only
/// bounds nesting.
///
/// Nesting can be no deeper than the number of opening brackets, so a body
/// with at most `max` of them (most requests: counted by a vectorised
/// search) is not scanned further.
pub fn deeper_than(json: &[u8], max: usize) -> bool {
    if memchr::memchr2_iter(b'[', b'{', json).nth(max).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The nesting depth of a parsed value, the reference.
    fn depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i32>().prop_map(serde_json::Value::from),
            // Strings full of brackets, quotes and backslashes.
            "[\\[\\]{}\"\\\\a ]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(12, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[\\[{\"a]{0,3}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_the_parsed_depth(v in value(), max in 0usize..14) {
            let text = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(deeper_than(&text, max), depth(&v) > max);
        }
    }

    #[test]
    fn a_hundred_thousand_levels_in_an_unknown_field_are_caught() {
        let mut body = br#"{"model":"m","messages":[],"x":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', 100_000));
        body.extend(std::iter::repeat_n(b']', 100_000));
        body.push(b'}');
        assert!(deeper_than(&body, 64));
        let flat = br#"{"model":"m","messages":[{"role":"user","content":"[[[[{{{{"}]}"#;
        assert!(!deeper_than(flat, 3), "brackets in strings do not count");
    }
}
