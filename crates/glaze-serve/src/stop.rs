//! Stop strings over streamed text: text is released as soon as it can no longer be the
//! beginning of a stop string, and nothing from the first stop string on is ever released.

/// Holds back the text that might still turn into a stop string.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
    hit: bool,
}

impl StopFilter {
    /// A filter for these stop strings (none: text passes straight through).
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops,
            ..Default::default()
        }
    }

    /// Takes new text; returns what may be released now, and whether a stop string was found
    /// (then nothing more is released).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.hit {
            return (String::new(), true);
        }
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            self.hit = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&k| s.is_char_boundary(k))
                    .filter(|&k| self.held.ends_with(&s[..k]))
                    .max()
            })
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// The text still held when generation ended without a stop string.
    pub fn finish(&mut self) -> String {
        if self.hit {
            String::new()
        } else {
            std::mem::take(&mut self.held)
        }
    }

    /// Whether a stop string was found.
    pub fn hit(&self) -> bool {
        self.hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut f = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        let mut hit = false;
        for p in pieces {
            let (o, h) = f.push(p);
            out.push(o);
            hit |= h;
        }
        (out, hit, f.finish())
    }

    #[test]
    fn text_passes_until_the_stop_string_even_across_pieces() {
        assert_eq!(
            run(&[], &["a", "b"]),
            (vec!["a".into(), "b".into()], false, String::new())
        );
        // "EN" might begin "END": held until it cannot.
        assert_eq!(
            run(&["END"], &["xyE", "N", "x", "yEND", "more"]),
            (
                vec!["xy".into(), "".into(), "ENx".into(), "y".into(), "".into()],
                true,
                String::new()
            )
        );
        // The earliest of several stop strings wins; a held tail comes out at the end.
        assert_eq!(
            run(&["\n\n", "##"], &["a\n", "b#"]),
            (vec!["a".into(), "\nb".into()], false, "#".into())
        );
        assert_eq!(
            run(&["bc", "ab"], &["xabc"]),
            (vec!["x".into()], true, String::new())
        );
        // Multi-byte stop strings are cut at character boundaries.
        assert_eq!(
            run(&["é!"], &["caf", "é", "!"]),
            (
                vec!["caf".into(), "".into(), "".into()],
                true,
                String::new()
            )
        );
    }
}
