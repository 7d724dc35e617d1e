//! When a built image was created: the build's time (`images` shows "N seconds ago", newest
//! first), kept by a fully cached rebuild (same image id), and `SOURCE_DATE_EPOCH` when set,
//! as BuildKit does.

use rimg_tests::Store;

const DOCKERFILE: &str = "FROM busybox\nRUN echo hi > /x\nCMD [\"sh\"]\n";

fn build(s: &Store, ctx: &std::path::Path, extra: &[&str], epoch: Option<&str>) -> String {
    let mut cmd = s.rimg(["build", "-q"]).args(extra).arg(ctx);
    if let Some(e) = epoch {
        cmd = cmd.env("SOURCE_DATE_EPOCH", e);
    }
    cmd.ok().trim().to_string()
}

fn created(s: &Store, image: &str) -> String {
    s.rimg(["inspect", "-f", "{{.Created}}", image])
        .ok()
        .trim()
        .to_string()
}

#[test]
fn a_fresh_build_shows_its_build_time_and_source_date_epoch_pins_it() {
    let s = Store::new();
    // An old base: created in 2023.
    s.rimg(["import", "-c", "CMD [\"sh\"]"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg(rimg_tests::busybox_tar())
        .arg("busybox")
        .ok();
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();

    let before = rimg::units::now_unix();
    let id = build(&s, &ctx, &["-t", "fresh"], None);
    let t = created(&s, "fresh");
    assert!(
        rimg::units::parse_rfc3339(&t) >= Some(before),
        "created {t}, build started at {before}"
    );
    let rows = s
        .rimg(["images", "--format", "{{.Repository}}\t{{.CreatedSince}}"])
        .ok();
    let first = rows.lines().next().unwrap();
    assert!(first.starts_with("fresh\t"), "newest first: {rows}");
    assert!(
        first.ends_with("seconds ago") || first.ends_with("second ago"),
        "{rows}"
    );
    // `history`'s newest row, the RUN step: created seconds ago too.
    let history = s.rimg(["history", "fresh"]).ok();
    assert!(
        history.lines().nth(1).unwrap().contains(" second"),
        "{history}"
    );

    // Fully cached: the same image, its time kept.
    assert_eq!(build(&s, &ctx, &["-t", "fresh"], None), id);
    assert_eq!(created(&s, "fresh"), t);

    // SOURCE_DATE_EPOCH: the image and its new history entries carry it.
    build(
        &s,
        &ctx,
        &["--no-cache", "-t", "pinned"],
        Some("1600000000"),
    );
    assert_eq!(created(&s, "pinned"), "2020-09-13T12:26:40Z");
    let history = s.rimg(["history", "pinned"]).ok();
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert!(rows.iter().all(|r| r.contains("years ago")), "{history}");
}
