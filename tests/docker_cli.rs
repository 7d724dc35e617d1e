//! Docker's command line as a script sees it: the `container` group beside the top-level verbs,
//! flags that end at the image, `-h` as `--hostname`, and exit code 125 for rimg's own errors.

use rimg_tests::containers::{assert_no_mounts, Cleanup};
use rimg_tests::Store;

fn store() -> Store {
    let s = Store::new();
    s.busybox("busybox:latest");
    s
}

#[test]
fn the_container_group_runs_what_the_course_types() {
    let s = store();
    let _c = Cleanup(&s);
    let id = s
        .rimg(["container", "run", "-d", "--name", "web-ping", "busybox"])
        .args(["sh", "-c", "echo ping; sleep 30"])
        .ok();
    assert_eq!(id.trim().len(), 64, "container run -d prints the id: {id}");
    rimg_tests::containers::wait_until("web-ping's log line", || {
        s.rimg(["container", "logs", "web-ping"]).ok() == "ping\n"
    });
    let names = s.rimg(["container", "ls", "--format", "{{.Names}}"]).ok();
    assert_eq!(names, "web-ping\n");
    s.rimg(["container", "exec", "web-ping", "touch", "/pinged"])
        .ok();
    let diff = s.rimg(["container", "diff", "web-ping"]).ok();
    assert!(diff.lines().any(|l| l == "A /pinged"), "{diff}");
    s.rimg(["container", "commit", "web-ping", "pinged"]).ok();
    s.rimg(["container", "rm", "-f", "web-ping"]).ok();
    let out = s.rimg(["run", "--rm", "pinged", "ls", "/pinged"]).ok();
    assert_eq!(out, "/pinged\n");
    assert_no_mounts(s.dir.path());
}

#[test]
fn words_after_the_image_go_to_the_container() {
    let s = store();
    let _c = Cleanup(&s);
    // `--help`, `-i` and `-h` after the image are the container's, not rimg's.
    let out = s
        .rimg(["run", "--rm", "busybox", "echo", "--help", "-i", "-h"])
        .ok();
    assert_eq!(out, "--help -i -h\n");
    // Before the image, `-h` is the host name, as in Docker.
    let out = s
        .rimg([
            "container",
            "run",
            "--rm",
            "-h",
            "db",
            "busybox",
            "hostname",
        ])
        .ok();
    assert_eq!(out, "db\n");
    assert_no_mounts(s.dir.path());
}

#[test]
fn rimgs_own_usage_errors_exit_125() {
    let s = store();
    let out = s
        .rimg(["run", "--no-such-flag", "busybox", "true"])
        .output();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
    let out = s.rimg(["container", "bogus"]).output();
    assert_eq!(out.status.code(), Some(125));
    // Help is not an error.
    let out = s.rimg(["container", "run", "--help"]).output();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: rimg container run"));
    assert!(s
        .root()
        .join("rimg/containers")
        .read_dir()
        .map_or(true, |mut d| d
            .all(|e| e.map_or(true, |e| e.file_name().len() != 64))));
}

#[test]
fn inspect_finds_the_container_before_the_image_of_the_same_name() {
    let s = store();
    let _c = Cleanup(&s);
    s.rimg(["tag", "busybox", "web"]).ok();
    s.rimg([
        "run", "-d", "--name", "web", "-e", "K=v", "busybox", "sleep", "30",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(&s.rimg(["inspect", "web"]).ok()).unwrap();
    assert_eq!(v[0]["Name"], "/web");
    assert_eq!(v[0]["State"]["Status"], "running");
    assert_eq!(v[0]["State"]["Running"], true);
    assert!(v[0]["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(v[0]["Path"], "sleep");
    assert_eq!(v[0]["Args"], serde_json::json!(["30"]));
    assert!(v[0]["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "K=v"));
    let status = s
        .rimg([
            "container",
            "inspect",
            "-f",
            "{{.State.Status}} {{.Name}}",
            "web",
        ])
        .ok();
    assert_eq!(status, "running /web\n");
    // --type image looks only at images: the image `web` has RepoTags, no State.
    let img = s
        .rimg(["inspect", "--type", "image", "-f", "{{.RepoTags}}", "web"])
        .ok();
    assert!(img.starts_with('[') && img.contains("web:latest"), "{img}");
    s.rimg(["stop", "-t", "1", "web"]).ok();
    let exited = s.rimg(["inspect", "-f", "{{.State.Status}}", "web"]).ok();
    assert_eq!(exited, "exited\n");
    let out = s.rimg(["inspect", "nothing-here"]).output();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such object: nothing-here"));
    let out = s.rimg(["container", "inspect", "busybox"]).output();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such container: busybox"));
}

#[test]
fn version_and_info_answer_as_docker_does() {
    let s = store();
    let _c = Cleanup(&s);
    let v = s.rimg(["version", "--format", "{{.Client.Version}}"]).ok();
    assert_eq!(v.trim(), env!("CARGO_PKG_VERSION"));
    s.rimg(["create", "--name", "idle", "busybox", "true"]).ok();
    let counts = s
        .rimg([
            "info",
            "--format",
            "{{.Containers}} {{.ContainersStopped}} {{.Images}}",
        ])
        .ok();
    assert_eq!(counts, "1 1 1\n");
    let text = s.rimg(["system", "info"]).ok();
    assert!(text.contains(" Containers: 1\n"), "{text}");
    assert!(
        text.contains(&format!(" Docker Root Dir: {}\n", s.root().display())),
        "{text}"
    );
}

#[test]
fn forced_removal_of_what_does_not_exist_is_not_an_error() {
    let s = store();
    assert_eq!(
        s.rimg(["rm", "-f", "nothing"]).output().status.code(),
        Some(0)
    );
    assert_eq!(
        s.rimg(["rmi", "-f", "nothing"]).output().status.code(),
        Some(0)
    );
    let out = s.rimg(["rm", "nothing"]).output();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such container: nothing"));
    assert_eq!(s.rimg(["rmi", "nothing"]).output().status.code(), Some(1));
}
