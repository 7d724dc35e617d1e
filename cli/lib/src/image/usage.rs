//! `system df`: the store's disk usage as Docker accounts it. A layer counts once however
//! many images share it; an image's SHARED SIZE is its layers another image also uses;
//! RECLAIMABLE is the total less the unique size of every image a container uses; the build
//! cache counts the layers it pins that no image holds.

use std::collections::{BTreeSet, HashMap};

use rimg_fs::Digest;

use super::{Image, Images, Result, CONTAINER_PIN_PREFIX};
use crate::builder::cache::BUILD_PIN_PREFIX;

/// One image's line of `system df -v`.
#[derive(Clone, Debug)]
pub struct ImageUsage {
    /// The image.
    pub image: Image,
    /// SIZE: the sum of its layers.
    pub size: u64,
    /// SHARED SIZE: its layers that another image uses too.
    pub shared: u64,
    /// CONTAINERS: how many containers use it.
    pub containers: usize,
}

impl ImageUsage {
    /// UNIQUE SIZE: the layers only this image uses.
    pub fn unique(&self) -> u64 {
        self.size - self.shared
    }
}

/// One build cache entry of `system df -v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    /// The pin's name without its prefix.
    pub id: String,
    /// The layers it pins that no image holds.
    pub size: u64,
    /// Whether an image holds one of its layers too.
    pub in_use: bool,
}

/// The store's disk usage.
#[derive(Clone, Debug)]
pub struct DiskUsage {
    /// Each image once (by id), newest first.
    pub images: Vec<ImageUsage>,
    /// Images' SIZE: every layer of every image, each counted once.
    pub images_size: u64,
    /// Images' RECLAIMABLE: [`DiskUsage::images_size`] less what images in use hold alone.
    pub reclaimable: u64,
    /// Images' ACTIVE: how many images a container uses.
    pub active: usize,
    /// Containers' TOTAL.
    pub containers: usize,
    /// The build cache's entries.
    pub cache: Vec<CacheUsage>,
    /// Build cache's SIZE (all of it reclaimable): its layers no image holds, each once.
    pub cache_size: u64,
}

impl DiskUsage {
    /// Measures the images, pins and layers of a store; a layer is sized as Docker sizes it
    /// ([`super::layer_size`]), and one only the build cache holds as its blob.
    pub fn measure(images: &Images) -> Result<Self> {
        let list = images.list()?;
        let pins = images.pins()?;
        let sizes = images.layer_sizes(&list);
        let store = images.store();
        Ok(Self::of(list, &pins, |d| {
            sizes
                .get(d)
                .copied()
                .unwrap_or_else(|| store.blob_size(d).unwrap_or(0))
        }))
    }

    /// The usage of `list` (every image, one entry per tag or several) given the store's pins
    /// and each layer's size.
    pub fn of(
        mut list: Vec<Image>,
        pins: &[(String, Vec<Digest>)],
        size_of: impl Fn(&Digest) -> u64,
    ) -> Self {
        list.sort_by(|x, y| y.config.created.cmp(&x.config.created));
        let mut ids = BTreeSet::new();
        list.retain(|img| ids.insert(img.id));

        let container_pins: Vec<&Vec<Digest>> = pins
            .iter()
            .filter(|(n, _)| n.starts_with(CONTAINER_PIN_PREFIX))
            .map(|(_, ds)| ds)
            .collect();
        let users = layer_users(&list);
        let all_layers: BTreeSet<Digest> = list
            .iter()
            .flat_map(|i| i.diff_ids().iter().copied())
            .collect();
        let images: Vec<ImageUsage> = list
            .into_iter()
            .map(|image| ImageUsage {
                size: image.diff_ids().iter().map(&size_of).sum(),
                shared: image
                    .diff_ids()
                    .iter()
                    .filter(|d| users.get(*d).copied().unwrap_or(0) > 1)
                    .map(&size_of)
                    .sum(),
                containers: container_pins
                    .iter()
                    .filter(|ds| ds.contains(&image.manifest_digest) || ds.contains(&image.id))
                    .count(),
                image,
            })
            .collect();
        let images_size: u64 = all_layers.iter().map(&size_of).sum();
        let in_use = || images.iter().filter(|i| i.containers > 0);
        let held_alone: u64 = in_use().map(ImageUsage::unique).sum();

        let cache: Vec<CacheUsage> = pins
            .iter()
            .filter_map(|(name, ds)| {
                let id = name.strip_prefix(BUILD_PIN_PREFIX)?;
                Some(CacheUsage {
                    id: id.to_string(),
                    size: ds
                        .iter()
                        .filter(|d| !all_layers.contains(d))
                        .map(&size_of)
                        .sum(),
                    in_use: ds.iter().any(|d| all_layers.contains(d)),
                })
            })
            .collect();
        let cache_layers: BTreeSet<&Digest> = pins
            .iter()
            .filter(|(name, _)| name.starts_with(BUILD_PIN_PREFIX))
            .flat_map(|(_, ds)| ds)
            .filter(|d| !all_layers.contains(d))
            .collect();

        DiskUsage {
            reclaimable: images_size.saturating_sub(held_alone),
            active: in_use().count(),
            containers: container_pins.len(),
            cache_size: cache_layers.into_iter().map(&size_of).sum(),
            images,
            images_size,
            cache,
        }
    }
}

/// How many images (by id) use each layer.
fn layer_users(images: &[Image]) -> HashMap<Digest, usize> {
    let mut users: HashMap<Digest, usize> = HashMap::new();
    let mut seen_ids = BTreeSet::new();
    for img in images {
        if !seen_ids.insert(img.id) {
            continue;
        }
        let unique: BTreeSet<&Digest> = img.diff_ids().iter().collect();
        for d in unique {
            *users.entry(*d).or_default() += 1;
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageConfig, Reference};

    fn layer(images: &Images, name: &str, size: usize) -> Digest {
        let data = vec![b'x'; size];
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        images.store().ingest_layer(&tar[..], None).unwrap().digest
    }

    fn image(images: &Images, layers: &[Digest], created: &str, tags: &[&str]) -> Image {
        let mut config = ImageConfig::new_for_host();
        config.created = Some(created.to_string());
        let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
        images.create(layers, config, &tags).unwrap()
    }

    /// `base` (1000 bytes) shared by `app` (+200) and `web` (+300); `app` has two tags and
    /// one container; a dangling `old` image holds a layer alone (50).
    struct Fixture {
        _dir: tempfile::TempDir,
        images: Images,
        app: Image,
        web: Image,
        base: Digest,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(dir.path()).unwrap();
        let base = layer(&images, "base", 1000);
        let a = layer(&images, "a", 200);
        let w = layer(&images, "w", 300);
        let o = layer(&images, "o", 50);
        let app = image(
            &images,
            &[base, a],
            "2024-01-03T00:00:00Z",
            &["app", "app:v1"],
        );
        let web = image(&images, &[base, w], "2024-01-02T00:00:00Z", &["web"]);
        image(&images, &[o], "2024-01-01T00:00:00Z", &[]);
        images
            .pin(&format!("{CONTAINER_PIN_PREFIX}c1"), &[app.manifest_digest])
            .unwrap();
        Fixture {
            _dir: dir,
            images,
            app,
            web,
            base,
        }
    }

    #[test]
    fn shared_layers_count_once_and_images_once() {
        let f = fixture();
        let u = DiskUsage::measure(&f.images).unwrap();
        // Three images (app's two tags are one image), newest first.
        let ids: Vec<Digest> = u.images.iter().map(|i| i.image.id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(&ids[..2], &[f.app.id, f.web.id]);
        assert_eq!(u.images_size, 1000 + 200 + 300 + 50);
        let app = &u.images[0];
        assert_eq!((app.size, app.shared, app.unique()), (1200, 1000, 200));
        let web = &u.images[1];
        assert_eq!((web.size, web.shared, web.unique()), (1300, 1000, 300));
        let old = &u.images[2];
        assert_eq!((old.size, old.shared, old.unique()), (50, 0, 50));
    }

    #[test]
    fn reclaimable_is_the_total_less_what_images_in_use_hold_alone() {
        let f = fixture();
        let u = DiskUsage::measure(&f.images).unwrap();
        assert_eq!(u.active, 1);
        assert_eq!(u.containers, 1);
        assert_eq!(
            u.images.iter().map(|i| i.containers).collect::<Vec<_>>(),
            [1, 0, 0]
        );
        // The shared base stays reclaimable: Docker subtracts only app's unique 200.
        assert_eq!(u.reclaimable, 1550 - 200);

        // A container of web (pinned by image id) makes web active too.
        f.images
            .pin(&format!("{CONTAINER_PIN_PREFIX}c2"), &[f.web.id])
            .unwrap();
        f.images
            .pin(
                &format!("{CONTAINER_PIN_PREFIX}c3"),
                &[f.web.manifest_digest],
            )
            .unwrap();
        let u = DiskUsage::measure(&f.images).unwrap();
        assert_eq!((u.active, u.containers), (2, 3));
        assert_eq!(u.images[1].containers, 2);
        assert_eq!(u.reclaimable, 1550 - 200 - 300);
    }

    #[test]
    fn build_cache_counts_the_layers_no_image_holds() {
        let f = fixture();
        let lone = layer(&f.images, "lone", 70);
        let lone_blob = f.images.store().blob_size(&lone).unwrap();
        f.images
            .pin(&format!("{BUILD_PIN_PREFIX}aaaa"), &[f.base, lone])
            .unwrap();
        f.images
            .pin(&format!("{BUILD_PIN_PREFIX}bbbb"), &[lone])
            .unwrap();
        let u = DiskUsage::measure(&f.images).unwrap();
        // A layer only the cache pins is measured as its blob, and counted once.
        assert_eq!(u.cache_size, lone_blob);
        assert_eq!(
            u.cache,
            [
                CacheUsage {
                    id: "aaaa".into(),
                    size: lone_blob,
                    in_use: true
                },
                CacheUsage {
                    id: "bbbb".into(),
                    size: lone_blob,
                    in_use: false
                },
            ]
        );
        // The cache is neither an image nor a container.
        assert_eq!((u.images.len(), u.containers), (3, 1));
        assert_eq!(u.images_size, 1550);
    }

    #[test]
    fn an_empty_store_uses_nothing() {
        let u = DiskUsage::of(Vec::new(), &[], |_| 1);
        assert_eq!(
            (
                u.images_size,
                u.reclaimable,
                u.active,
                u.containers,
                u.cache_size
            ),
            (0, 0, 0, 0, 0)
        );
    }
}
