//! Go's and Docker's documented template behaviour, case by case.

use serde_json::{json, Value};

use super::{Template, TemplateError};

fn run(t: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse(t)?.execute(data)
}

fn ok(t: &str, data: &Value) -> String {
    match run(t, data) {
        Ok(s) => s,
        Err(e) => panic!("{t:?}: {e}"),
    }
}

fn container() -> Value {
    json!({
        "Id": "4fa6e0f0c678",
        "Name": "/web",
        "Args": ["-g", "daemon off;"],
        "State": {"Status": "running", "Running": true, "Pid": 42, "ExitCode": 0},
        "Config": {
            "Hostname": "4fa6e0f0c678",
            "Env": ["PATH=/usr/bin", "A=1"],
            "Cmd": null,
            "Labels": {"com.example": "x", "a.b": "y"},
            "Healthcheck": null
        },
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
        "RepoTags": ["web:latest", "web:1"],
        "Mounts": [],
        "HostConfig": {"NetworkMode": "host"}
    })
}

/// Go's and Docker's documented outputs (docs.docker.com "Format command and log output",
/// `docker inspect` examples), one case per line.
#[test]
fn documented_cases_print_what_docker_prints() {
    let c = container();
    let cases: &[(&str, &str)] = &[
        ("{{.Id}}", "4fa6e0f0c678"),
        ("{{ .Name }}", "/web"),
        (
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "172.17.0.2",
        ),
        ("{{index .RepoTags 0}}", "web:latest"),
        ("{{index .Config.Labels \"com.example\"}}", "x"),
        ("{{index .Config.Labels \"missing\"}}", ""),
        ("{{join .Args \",\"}}", "-g,daemon off;"),
        ("{{join .Args \" \"}}", "-g daemon off;"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if not .State.Running}}up{{else}}down{{end}}", "down"),
        ("{{upper .Name}}", "/WEB"),
        ("{{.Name | upper}}", "/WEB"),
        ("{{lower \"ABC\"}}", "abc"),
        ("{{title \"hello world\"}}", "Hello World"),
        ("{{json .State.Status}}", "\"running\""),
        (
            "{{json .Config.Labels}}",
            r#"{"a.b":"y","com.example":"x"}"#,
        ),
        ("{{json .Args}}", r#"["-g","daemon off;"]"#),
        ("{{json .Config.Cmd}}", "null"),
        ("{{split \"a:b:c\" \":\"}}", "[a b c]"),
        ("{{index (split \"a:b:c\" \":\") 1}}", "b"),
        ("{{pad .State.Status 1 2}}|", " running  |"),
        ("{{truncate .Id 4}}", "4fa6"),
        ("{{len .Args}}", "2"),
        ("{{len .Config.Cmd}}", "0"),
        ("{{printf \"%s:%d\" .Name .State.Pid}}", "/web:42"),
        (
            "{{printf \"%-6s|%5d|%05.1f\" \"ab\" 7 3.14159}}",
            "ab    |    7|003.1",
        ),
        (
            "{{printf \"%q %v %t\" \"a\" .Args true}}",
            "\"a\" [-g daemon off;] true",
        ),
        ("{{println \"a\" 1}}", "a 1\n"),
        ("{{print \"a\" 1 2 \"b\"}}", "a1 2b"),
        // Empty values print what Go prints for Docker's typed fields.
        ("{{.Config.Cmd}}", "[]"),
        ("{{.Config.Entrypoint}}", "[]"),
        ("{{.Mounts}}", "[]"),
        ("{{.Config.Volumes}}", "map[]"),
        ("{{.Config.WorkingDir}}", ""),
        ("{{.Config.Healthcheck}}", "<nil>"),
        ("{{.State.Health}}", "<nil>"),
        (
            "{{.HostConfig.Privileged}} {{json .HostConfig.Privileged}}",
            "false false",
        ),
        ("{{.HostConfig.ShmSize}} {{.State.Error}}|", "0 |"),
        ("{{if .HostConfig.Privileged}}p{{else}}u{{end}}", "u"),
        ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
        ("{{.Config.Labels}}", "map[a.b:y com.example:x]"),
        ("{{.State}}", "{running true 42 0}"),
        // Control structures, variables, trim markers.
        (
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
            "a.b=y;com.example=x;",
        ),
        (
            "{{range $i, $e := .Args}}{{$i}}:{{$e}} {{end}}",
            "0:-g 1:daemon off; ",
        ),
        ("{{range .Config.Cmd}}x{{else}}none{{end}}", "none"),
        ("{{range .Args}}{{.}}{{break}}{{end}}", "-g"),
        (
            "{{range .Args}}{{if eq . \"-g\"}}{{continue}}{{end}}{{.}}{{end}}",
            "daemon off;",
        ),
        (
            "{{range .RepoTags}}{{$.Id}} {{end}}",
            "4fa6e0f0c678 4fa6e0f0c678 ",
        ),
        (
            "{{$n := .Name}}{{with .State}}{{$n}} {{.Status}}{{end}}",
            "/web running",
        ),
        ("{{with .Config.Cmd}}x{{else}}no cmd{{end}}", "no cmd"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        (
            "{{if $n := .Name}}{{$n}}{{end}} {{with $s := .State}}{{$s.Pid}}{{end}}",
            "/web 42",
        ),
        (
            "{{if eq .State.Pid 1}}a{{else if eq .State.Pid 42}}b{{else}}c{{end}}",
            "b",
        ),
        (
            "{{if and .State.Running (gt .State.Pid 10)}}yes{{end}}",
            "yes",
        ),
        ("{{or .Config.WorkingDir \"/\"}}", "/"),
        ("{{and .State.Running .Name}}", "/web"),
        (
            "{{if ne .Name \"/x\"}}ne{{end}} {{if le 1 1}}le{{end}} {{if lt \"a\" \"b\"}}lt{{end}}",
            "ne le lt",
        ),
        ("{{eq .State.Status \"exited\" \"running\"}}", "true"),
        ("a  {{- .Id -}}  b", "a4fa6e0f0c678b"),
        ("a\n{{- /* a comment */ -}}\nb", "ab"),
        ("{{/* nothing */}}x", "x"),
        ("{{`raw\\t`}} {{\"tab\\t|\"}}", "raw\\t tab\t|"),
        (
            "{{-3}} {{0x10}} {{1.5}} {{'a'}} {{true}}",
            "-3 16 1.5 97 true",
        ),
        ("{{(index .Config.Env 1)}} {{(.State).Pid}}", "A=1 42"),
    ];
    for (t, want) in cases {
        assert_eq!(&ok(t, &c), want, "template {t:?}");
    }
}

/// Errors read as Docker's, with Go's messages.
#[test]
fn bad_templates_fail_with_gos_messages() {
    let c = container();
    let cases: &[(&str, &str)] = &[
        (
            "{{",
            "template parsing error: template: :1: unclosed action",
        ),
        (
            "{{.Id",
            "template parsing error: template: :1: unclosed action",
        ),
        (
            "{{if .Id}}x",
            "template parsing error: template: :1: unexpected EOF",
        ),
        (
            "x{{end}}",
            "template parsing error: template: :1: unexpected {{end}}",
        ),
        (
            "{{nosuch .Id}}",
            "template parsing error: template: :1: function \"nosuch\" not defined",
        ),
        (
            "{{$x}}",
            "template parsing error: template: :1: undefined variable \"$x\"",
        ),
        (
            "{{\"abc}}",
            "template parsing error: template: :1: unterminated quoted string",
        ),
        (
            "{{}}",
            "template parsing error: template: :1: missing value for command",
        ),
        (
            "a\n{{.Id @}}",
            "template parsing error: template: :2: bad character U+0040 '@'",
        ),
        (
            "{{/* x }}",
            "template parsing error: template: :1: unclosed comment",
        ),
        (
            "{{break}}",
            "template parsing error: template: :1: {{break}} outside {{range}}",
        ),
    ];
    for (t, want) in cases {
        let e = Template::parse(t).expect_err(t);
        assert_eq!(e.to_string(), *want, "template {t:?}");
    }
    let exec: &[(&str, &str)] = &[
        ("{{.Foo}}", "template: :1:2: executing \"\" at <.Foo>: map has no entry for key \"Foo\""),
        (
            "{{index .RepoTags 5}}",
            "template: :1:2: executing \"\" at <index .RepoTags 5>: error calling index: index out of range: 5",
        ),
        ("x {{.Name.Foo}}", "template: :1:4: executing \"\" at <.Name.Foo>: can't evaluate field Foo in type string"),
        ("{{.Config.Healthcheck.Test}}", "template: :1:2: executing \"\" at <.Config.Healthcheck.Test>: nil pointer evaluating interface {}.Test"),
        ("{{upper .Args}}", "template: :1:2: executing \"\" at <upper .Args>: wrong type for value; expected string; got []interface {}"),
    ];
    for (t, want) in exec {
        assert_eq!(
            run(t, &c).expect_err(t).to_string(),
            *want,
            "template {t:?}"
        );
    }
}

/// A table's header row is the template run over the column names, with Docker's functions
/// leaving them as they are.
#[test]
fn header_rows_name_the_columns() {
    let h = json!({"ID": "CONTAINER ID", "Names": "NAMES"});
    let t = Template::parse("{{.ID}}\t{{upper .Names}}\t{{.Nope}}").unwrap();
    assert_eq!(t.execute_header(&h), "CONTAINER ID\tNAMES\t<no value>");
    // An error ends the header where it happens, as Docker ignores it.
    let t = Template::parse("{{.ID}}\t{{.Label \"x\"}}\t{{.Names}}").unwrap();
    assert_eq!(t.execute_header(&h), "CONTAINER ID\t");
}

/// `ps` and `images` rows have Docker's `.Label "key"` method.
#[test]
fn rows_answer_the_label_method() {
    let row = json!({"Labels": "a=1,com.example=x", "Names": "web"});
    assert_eq!(
        ok("{{.Label \"com.example\"}}|{{.Label \"no\"}}", &row),
        "x|"
    );
    let c = container();
    assert_eq!(
        ok("{{.Config.Label \"a.b\"}} {{\"a.b\" | .Config.Label}}", &c),
        "y y"
    );
}

/// Every prefix and suffix of a template that uses everything parses or fails cleanly, and
/// what parses executes or fails cleanly: no panic on any input.
#[test]
fn truncated_templates_fail_cleanly() {
    let full = "a {{- range $k, $v := .Config.Labels -}} {{$k | upper}}={{index $.Config.Labels $k}} \
                {{else}}{{/* c */}}{{end}}{{if and (eq .State.Pid 42) .State.Running}}x{{else if 1}}y\
                {{end}}{{with $x := `raw`}}{{printf \"%5.2f|%q\" 1.5 $x}}{{end}}{{(.State).Pid}}'a'\
                {{json .}}{{-3}}{{\"\\u00e9\"}}é";
    let c = container();
    if let Err(e) = Template::parse(full) {
        panic!("{e}");
    }
    for (i, _) in full.char_indices() {
        for t in [&full[..i], &full[i..]] {
            if let Ok(t) = Template::parse(t) {
                let _ = t.execute(&c);
                let _ = t.execute_header(&c);
            }
        }
    }
}
