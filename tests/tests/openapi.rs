//! The OpenAPI document describes what the server really does: a sample of real responses is
//! checked against the documented status codes and schemas.

use roomcast_e2e::{Answer, Server, create_room, delete, get, post, post_json, say};
use serde_json::{Value, json};

/// Checks that `answer` is documented for `method path` and that its body fits the schema.
fn conforms(doc: &Value, method: &str, path: &str, answer: &Answer) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let documented = &operation["responses"][answer.status.to_string()];
    assert!(
        documented.is_object(),
        "{method} {path} answered {} which is not documented: {}",
        answer.status,
        answer.body
    );
    let Some(content) = documented.get("content") else {
        assert!(
            answer.body.is_empty(),
            "{method} {path} {} has an undocumented body",
            answer.status
        );
        return;
    };
    let media = content
        .get(answer.content_type.split(';').next().unwrap().trim())
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} {} answered {} but documents {content}",
                answer.status, answer.content_type
            )
        });
    let schema = json!({ "$ref": media["schema"]["$ref"], "components": doc["components"] });
    let validator = jsonschema::validator_for(&schema).expect("the documented schema compiles");
    let body = answer.json();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {} body {body} breaks the schema: {errors:?}",
        answer.status
    );
}

/// Checks that `answer` has the status this call must get, then that it conforms.
fn expect(doc: &Value, method: &str, path: &str, status: u16, answer: &Answer) {
    assert_eq!(
        answer.status, status,
        "{method} {path} must answer {status}: {}",
        answer.body
    );
    conforms(doc, method, path, answer);
}

#[test]
fn sampled_responses_match_the_document() {
    let server = Server::smol(&["--in-memory", "--rate-burst=0", "--history-len=3"]);
    let doc = get(&server.url("/api/openapi.json")).json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );

    let rooms = "/api/v1/rooms";
    let room = "/api/v1/rooms/{room}";
    let messages = "/api/v1/rooms/{room}/messages";
    let presence = "/api/v1/rooms/{room}/presence";

    expect(
        &doc,
        "post",
        rooms,
        201,
        &post_json(&server.url(rooms), &json!({"room": "spec"})),
    );
    expect(
        &doc,
        "post",
        rooms,
        200,
        &post_json(&server.url(rooms), &json!({"room": "spec"})),
    );
    expect(
        &doc,
        "post",
        rooms,
        400,
        &post_json(&server.url(rooms), &json!({"room": "sp/ec"})),
    );
    expect(
        &doc,
        "post",
        rooms,
        415,
        &post(&server.url(rooms), "text/plain", "spec"),
    );
    expect(
        &doc,
        "get",
        rooms,
        200,
        &get(&server.url("/api/v1/rooms?limit=1")),
    );
    expect(
        &doc,
        "get",
        room,
        200,
        &get(&server.url("/api/v1/rooms/spec")),
    );
    expect(
        &doc,
        "get",
        room,
        404,
        &get(&server.url("/api/v1/rooms/absent")),
    );
    for n in 0..5 {
        say(&server, "spec", "ada", &format!("m{n}"));
    }
    let post_to = server.url("/api/v1/rooms/spec/messages");
    expect(
        &doc,
        "post",
        messages,
        201,
        &post_json(
            &post_to,
            &json!({"user": "ada", "text": "hi", "idempotency_key": "k"}),
        ),
    );
    expect(
        &doc,
        "post",
        messages,
        200,
        &post_json(
            &post_to,
            &json!({"user": "ada", "text": "hi", "idempotency_key": "k"}),
        ),
    );
    expect(
        &doc,
        "post",
        messages,
        409,
        &post_json(
            &post_to,
            &json!({"user": "ada", "text": "bye", "idempotency_key": "k"}),
        ),
    );
    expect(
        &doc,
        "post",
        messages,
        400,
        &post_json(&post_to, &json!({"user": "ada", "text": ""})),
    );
    expect(
        &doc,
        "post",
        messages,
        422,
        &post_json(&post_to, &json!({"user": "ada"})),
    );
    expect(
        &doc,
        "post",
        messages,
        400,
        &post(&post_to, "application/json", "{"),
    );
    expect(
        &doc,
        "get",
        messages,
        200,
        &get(&server.url("/api/v1/rooms/spec/messages")),
    );
    expect(
        &doc,
        "get",
        messages,
        200,
        &get(&server.url("/api/v1/rooms/spec/messages?after=1&limit=2")),
    );
    expect(
        &doc,
        "get",
        messages,
        409,
        &get(&server.url("/api/v1/rooms/spec/messages?after=60")),
    );
    expect(
        &doc,
        "get",
        presence,
        200,
        &get(&server.url("/api/v1/rooms/spec/presence")),
    );
    expect(
        &doc,
        "delete",
        room,
        204,
        &delete(&server.url("/api/v1/rooms/spec")),
    );
    expect(
        &doc,
        "delete",
        room,
        404,
        &delete(&server.url("/api/v1/rooms/spec")),
    );

    // Members, direct messages and signing in, each with its answer pinned.
    let members = "/api/v1/rooms/{room}/members";
    let member = "/api/v1/rooms/{room}/members/{user}";
    let den = post_json(
        &server.url("/api/v1/rooms?user=ada"),
        &json!({"room": "den", "private": true}),
    );
    expect(&doc, "post", rooms, 201, &den);
    let invite = |who: &str| server.url(&format!("/api/v1/rooms/den/members?user={who}"));
    // Whom one invites holds the name; a name nobody holds is nobody to invite.
    for user in ["bob", "cy"] {
        roomcast_e2e::guest_token(server.addr, user).expect("a guest");
    }
    expect(
        &doc,
        "post",
        members,
        404,
        &post_json(&invite("ada"), &json!({"user": "nobody-here"})),
    );
    expect(
        &doc,
        "post",
        members,
        204,
        &post_json(&invite("ada"), &json!({"user": "bob"})),
    );
    expect(
        &doc,
        "post",
        members,
        403,
        &post_json(&invite("bob"), &json!({"user": "cy"})),
    );
    let remove = |who: &str, member: &str| {
        server.url(&format!("/api/v1/rooms/den/members/{member}?user={who}"))
    };
    expect(&doc, "delete", member, 409, &delete(&remove("ada", "ada")));
    expect(&doc, "delete", member, 204, &delete(&remove("ada", "bob")));
    expect(
        &doc,
        "get",
        room,
        403,
        &get(&server.url("/api/v1/rooms/den?user=bob")),
    );
    let direct = "/api/v1/direct";
    let dm = |who: &str, with: &str| {
        post_json(
            &server.url(&format!("{direct}?user={who}")),
            &json!({"user": with}),
        )
    };
    expect(&doc, "post", direct, 201, &dm("ada", "bob"));
    expect(&doc, "post", direct, 200, &dm("bob", "ada"));
    expect(&doc, "post", direct, 409, &dm("ada", "ada"));
    let guest = "/api/v1/auth/guest";
    let nickname = |name: &str| post_json(&server.url(guest), &json!({"nickname": name}));
    expect(&doc, "post", guest, 201, &nickname("newcomer"));
    expect(&doc, "post", guest, 409, &nickname("newcomer"));
    expect(&doc, "post", guest, 400, &nickname("bad name!"));
    let sign_in = "/api/v1/auth/sign-in";
    let wrong = post_json(
        &server.url(sign_in),
        &json!({"name": "nobody", "password": "a long password"}),
    );
    expect(&doc, "post", sign_in, 401, &wrong);

    // The check itself has teeth: a body that breaks the schema fails it.
    let forged = Answer {
        status: 201,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: json!({"id": "1", "room": "spec", "seq": "one", "user": "ada", "text": "hi", "sent_at": "now"}).to_string(),
        bytes: Vec::new(),
    };
    let caught = std::panic::catch_unwind(|| conforms(&doc, "post", messages, &forged));
    assert!(
        caught.is_err(),
        "a string seq must break the MessageBody schema"
    );

    // The gap appears in a real page, and the page fits the schema with it.
    create_room(&server, "gappy");
    for n in 0..6 {
        say(&server, "gappy", "ada", &format!("m{n}"));
    }
    let gappy = get(&server.url("/api/v1/rooms/gappy/messages?after=0"));
    assert_eq!(gappy.json()["gap"], json!({"after": 0, "first_held": 4}));
    expect(&doc, "get", messages, 200, &gappy);
}

/// One way of calling an operation: headers, body, and the URL (path and query).
type Variant<'a> = (Vec<(&'a str, &'a str)>, Option<String>, String);

/// Every operation the document lists, called the wrong ways a client (or a schema-driven
/// fuzzer) would: without credentials, with the wrong media type, malformed or misshapen JSON,
/// an oversized body, a bad query, a room that is absent or private to someone else, and
/// rightly. Whatever each answers must be documented for it, with its body's schema.
#[test]
fn every_answer_of_every_operation_is_documented() {
    let server = Server::smol(&["--in-memory", "--max-body-bytes=2048"]);
    let doc = get(&server.url("/api/openapi.json")).json();
    // A private room someone else owns, and an open one.
    let owner = roomcast_e2e::guest_token(server.addr, "owner").unwrap();
    let owner_auth = format!("Bearer {owner}");
    let created = roomcast_e2e::request_with(
        "POST",
        &server.url("/api/v1/rooms"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &owner_auth),
        ],
        Some(r#"{"room":"secret","private":true}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    create_room(&server, "open");
    say(&server, "open", "ada", "hello");
    let tester = roomcast_e2e::guest_token(server.addr, "tester").unwrap();
    let auth = format!("Bearer {tester}");

    let mut operations = 0;
    let paths = doc["paths"].as_object().expect("paths").clone();
    for (template, methods) in &paths {
        for (method, _) in methods.as_object().expect("methods") {
            operations += 1;
            let post = ["post", "patch", "put"].contains(&method.as_str());
            for room in ["open", "secret", "absent", "bad%20id"] {
                let path = template
                    .replace("{room}", room)
                    .replace("{user}", "nobody")
                    .replace("{seq}", "1")
                    .replace("{emoji}", "%F0%9F%91%8D");
                let mut variants: Vec<Variant> = vec![
                    (vec![], post.then(|| "{}".to_owned()), path.clone()),
                    (
                        vec![("Authorization", &auth)],
                        post.then(|| "{}".to_owned()),
                        format!("{path}?limit=x&after=-1"),
                    ),
                ];
                if post {
                    for (content_type, body) in [
                        ("text/plain", "hello".to_owned()),
                        ("application/json", "{".to_owned()),
                        ("application/json", "[]".to_owned()),
                        ("application/json", format!("{{\"text\":\"{}\"}}", "x".repeat(4096))),
                        (
                            "application/json",
                            r#"{"room":"open","text":"hi","user":"nobody","name":"tester2","password":"a long password","nickname":"tester3"}"#.to_owned(),
                        ),
                    ] {
                        variants.push((
                            vec![("Authorization", &auth), ("Content-Type", content_type)],
                            Some(body),
                            path.clone(),
                        ));
                    }
                } else {
                    variants.push((vec![("Authorization", &auth)], None, path.clone()));
                }
                for (headers, body, url) in variants {
                    let method_name = method.to_uppercase();
                    let answer = if post {
                        roomcast_e2e::request_with(
                            &method_name,
                            &server.url(&url),
                            &headers,
                            Some(body.as_deref().unwrap_or("")),
                        )
                    } else {
                        roomcast_e2e::request_with(&method_name, &server.url(&url), &headers, None)
                    };
                    assert!(answer.status < 500, "{method} {url}: {}", answer.body);
                    conforms(&doc, method, template, &answer);
                }
            }
        }
    }
    assert!(operations >= 15, "only {operations} operations documented");
}
