//! Generated images for spatial captioning: one or two shapes (circle, square, triangle) of four
//! colours and two sizes on a 3 × 3 grid, with captions that say where they are — "a small red
//! circle at the top left", "a large blue square above a small yellow triangle" (two objects
//! share a row or a column; the upper or left one is named first). The generator is seeded; the
//! parser scores colour, shape, size and position separately, as "Lost in Space" asks: do
//! resamplers keep spatial information?

use glaze_core::SplitMix64;
use image::{Rgb, RgbImage};

/// Colour names and their RGB values.
pub const COLOURS: [(&str, [u8; 3]); 4] = [
    ("red", [220, 30, 30]),
    ("green", [30, 170, 50]),
    ("blue", [30, 60, 220]),
    ("yellow", [235, 200, 20]),
];
/// Shape names.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// Size names and half-extents in pixels (on the 224 px canvas).
pub const SIZES: [(&str, u32); 2] = [("small", 14), ("large", 30)];
/// Cell names of the 3 × 3 grid, row-major.
pub const CELLS: [&str; 9] = [
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
];
/// Canvas side in pixels.
pub const CANVAS: u32 = 224;

/// The question asked about every generated image.
pub const QUESTION: &str = "Describe the shapes in this image and where they are.";

/// One drawn object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Index into [`SHAPES`].
    pub shape: usize,
    /// Index into [`SIZES`].
    pub size: usize,
    /// Grid cell 0..9, row-major.
    pub cell: usize,
}

impl Object {
    fn phrase(&self) -> String {
        format!(
            "a {} {} {}",
            SIZES[self.size].0, COLOURS[self.colour].0, SHAPES[self.shape]
        )
    }
}

/// A scene: one object, or two in the same row or column (the first is the upper or left one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scene {
    /// One or two objects.
    pub objects: Vec<Object>,
}

impl Scene {
    /// A random scene: one object (half the time) or two sharing a row or a column.
    pub fn random(rng: &mut SplitMix64) -> Scene {
        let object = |rng: &mut SplitMix64, cell| Object {
            colour: rng.below(COLOURS.len()),
            shape: rng.below(SHAPES.len()),
            size: rng.below(SIZES.len()),
            cell,
        };
        if rng.below(2) == 0 {
            let cell = rng.below(9);
            return Scene {
                objects: vec![object(rng, cell)],
            };
        }
        let same_column = rng.below(2) == 1;
        let line = rng.below(3);
        let (i, j) = [(0, 1), (0, 2), (1, 2)][rng.below(3)];
        let (a, b) = if same_column {
            (i * 3 + line, j * 3 + line)
        } else {
            (line * 3 + i, line * 3 + j)
        };
        let first = object(rng, a);
        let second = object(rng, b);
        Scene {
            objects: vec![first, second],
        }
    }

    /// The caption.
    pub fn caption(&self) -> String {
        match self.objects.as_slice() {
            [a] => format!("{} at the {}", a.phrase(), CELLS[a.cell]),
            [a, b] => format!("{} {} {}", a.phrase(), relation(a, b), b.phrase()),
            _ => String::new(),
        }
    }

    /// Draws the scene on a light grey canvas; `rng` jitters positions inside their cells.
    pub fn draw(&self, rng: &mut SplitMix64) -> RgbImage {
        let mut img = RgbImage::from_pixel(CANVAS, CANVAS, Rgb([235, 235, 235]));
        let cell = CANVAS as f64 / 3.0;
        for o in &self.objects {
            let r = SIZES[o.size].1 as f64;
            let room = (cell / 2.0 - r - 3.0).max(0.0);
            let jitter = |rng: &mut SplitMix64| (rng.next_f64() * 2.0 - 1.0) * room;
            let cx = ((o.cell % 3) as f64 + 0.5) * cell + jitter(rng);
            let cy = ((o.cell / 3) as f64 + 0.5) * cell + jitter(rng);
            let colour = Rgb(COLOURS[o.colour].1);
            let (x0, x1) = (
                (cx - r).floor().max(0.0) as u32,
                ((cx + r).ceil() as u32).min(CANVAS - 1),
            );
            let (y0, y1) = (
                (cy - r).floor().max(0.0) as u32,
                ((cy + r).ceil() as u32).min(CANVAS - 1),
            );
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                    let inside = match SHAPES[o.shape] {
                        "circle" => dx * dx + dy * dy <= r * r,
                        "square" => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
                        _ => dy.abs() <= r && dx.abs() <= (dy + r) / 2.0,
                    };
                    if inside {
                        img.put_pixel(x, y, colour);
                    }
                }
            }
        }
        img
    }
}

fn relation(a: &Object, b: &Object) -> &'static str {
    if a.cell % 3 == b.cell % 3 {
        "above"
    } else {
        "left of"
    }
}

/// A caption read back into attributes (words it does not know are `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedCaption {
    /// `(size, colour, shape)` of each object named, in order.
    pub objects: Vec<(Option<usize>, Option<usize>, Option<usize>)>,
    /// Cell (one object) or relation word (two objects).
    pub place: Option<String>,
}

/// Parses a caption in the generator's grammar.
pub fn parse_caption(text: &str) -> ParsedCaption {
    let norm = normalise(text);
    let find = |w: &str, list: &[&str]| list.iter().position(|x| *x == w);
    let sizes: Vec<&str> = SIZES.iter().map(|s| s.0).collect();
    let colours: Vec<&str> = COLOURS.iter().map(|c| c.0).collect();
    let mut parsed = ParsedCaption::default();
    // Split at the relation words or "at the".
    let (objects_text, place) = if let Some((a, cell)) = norm.split_once(" at the ") {
        (vec![a.to_string()], Some(cell.trim().to_string()))
    } else if let Some((a, b)) = norm.split_once(" above ") {
        (
            vec![a.to_string(), b.to_string()],
            Some("above".to_string()),
        )
    } else if let Some((a, b)) = norm.split_once(" left of ") {
        (
            vec![a.to_string(), b.to_string()],
            Some("left of".to_string()),
        )
    } else {
        (vec![norm.clone()], None)
    };
    parsed.place = place;
    for part in objects_text {
        let words: Vec<&str> = part.split_whitespace().filter(|w| *w != "a").collect();
        let size = words.iter().find_map(|w| find(w, &sizes));
        let colour = words.iter().find_map(|w| find(w, &colours));
        let shape = words.iter().find_map(|w| find(w, &SHAPES));
        parsed.objects.push((size, colour, shape));
    }
    parsed
}

/// Lower case, single spaces, no trailing period.
pub fn normalise(text: &str) -> String {
    text.trim()
        .trim_end_matches('.')
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per-attribute correctness of one predicted caption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptionScore {
    /// The whole caption matches.
    pub exact: bool,
    /// Number of objects right.
    pub count: bool,
    /// Objects (of the truth) whose colour is right, under the best pairing of objects.
    pub colour: usize,
    /// Objects whose shape is right.
    pub shape: usize,
    /// Objects whose size is right.
    pub size: usize,
    /// Objects in the truth.
    pub objects: usize,
    /// One object: the cell is right; two: the relation is right and the objects are named in
    /// the right order (the best pairing is the straight one).
    pub position: bool,
}

/// Scores a predicted caption against the scene.
pub fn score(scene: &Scene, predicted: &str) -> CaptionScore {
    let p = parse_caption(predicted);
    let truth = &scene.objects;
    let attr = |o: &Object, q: &(Option<usize>, Option<usize>, Option<usize>)| {
        [
            q.0 == Some(o.size),
            q.1 == Some(o.colour),
            q.2 == Some(o.shape),
        ]
    };
    let pairing = |order: &[usize]| -> [usize; 3] {
        let mut hits = [0; 3];
        for (t, &pi) in truth.iter().zip(order) {
            if let Some(q) = p.objects.get(pi) {
                for (h, ok) in hits.iter_mut().zip(attr(t, q)) {
                    *h += usize::from(ok);
                }
            }
        }
        hits
    };
    let straight = pairing(&[0, 1]);
    let swapped = if truth.len() == 2 {
        pairing(&[1, 0])
    } else {
        [0; 3]
    };
    let total = |h: [usize; 3]| h.iter().sum::<usize>();
    let in_order = total(straight) >= total(swapped);
    let best = if in_order { straight } else { swapped };
    let position = match truth.as_slice() {
        [a] => p.place.as_deref() == Some(CELLS[a.cell]),
        [a, b] => p.place.as_deref() == Some(relation(a, b)) && in_order,
        _ => false,
    };
    CaptionScore {
        exact: normalise(predicted) == scene.caption(),
        count: p.objects.len() == truth.len(),
        size: best[0],
        colour: best[1],
        shape: best[2],
        objects: truth.len(),
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_parse_back_and_score() {
        let mut rng = SplitMix64::new(4);
        for _ in 0..200 {
            let scene = Scene::random(&mut rng);
            let caption = scene.caption();
            let s = score(&scene, &caption);
            assert!(s.exact && s.count && s.position, "{caption}: {s:?}");
            assert_eq!(
                (s.colour, s.shape, s.size),
                (s.objects, s.objects, s.objects)
            );
        }
        let scene = Scene {
            objects: vec![
                Object {
                    colour: 0,
                    shape: 0,
                    size: 0,
                    cell: 0,
                },
                Object {
                    colour: 2,
                    shape: 1,
                    size: 1,
                    cell: 3,
                },
            ],
        };
        assert_eq!(
            scene.caption(),
            "a small red circle above a large blue square"
        );
        // Swapped order: attributes right under the best pairing, position wrong.
        let s = score(&scene, "A large blue square above a small red circle.");
        assert_eq!(
            (s.colour, s.shape, s.size, s.position, s.exact),
            (2, 2, 2, false, false)
        );
        // Wrong colour of one object only.
        let s = score(&scene, "a small green circle above a large blue square");
        assert_eq!((s.colour, s.position), (1, true));
    }

    #[test]
    fn drawing_puts_colour_in_the_right_cell() {
        let scene = Scene {
            objects: vec![Object {
                colour: 2,
                shape: 1,
                size: 1,
                cell: 8,
            }],
        };
        let img = scene.draw(&mut SplitMix64::new(1));
        let centre = (CANVAS as f64 * 5.0 / 6.0) as u32;
        assert_eq!(img.get_pixel(centre, centre).0, COLOURS[2].1);
        assert_eq!(img.get_pixel(20, 20).0, [235, 235, 235]);
    }
}
