//! Commit: a new image from a base image, an optional new layer and one history entry, with
//! `-c` config changes applied. `rimg commit` goes through [`commit_image`]; the
//! builder's steps only compute configs with [`commit_config`] (a step's state is a config,
//! and only the build's last state becomes an image). [`commit_upper`] is the whole of
//! `rimg commit CONTAINER`'s storage work: the container's upper dir streamed as a layer into
//! the store, then the image.
//!
//! ```text
//!  upper dir ──write_upper_layer──▶ pipe ──stage_layer (hash + index)──▶ publish_layer
//!                                                                          │ diff_id
//!  base config + diff_id + history + -c changes ──▶ Images::create (config, manifest, tags)
//! ```

use std::io;
use std::path::Path;

use rimg_fs::store::{LayerInfo, StoreError, WriteLayerError};
use rimg_fs::union::UnionTree;
use rimg_fs::upper::{write_upper_layer, LayerOptions, UpperError};
use rimg_fs::Digest;

use super::change::{apply_change, ChangeError, ChangeState};
use super::{History, Image, ImageConfig, ImageError, Images, Reference};
use crate::units;

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A `-c` instruction is unsupported or malformed.
    #[error("invalid change {line:?}")]
    Change {
        /// The instruction as given.
        line: String,
        /// What is wrong with it.
        source: ChangeError,
    },
    /// The upper dir could not be read or written as a layer.
    #[error(transparent)]
    Upper(#[from] UpperError),
    /// The store refused the layer or a document.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Images could not be read or written.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// The config of the committed image: `base`'s (or an empty one for this host), with
/// `layer`'s diff_id appended when there is one, `history` appended (its `created` defaulting
/// to now, or `SOURCE_DATE_EPOCH`; `empty_layer` set when there is no layer), `created` and
/// `author` taken from it, and the `-c` instructions applied in order (CMD, ENTRYPOINT, ENV,
/// EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD; anything else is refused).
/// Pure: it reads and writes nothing.
pub fn commit_config(
    base: Option<&ImageConfig>,
    layer: Option<&Digest>,
    mut history: History,
    config_changes: &[String],
) -> Result<ImageConfig, CommitError> {
    let mut config = base.cloned().unwrap_or_else(ImageConfig::new_for_host);
    let shell = config.config.shell.clone().unwrap_or_default();
    let mut state = ChangeState::default();
    for line in config_changes {
        apply_change(&mut config.config, &mut state, line, &shell).map_err(|source| {
            CommitError::Change {
                line: line.clone(),
                source,
            }
        })?;
    }
    let created = history.created.clone().unwrap_or_else(|| {
        units::rfc3339(units::source_date_epoch().unwrap_or_else(units::now_unix))
    });
    history.created = Some(created.clone());
    history.empty_layer = layer.is_none();
    config.created = Some(created);
    if history.author.is_some() {
        config.author = history.author.clone();
    }
    if let Some(d) = layer {
        config.rootfs.diff_ids.push(*d);
    }
    config.history.push(history);
    Ok(config)
}

/// Writes the image [`commit_config`] describes and moves `tags` to it (an image without tags
/// is listed as `<none>`, as `docker commit` without a name leaves it). `layer` must already
/// be in the store. With no layer the image gets an `empty_layer` history entry and the base's
/// layers (what a builder's ENV or CMD step makes); `rimg commit` always passes the container's
/// layer, even an empty one, as Docker does.
///
/// Cost: one config and one manifest blob (each fsynced) and one `index.json` update.
pub fn commit_image(
    images: &Images,
    base: Option<&Image>,
    layer: Option<&Digest>,
    history: History,
    config_changes: &[String],
    tags: &[Reference],
) -> Result<Image, CommitError> {
    let config = commit_config(base.map(|b| &b.config), layer, history, config_changes)?;
    let layers = config.rootfs.diff_ids.clone();
    Ok(images.create(&layers, config, tags)?)
}

/// The union tree of `image`'s layers, bottom first: what its containers see below their
/// upper dir. Layers written by other tools are decompressed and indexed first if needed.
pub fn image_tree(images: &Images, image: &Image) -> Result<UnionTree, ImageError> {
    let diff_ids = images.ensure_layers(image)?;
    layers_tree(images, &diff_ids)
}

/// The union tree of stored layers (bottom first), from their persisted indexes.
pub fn layers_tree(images: &Images, diff_ids: &[Digest]) -> Result<UnionTree, ImageError> {
    let mut indexes = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        indexes.push(images.store().layer_index(d)?);
    }
    Ok(UnionTree::build(&indexes))
}

/// Streams the upper dir into the store as one layer ([`write_upper_layer`] writing into a
/// pipe, the store hashing and indexing from the other end; no temporary copy of the tar and
/// nothing buffered whole). The layer is published only if the whole upper dir was written.
/// The caller holds a store lease until an image references the layer.
pub fn store_upper_layer(
    images: &Images,
    upper: &Path,
    lower: &UnionTree,
    opts: &LayerOptions,
) -> Result<LayerInfo, CommitError> {
    let broken_pipe =
        |e: &UpperError| matches!(e, UpperError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe);
    images
        .store()
        .ingest_layer_from(|w| write_upper_layer(upper, lower, w, opts), broken_pipe)
        .map_err(|e| match e {
            WriteLayerError::Writer(w) => w.into(),
            WriteLayerError::Store(s) => s.into(),
        })
}

/// `rimg commit CONTAINER`'s storage work in one call: `base`'s tree, the upper dir stored as
/// a layer ([`store_upper_layer`]), and the image ([`commit_image`]), all under one store
/// lease so garbage collection cannot take the new layer before the image names it.
pub fn commit_upper(
    images: &Images,
    base: &Image,
    upper: &Path,
    opts: &LayerOptions,
    history: History,
    config_changes: &[String],
    tags: &[Reference],
) -> Result<Image, CommitError> {
    let _lease = images.store().lease()?;
    // Refuse bad -c lines before any work.
    commit_config(Some(&base.config), None, History::default(), config_changes)?;
    let lower = image_tree(images, base)?;
    let layer = store_upper_layer(images, upper, &lower, opts)?;
    commit_image(
        images,
        Some(base),
        Some(&layer.digest),
        history,
        config_changes,
        tags,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gets_layer_history_and_changes() {
        let mut base = ImageConfig::new_for_host();
        base.config.cmd = Some(vec!["sh".into()]);
        base.config.working_dir = Some("/diamol".into());
        let d = Digest::of(b"layer");
        let h = History {
            created: Some("2026-01-02T03:04:05Z".into()),
            created_by: Some("sh -c echo".into()),
            author: Some("jslee".into()),
            comment: Some("solution".into()),
            ..Default::default()
        };
        let c = commit_config(
            Some(&base),
            Some(&d),
            h,
            &[
                "ENV A=1".into(),
                "WORKDIR sub".into(),
                "CMD [\"cat\", \"x\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.rootfs.diff_ids, [d]);
        assert_eq!(c.history.len(), 1);
        assert!(!c.history[0].empty_layer);
        assert_eq!(c.created.as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(c.author.as_deref(), Some("jslee"));
        assert_eq!(c.env_value("A"), Some("1"));
        assert_eq!(c.config.working_dir.as_deref(), Some("/diamol/sub"));
        assert_eq!(
            c.config.cmd.as_deref(),
            Some(&["cat".to_string(), "x".into()][..])
        );

        let empty = commit_config(Some(&c), None, History::default(), &[]).unwrap();
        assert_eq!(empty.rootfs.diff_ids, [d]);
        assert!(empty.history[1].empty_layer);
        assert!(empty.history[1].created.is_some());
    }

    #[test]
    fn committed_images_are_listed_with_or_without_tags() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(dir.path()).unwrap();
        let _lease = images.store().lease().unwrap();
        let h = || History {
            created: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let tag = Reference::parse("c:v1").unwrap();
        let listed = commit_image(&images, None, None, h(), &["ENV A=1".into()], &[tag]).unwrap();
        assert_eq!(images.resolve("c:v1").unwrap().id, listed.id);
        let untagged =
            commit_image(&images, Some(&listed), None, h(), &["ENV B=2".into()], &[]).unwrap();
        assert_eq!(untagged.config.env_value("A"), Some("1"));
        assert_eq!(untagged.config.history.len(), 2);
        assert!(images.list().unwrap().iter().any(|i| i.id == untagged.id));
    }

    #[test]
    fn unsupported_changes_are_refused_by_name() {
        let err =
            commit_config(None, None, History::default(), &["RUN rm -rf /".into()]).unwrap_err();
        let err = crate::error_line(&err);
        assert!(
            err.contains("RUN rm -rf /") && err.contains("not a supported"),
            "{err}"
        );
    }
}
