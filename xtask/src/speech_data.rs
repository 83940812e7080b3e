//! `cargo xtask speech-data [COUNT]`: a transcribed English speech corpus rendered by Debian's
//! `espeak-ng` into `$GLAZE_CACHE/speech-synth/` (WAVs + `manifest.jsonl`), never committed.
//!
//! Sentences come from a seeded grammar (statements, questions, requests, numbers, several
//! tenses) over a few hundred common words, so every run with the same count gives the same
//! corpus. Each sentence is spoken once, by one of eight voice variants, at a speed of 130–200
//! words per minute and a pitch of 25–75, all drawn from the seed. Every 20th sentence is held
//! out for testing and the one after it for validation; a test sentence never occurs in
//! training.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::fetch::cache_dir;

const VOICES: &[&str] = &[
    "en-us",
    "en-us+f3",
    "en-gb",
    "en-gb+f2",
    "en-gb-scotland",
    "en-029+m3",
    "en-us-nyc+f4",
    "en-gb-x-rp+m2",
];

const NOUNS: &[&str] = &[
    "country",
    "city",
    "house",
    "garden",
    "river",
    "mountain",
    "teacher",
    "doctor",
    "farmer",
    "child",
    "friend",
    "family",
    "people",
    "world",
    "nation",
    "question",
    "answer",
    "story",
    "letter",
    "book",
    "window",
    "door",
    "table",
    "chair",
    "road",
    "bridge",
    "train",
    "car",
    "ship",
    "plane",
    "market",
    "school",
    "church",
    "office",
    "company",
    "government",
    "army",
    "river bank",
    "morning",
    "evening",
    "night",
    "summer",
    "winter",
    "year",
    "week",
    "day",
    "hour",
    "minute",
    "money",
    "water",
    "fire",
    "light",
    "music",
    "voice",
    "song",
    "picture",
    "idea",
    "plan",
    "problem",
    "reason",
    "power",
    "freedom",
    "peace",
    "history",
    "future",
    "president",
    "citizen",
    "neighbour",
    "student",
    "worker",
    "captain",
    "king",
    "queen",
    "horse",
    "dog",
    "cat",
    "bird",
    "fish",
    "tree",
    "flower",
    "field",
    "forest",
    "sea",
    "sky",
    "sun",
    "moon",
    "star",
    "island",
    "village",
    "street",
    "kitchen",
    "bread",
    "coffee",
    "tea",
    "apple",
    "dinner",
    "party",
    "game",
    "team",
    "job",
    "hand",
    "heart",
    "head",
    "eye",
    "name",
];

const ADJECTIVES: &[&str] = &[
    "old",
    "new",
    "young",
    "small",
    "large",
    "quiet",
    "loud",
    "happy",
    "tired",
    "strong",
    "brave",
    "free",
    "early",
    "late",
    "bright",
    "dark",
    "warm",
    "cold",
    "green",
    "red",
    "blue",
    "white",
    "long",
    "short",
    "good",
    "great",
    "simple",
    "important",
    "difficult",
    "beautiful",
    "careful",
    "honest",
    "busy",
    "empty",
    "full",
    "fine",
    "fair",
    "true",
    "whole",
    "final",
];

const VERBS: &[(&str, &str, &str)] = &[
    ("see", "saw", "sees"),
    ("help", "helped", "helps"),
    ("find", "found", "finds"),
    ("build", "built", "builds"),
    ("open", "opened", "opens"),
    ("close", "closed", "closes"),
    ("carry", "carried", "carries"),
    ("visit", "visited", "visits"),
    ("watch", "watched", "watches"),
    ("call", "called", "calls"),
    ("follow", "followed", "follows"),
    ("remember", "remembered", "remembers"),
    ("need", "needed", "needs"),
    ("want", "wanted", "wants"),
    ("keep", "kept", "keeps"),
    ("bring", "brought", "brings"),
    ("leave", "left", "leaves"),
    ("serve", "served", "serves"),
    ("protect", "protected", "protects"),
    ("change", "changed", "changes"),
    ("answer", "answered", "answers"),
    ("ask", "asked", "asks"),
    ("love", "loved", "loves"),
    ("paint", "painted", "paints"),
    ("clean", "cleaned", "cleans"),
    ("move", "moved", "moves"),
    ("read", "read", "reads"),
    ("write", "wrote", "writes"),
    ("sell", "sold", "sells"),
    ("buy", "bought", "buys"),
];

const PREPOSITIONS: &[&str] = &[
    "in", "on", "near", "behind", "under", "over", "across", "around", "beside", "after", "before",
    "without", "with", "for", "from", "into",
];

const SUBJECTS: &[(&str, bool)] = &[
    ("I", false),
    ("you", false),
    ("we", false),
    ("they", false),
    ("he", true),
    ("she", true),
    ("my fellow", false),
];

const NUMBERS: &[&str] = &[
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "a hundred",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

fn noun_phrase(r: &mut Rng) -> String {
    let det = *r.pick(&["the", "a", "this", "that", "our", "their", "my"]);
    let det = if det == "a" { "a" } else { det };
    let adj = (r.below(2) == 0).then(|| *r.pick(ADJECTIVES));
    let noun = *r.pick(NOUNS);
    let first = adj.unwrap_or(noun);
    let det = if det == "a" && first.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        det
    };
    match adj {
        Some(a) => format!("{det} {a} {noun}"),
        None => format!("{det} {noun}"),
    }
}

/// One sentence from the grammar.
fn sentence(r: &mut Rng) -> String {
    let (base, past, third) = *r.pick(VERBS);
    let (subject, singular) = *r.pick(SUBJECTS);
    let subject = if subject == "my fellow" {
        format!(
            "my fellow {}",
            r.pick(&["citizens", "workers", "students", "friends"])
        )
    } else {
        subject.to_string()
    };
    let s = match r.below(8) {
        0 => format!(
            "{subject} {past} {} {} {}",
            noun_phrase(r),
            r.pick(PREPOSITIONS),
            noun_phrase(r)
        ),
        1 => format!(
            "{subject} {} {}",
            if singular { third } else { base },
            noun_phrase(r)
        ),
        2 => format!("{subject} will {base} {} tomorrow", noun_phrase(r)),
        3 => format!("what can {subject} {base} for {}", noun_phrase(r)),
        4 => format!(
            "please {base} {} before the {}",
            noun_phrase(r),
            r.pick(NOUNS)
        ),
        5 => format!(
            "there are {} {}s {} {}",
            r.pick(NUMBERS),
            r.pick(&[
                "book", "car", "tree", "bird", "house", "student", "ship", "apple"
            ]),
            r.pick(PREPOSITIONS),
            noun_phrase(r)
        ),
        6 => format!("do not ask what {} can do for you", noun_phrase(r)),
        _ => format!(
            "{} is {} and {}",
            noun_phrase(r),
            r.pick(ADJECTIVES),
            r.pick(ADJECTIVES)
        ),
    };
    let mut c = s.chars();
    let first: String = c
        .next()
        .map(|f| f.to_uppercase().collect())
        .unwrap_or_default();
    let end = if s.starts_with("what") { "?" } else { "." };
    format!("{first}{}{end}", c.as_str())
}

fn split_of(i: usize) -> &'static str {
    match i % 20 {
        0 => "test",
        1 => "val",
        _ => "train",
    }
}

/// Renders `count` sentences (default 3,000).
pub fn speech_data(args: &[String]) -> Result<(), String> {
    let count: usize = match args.first() {
        Some(n) => n
            .parse()
            .map_err(|_| format!("`{n}` is not a sentence count"))?,
        None => 3000,
    };
    let espeak = Command::new("espeak-ng").arg("--version").output();
    if !espeak.is_ok_and(|o| o.status.success()) {
        return Err("espeak-ng is not installed; on Debian: `apt-get install espeak-ng`".into());
    }
    let dir = cache_dir().join("speech-synth");
    let manifest = dir.join("manifest.jsonl");
    let stamp = format!("count={count} seed=1 voices={}", VOICES.len());
    if manifest.exists() && std::fs::read_to_string(dir.join(".params")).is_ok_and(|s| s == stamp) {
        eprintln!("speech-data: {} ok ({count} clips)", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("wav"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut r = Rng(1);
    let mut seen = std::collections::HashSet::new();
    let mut lines = String::new();
    let mut i = 0;
    while i < count {
        let text = sentence(&mut r);
        let voice = *r.pick(VOICES);
        let speed = 130 + r.below(71);
        let pitch = 25 + r.below(51);
        if !seen.insert(text.clone()) {
            continue;
        }
        let file = format!("wav/{i:05}.wav");
        let path = dir.join(&file);
        if !path.exists() {
            render(&text, voice, speed, pitch, &path)?;
        }
        let _ = writeln!(
            lines,
            "{{\"file\":\"{file}\",\"text\":\"{text}\",\"voice\":\"{voice}\",\"speed\":{speed},\"pitch\":{pitch},\"split\":\"{}\"}}",
            split_of(i)
        );
        if (i + 1) % 250 == 0 {
            eprintln!("speech-data: {} / {count}", i + 1);
        }
        i += 1;
    }
    let tmp = dir.join(".manifest.partial");
    std::fs::write(&tmp, lines).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &manifest)
        .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    std::fs::write(dir.join(".params"), stamp).map_err(|e| format!("cannot write: {e}"))?;
    eprintln!("speech-data: wrote {count} clips into {}", dir.display());
    Ok(())
}

fn render(text: &str, voice: &str, speed: usize, pitch: usize, path: &Path) -> Result<(), String> {
    let tmp = path.with_extension("partial");
    let out = Command::new("espeak-ng")
        .args([
            "-v",
            voice,
            "-s",
            &speed.to_string(),
            "-p",
            &pitch.to_string(),
            "-w",
        ])
        .arg(&tmp)
        .arg(text)
        .output()
        .map_err(|e| format!("cannot run espeak-ng: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "espeak-ng failed on `{text}` with voice {voice}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot move into {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_deterministic_and_varied() {
        let mut a = Rng(1);
        let mut b = Rng(1);
        let xs: Vec<String> = (0..200).map(|_| sentence(&mut a)).collect();
        let ys: Vec<String> = (0..200).map(|_| sentence(&mut b)).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::HashSet<&String> = xs.iter().collect();
        assert!(distinct.len() > 190, "{}", distinct.len());
    }
}
