//! Tests of the wire format: parsing, markers, limits and errors.

use super::*;
use serde_json::json;

fn parse(body: Value) -> Result<Chat, ApiError> {
    parse_chat(body.to_string().as_bytes(), &Limits::default())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn parts_become_markers_where_they_stand() {
    let chat = parse(json!({
        "model": "m",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(b"png"))}},
                {"type": "input_audio", "input_audio": {"data": b64(b"wav"), "format": "WAV"}},
            ]},
        ],
        "max_tokens": 5, "stop": "\n", "seed": -1, "stream": true, "user": "ignored",
    }))
    .expect("parses");
    assert_eq!(chat.messages[0].role, "system");
    let m = &chat.messages[1];
    assert_eq!(m.text, "What is this?\n<image>\n<audio>");
    assert_eq!(m.parts[0].media, Media::Image(b"png".to_vec()));
    assert_eq!(m.parts[0].param, "messages[1].content[1]");
    assert_eq!(
        m.parts[1].media,
        Media::Audio {
            bytes: b"wav".to_vec(),
            format: "wav".into()
        }
    );
    let s = &chat.sampling;
    assert_eq!(
        (s.max_tokens, s.seed, s.stream),
        (Some(5), Some(u64::MAX), true)
    );
    assert_eq!(s.stop, vec!["\n".to_string()]);
}

#[test]
fn markers_in_the_text_place_the_parts() {
    let chat = parse(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(b"a"))}},
        {"type": "text", "text": "Compare <image> with the sound"},
        {"type": "series", "series": {"values": [1, 2.5, -3]}},
    ]}]}))
    .expect("parses");
    assert_eq!(chat.messages[0].text, "Compare <image> with the sound");
    assert_eq!(
        chat.messages[0].parts[1].media,
        Media::Series(vec![1.0, 2.5, -3.0])
    );
}

#[test]
fn bad_requests_name_the_field() {
    let check = |body: Value, status: u16, param: &str, words: &str| {
        let e = parse(body).expect_err("refused");
        assert_eq!(e.status.as_u16(), status, "{e:?}");
        assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        assert!(e.message.contains(words), "{e:?}");
    };
    let user = |part: Value| json!({"messages": [{"role": "user", "content": [part]}]});
    check(json!({"messages": []}), 400, "messages", "empty");
    check(
        json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
        400,
        "n",
        "n = 2",
    );
    check(
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        400,
        "messages[0].role",
        "robot",
    );
    check(
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
        400,
        "max_tokens",
        "at least 1",
    );
    check(
        json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
        400,
        "temperature",
        "outside",
    );
    check(
        json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}),
        400,
        "stop",
        "more than 4",
    );
    check(
        user(json!({"type": "video_url"})),
        400,
        "messages[0].content[0].type",
        "video_url",
    );
    check(
        user(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}})),
        400,
        "messages[0].content[0].image_url.url",
        "invalid base64",
    );
    check(
        user(json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})),
        400,
        "messages[0].content[0].image_url.url",
        "remote",
    );
    check(
        user(json!({"type": "image_url", "image_url": {"url": "/etc/passwd"}})),
        400,
        "messages[0].content[0].image_url.url",
        "--allow-dir",
    );
    check(
        user(json!({"type": "input_audio", "input_audio": {"data": "", "format": "aac"}})),
        400,
        "messages[0].content[0].input_audio.format",
        "aac",
    );
    check(
        user(json!({"type": "series", "series": {"values": [1, null, 3]}})),
        400,
        "messages[0].content[0].series.values[1]",
        "not a finite number",
    );
    let big = "A".repeat(4 * (16 << 20) / 3 + 8);
    check(
        user(json!({"type": "input_audio", "input_audio": {"data": big, "format": "wav"}})),
        413,
        "messages[0].content[0].input_audio.data",
        "limit",
    );
    let many: Vec<Value> = (0..9)
        .map(|_| json!({"type": "series", "series": {"values": [1]}}))
        .collect();
    check(
        json!({"messages": [{"role": "user", "content": many}]}),
        400,
        "messages[0].content[8]",
        "more than 8",
    );
    let e = parse_chat(b"{not json", &Limits::default()).expect_err("refused");
    assert_eq!((e.status.as_u16(), e.code), (400, "invalid_json"));
    let e = parse_chat(br#"{"messages": "hi"}"#, &Limits::default()).expect_err("refused");
    assert_eq!((e.status.as_u16(), e.code), (400, "invalid_field"));
}

#[test]
fn local_images_only_under_the_allowed_directory() {
    let dir = std::env::temp_dir().join(format!("glaze-serve-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("a.png"), b"png").expect("write");
    let limits = Limits {
        allow_dir: Some(dir.clone()),
        ..Limits::default()
    };
    let body = |url: &str| {
        json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]})
        .to_string()
    };
    let ok = parse_chat(body("file://a.png").as_bytes(), &limits).expect("allowed");
    assert_eq!(ok.messages[0].parts[0].media, Media::Image(b"png".to_vec()));
    let e = parse_chat(body("../../etc/passwd").as_bytes(), &limits).expect_err("outside");
    assert_eq!(e.code, "local_path_refused");
    std::fs::remove_dir_all(&dir).expect("clean");
}

#[test]
fn usage_reports_soft_tokens_apart() {
    let u = Usage {
        prompt_tokens: 30,
        soft_tokens: 17,
        completion_tokens: 4,
    };
    let v = u.to_json();
    assert_eq!(v["total_tokens"], 34);
    assert_eq!(v["prompt_tokens_details"]["soft_tokens"], 17);
}

#[test]
fn prompt_embeds_are_whole_finite_rows() {
    let le = |v: &[f32]| b64(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    let parse = |body: Value| parse_completion(body.to_string().as_bytes(), &Limits::default(), 2);
    let c = parse(
        json!({"prompt_embeds": le(&[1.0, 2.0, 3.0, 4.0]), "prompt": "and then", "max_tokens": 3}),
    )
    .expect("parses");
    assert_eq!(c.embeds, Some((vec![1.0, 2.0, 3.0, 4.0], 2)));
    assert_eq!(c.prompt.as_deref(), Some("and then"));
    assert_eq!(c.sampling.max_tokens, Some(3));
    let err = |body: Value| parse(body).expect_err("refused");
    let e = err(json!({"prompt_embeds": le(&[1.0, 2.0, 3.0])}));
    assert!(e.message.contains("width 2"), "{e:?}");
    let e = err(json!({"prompt_embeds": le(&[1.0, f32::NAN])}));
    assert!(e.message.contains("value 1 (row 0, column 1)"), "{e:?}");
    let e = err(json!({"prompt_embeds": b64(&[0, 0, 128])}));
    assert!(e.message.contains("whole number"), "{e:?}");
    assert_eq!(
        err(json!({"prompt": "x", "echo": true})).param.as_deref(),
        Some("echo")
    );
    assert_eq!(
        err(json!({"prompt": [1, 2]})).param.as_deref(),
        Some("prompt")
    );
    assert_eq!(
        err(json!({"max_tokens": 2})).param.as_deref(),
        Some("prompt")
    );
}
