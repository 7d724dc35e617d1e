//! `--format` as Docker's scripts use it: Go templates with `index`, `range`, `if`, `json`,
//! `join`, `upper`; `table` with Docker's column names aligned as Docker aligns them; `json`
//! lines; and Docker's errors and exit codes for a bad template.

use rimg_tests::containers::Cleanup;
use rimg_tests::Store;

fn store() -> (Store, String) {
    let s = Store::new();
    let id = s.busybox("busybox:latest");
    (s, id)
}

/// The short id of an image id (`sha256:…`).
fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[test]
fn images_and_history_print_templates_tables_and_json() {
    let (s, id) = store();
    s.rimg(["tag", "busybox", "web:1"]).ok();
    let out = s
        .rimg([
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{upper .Repository}}",
        ])
        .ok();
    assert_eq!(out, "busybox:latest BUSYBOX\nweb:1 WEB\n");
    let out = s
        .rimg([
            "images",
            "--format",
            "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}",
        ])
        .ok();
    let sid = short(&id);
    assert_eq!(
        out,
        format!(
            "REPOSITORY   TAG       IMAGE ID\n\
             busybox      latest    {sid}\n\
             web          1         {sid}\n"
        )
    );
    // `table` alone is the default listing.
    let table = s.rimg(["images", "--format", "table"]).ok();
    let plain = s.rimg(["images"]).ok();
    assert_eq!(
        table.lines().next(),
        plain.lines().next(),
        "{table}\n---\n{plain}"
    );
    let json = s.rimg(["images", "--format", "json"]).ok();
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["Repository"], "busybox");
    assert_eq!(json.lines().count(), 2, "one object per line: {json}");

    let out = s
        .rimg(["history", "--format", "{{.ID}}|{{.Comment}}", "busybox"])
        .ok();
    assert!(out.starts_with(&format!("{sid}|Imported from ")), "{out}");
    let out = s
        .rimg([
            "history",
            "--format",
            "table {{.ID}}\\t{{.Size}}",
            "busybox",
        ])
        .ok();
    assert!(
        out.starts_with(&format!("IMAGE          SIZE\n{sid}   ")),
        "{out}"
    );
}

#[test]
fn inspect_runs_docker_templates() {
    let (s, _) = store();
    let f = |t: &str| s.rimg(["inspect", "-f", t, "busybox"]).ok();
    assert_eq!(f("{{index .RepoTags 0}}"), "busybox:latest\n");
    assert_eq!(f("{{json .Config.Cmd}} {{.Config.Cmd}}"), "[\"sh\"] [sh]\n");
    assert_eq!(f("{{join .Config.Cmd \",\"}}"), "sh\n");
    assert_eq!(f("{{range .RepoTags}}<{{.}}>{{end}}"), "<busybox:latest>\n");
    assert_eq!(
        f("{{if .Config.Entrypoint}}ep{{else}}none{{end}} {{.Config.Entrypoint}} {{.Config.Labels}} [{{.Config.User}}]"),
        "none [] map[] []\n"
    );
    assert_eq!(f("{{len .RootFS.Layers}} {{.RootFS.Type}}"), "1 layers\n");
    let line = s.rimg(["inspect", "-f", "json", "busybox"]).ok();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("[{\"Id\":\"sha256:"), "{line}");

    // Docker: a template that does not parse exits 64, one that fails on the object 1.
    let out = s.rimg(["inspect", "-f", "{{.Id", "busybox"]).output();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("template parsing error: template: :1: unclosed action"),
        "{err}"
    );
    let out = s.rimg(["inspect", "-f", "{{.Nope}}", "busybox"]).output();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("map has no entry for key \"Nope\""), "{err}");
}

#[test]
fn ps_and_system_df_print_tables_with_dockers_headers() {
    let (s, _) = store();
    let _c = Cleanup(&s);
    let id = s
        .rimg(["create", "--name", "fmt-c", "busybox", "true"])
        .ok()
        .trim()
        .to_string();
    let out = s
        .rimg([
            "ps",
            "-a",
            "--format",
            "table {{.ID}}\\t{{.Names}}\\t{{.Status}}",
        ])
        .ok();
    assert_eq!(
        out,
        format!(
            "CONTAINER ID   NAMES     STATUS\n{}   fmt-c     Created\n",
            &id[..12]
        )
    );
    let out = s
        .rimg([
            "container",
            "ls",
            "-a",
            "--format",
            "{{.Names}}|{{lower .State}}",
        ])
        .ok();
    assert_eq!(out, "fmt-c|created\n");
    let out = s
        .rimg([
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Running}} {{.Name}} {{range .Config.Cmd}}{{.}}{{end}}",
            "fmt-c",
        ])
        .ok();
    assert_eq!(out, "created false /fmt-c true\n");
    let err = s.rimg(["ps", "--format", "{{"]).fails();
    assert!(
        err.contains("template parsing error: template: :1: unclosed action"),
        "{err}"
    );

    let out = s
        .rimg([
            "system",
            "df",
            "--format",
            "table {{.Type}}\\t{{.TotalCount}}",
        ])
        .ok();
    assert!(
        out.starts_with("TYPE            TOTAL\nImages          1\nContainers      "),
        "{out}"
    );
    let out = s
        .rimg(["system", "df", "--format", "{{.Type}}={{.TotalCount}}"])
        .ok();
    assert!(out.starts_with("Images=1\n"), "{out}");
}
