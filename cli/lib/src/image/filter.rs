//! Which images `rimg images` lists, and as which rows: Docker's `images [PATTERN]` and
//! `--filter` (`dangling=`, `reference=`, `label=`), one row per tag and one `<none>` row per
//! dangling image.

use crate::glob;

use super::Image;

/// A `--filter` Docker's `images` would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not `KEY=VALUE`.
    #[error("invalid filter {0:?}: expected KEY=VALUE")]
    Syntax(String),
    /// `dangling=` with neither true nor false.
    #[error("invalid filter {0:?}: dangling takes true or false")]
    Dangling(String),
    /// A key rimg does not know (the key).
    #[error("invalid filter {0:?}: rimg images supports dangling, reference and label")]
    Unknown(String),
}

/// The selection of `rimg images`: every condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// Globs (Go's `path.Match`) a tag must match as `repo` or `repo:tag`; any one will do.
    references: Vec<String>,
    /// Only untagged images (`true`) or only tagged ones (`false`).
    dangling: Option<bool>,
    /// Labels the image must carry, with the value when one is given.
    labels: Vec<(String, Option<String>)>,
}

/// One row of `rimg images`.
#[derive(Clone, Debug)]
pub struct ImageRow<'a> {
    /// The image.
    pub image: &'a Image,
    /// The tag's repository (`busybox`, `localhost:5000/app`); `None` for a dangling image.
    pub repository: Option<String>,
    /// The tag (`latest` when the reference names none); `None` for a dangling image.
    pub tag: Option<String>,
    /// The registry digest recorded for this repository, if any.
    pub digest: Option<String>,
}

impl ImageFilter {
    /// The filter of `rimg images [PATTERN] [-f KEY=VALUE]...`.
    pub fn parse(pattern: Option<&str>, filters: &[String]) -> Result<Self, FilterError> {
        let mut f = ImageFilter {
            references: pattern.map(str::to_string).into_iter().collect(),
            ..Default::default()
        };
        for arg in filters {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| FilterError::Syntax(arg.clone()))?;
            match k {
                "dangling" => {
                    f.dangling = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(FilterError::Dangling(arg.clone())),
                    })
                }
                "reference" => f.references.push(v.to_string()),
                "label" => f.labels.push(match v.split_once('=') {
                    Some((lk, lv)) => (lk.to_string(), Some(lv.to_string())),
                    None => (v.to_string(), None),
                }),
                _ => return Err(FilterError::Unknown(k.to_string())),
            }
        }
        Ok(f)
    }

    /// Whether the image itself passes (dangling and label conditions).
    fn keeps(&self, img: &Image) -> bool {
        if self.dangling.is_some_and(|d| d != img.tags.is_empty()) {
            return false;
        }
        let labels = img.config.config.labels.as_ref();
        self.labels.iter().all(|(k, v)| {
            let have = labels.and_then(|l| l.get(k));
            match v {
                Some(v) => have == Some(v),
                None => have.is_some(),
            }
        })
    }

    /// Whether a tag passes the reference globs, matched against `repo` and `repo:tag`.
    fn keeps_tag(&self, repo: &str, full: &str) -> bool {
        self.references.is_empty()
            || self
                .references
                .iter()
                .any(|p| glob::matches(p, repo) || glob::matches(p, full))
    }

    /// The rows of `images`, in their order: one per tag that passes, and one for a dangling
    /// image unless a reference is asked for (an untagged image matches no reference).
    pub fn rows<'a>(&self, images: &'a [Image]) -> Vec<ImageRow<'a>> {
        let mut rows = Vec::new();
        for img in images.iter().filter(|i| self.keeps(i)) {
            if img.tags.is_empty() {
                if self.references.is_empty() {
                    rows.push(ImageRow {
                        image: img,
                        repository: None,
                        tag: None,
                        digest: None,
                    });
                }
                continue;
            }
            for t in &img.tags {
                let repo = t.repository();
                let tag = t.tag_or_latest().to_string();
                if !self.keeps_tag(&repo, &format!("{repo}:{tag}")) {
                    continue;
                }
                let digest = img.repo_digests.iter().find_map(|rd| {
                    rd.split_once('@')
                        .filter(|(r, _)| *r == repo)
                        .map(|(_, d)| d.to_string())
                });
                rows.push(ImageRow {
                    image: img,
                    repository: Some(repo),
                    tag: Some(tag),
                    digest,
                });
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::{ImageConfig, Images, Reference};

    /// A store with: `web-ping:v2` and `web-ping:latest` (one image, labelled
    /// `app=ping`), `busybox` and `team/tool` (one image, labelled `tier`), and a dangling
    /// image.
    fn fixture() -> (tempfile::TempDir, Vec<Image>) {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(dir.path()).unwrap();
        let make = |labels: &[(&str, &str)], tags: &[&str]| {
            let mut config = ImageConfig::new_for_host();
            if !labels.is_empty() {
                config.config.labels = Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                );
            }
            // Distinct configs, so distinct images.
            config.author = Some(tags.join(","));
            let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
            images.create(&[], config, &tags).unwrap()
        };
        let mut ping = make(&[("app", "ping")], &["web-ping:v2", "web-ping"]);
        ping.repo_digests = vec![format!("web-ping@{}", rimg_fs::Digest::of(b"m"))];
        let busybox = make(&[("tier", "")], &["busybox", "team/tool"]);
        let dangling = make(&[], &[]);
        (dir, vec![ping, busybox, dangling])
    }

    fn names(rows: &[ImageRow]) -> Vec<String> {
        rows.iter()
            .map(|r| match (&r.repository, &r.tag) {
                (Some(r), Some(t)) => format!("{r}:{t}"),
                _ => "<none>".into(),
            })
            .collect()
    }

    fn listed(pattern: Option<&str>, filters: &[&str]) -> Vec<String> {
        let (_dir, list) = fixture();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        names(&ImageFilter::parse(pattern, &filters).unwrap().rows(&list))
    }

    #[test]
    fn every_tag_is_a_row_and_a_dangling_image_is_none() {
        assert_eq!(
            listed(None, &[]),
            [
                "web-ping:latest",
                "web-ping:v2",
                "busybox:latest",
                "team/tool:latest",
                "<none>"
            ]
        );
        let (_dir, list) = fixture();
        let rows = ImageFilter::default().rows(&list);
        assert_eq!(
            rows[0].digest,
            Some(rimg_fs::Digest::of(b"m").to_string()),
            "the repo digest shows on the repository's rows"
        );
        assert_eq!(rows[2].digest, None);
    }

    #[test]
    fn patterns_match_repository_or_repository_and_tag() {
        assert_eq!(listed(Some("w*"), &[]), ["web-ping:latest", "web-ping:v2"]);
        assert_eq!(listed(Some("web-ping:v?"), &[]), ["web-ping:v2"]);
        assert_eq!(listed(Some("busybox"), &[]), ["busybox:latest"]);
        // `*` does not cross `/`, and a pattern never lists a dangling image.
        assert_eq!(
            listed(Some("*"), &[]),
            ["web-ping:latest", "web-ping:v2", "busybox:latest"]
        );
        assert_eq!(listed(Some("*/*"), &[]), ["team/tool:latest"]);
        assert_eq!(listed(Some("*:v2"), &[]), ["web-ping:v2"]);
        // Several references: any one will do.
        assert_eq!(
            listed(Some("busybox"), &["reference=*:v2"]),
            ["web-ping:v2", "busybox:latest"]
        );
    }

    #[test]
    fn bracket_bang_is_literal_as_in_go() {
        // Issue 19: `[!w]*` is the class of `!` and `w`, so it lists web-ping, not busybox.
        assert_eq!(
            listed(Some("[!w]*"), &[]),
            ["web-ping:latest", "web-ping:v2"]
        );
        assert_eq!(listed(Some("[^w]*"), &[]), ["busybox:latest"]);
    }

    #[test]
    fn dangling_and_label_filters() {
        assert_eq!(listed(None, &["dangling=true"]), ["<none>"]);
        assert_eq!(
            listed(None, &["dangling=0"]),
            [
                "web-ping:latest",
                "web-ping:v2",
                "busybox:latest",
                "team/tool:latest"
            ]
        );
        assert_eq!(
            listed(None, &["label=app"]),
            ["web-ping:latest", "web-ping:v2"]
        );
        assert_eq!(
            listed(None, &["label=app=ping"]),
            ["web-ping:latest", "web-ping:v2"]
        );
        assert!(listed(None, &["label=app=pong"]).is_empty());
        // An empty value is still a value, and the label must be there.
        assert_eq!(
            listed(None, &["label=tier="]),
            ["busybox:latest", "team/tool:latest"]
        );
        assert!(listed(None, &["label=app", "label=tier"]).is_empty());
    }

    #[test]
    fn bad_filters_are_refused_with_dockers_words() {
        let parse = |f: &str| ImageFilter::parse(None, &[f.to_string()]).unwrap_err();
        assert_eq!(
            parse("dangling").to_string(),
            "invalid filter \"dangling\": expected KEY=VALUE"
        );
        assert_eq!(
            parse("dangling=maybe").to_string(),
            "invalid filter \"dangling=maybe\": dangling takes true or false"
        );
        assert_eq!(
            parse("before=x").to_string(),
            "invalid filter \"before\": rimg images supports dangling, reference and label"
        );
    }
}
