//! `rename`: a container's name changed under the containers' `.lock`, the lock `create`
//! takes, so two containers never share a name.

use std::fs::File;

use super::{names, write_json, Container, ContainerError, Containers, Result};

impl Containers {
    /// Takes the containers' `.lock` (held while the returned file is open): names are
    /// checked and changed only under it.
    pub(crate) fn lock_names(&self) -> Result<File> {
        Ok(super::lock_exclusive(&self.dir.join(".lock"))?)
    }

    /// Renames the container `key` (name, id or id prefix) to `new_name`, as Docker does:
    /// the new name must be valid, differ from the current one and be free.
    pub fn rename(&self, key: &str, new_name: &str) -> Result<Container> {
        let _lock = self.lock_names()?;
        let mut c = self.resolve(key)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if new_name.is_empty() {
            return Err(ContainerError::Rename(
                "Neither old nor new names may be empty".into(),
            ));
        }
        if !names::is_valid(new_name) {
            return Err(ContainerError::InvalidName(new_name.to_string()));
        }
        if c.name() == new_name {
            return Err(ContainerError::Rename(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = self.list()?.iter().find(|o| o.name() == new_name) {
            return Err(ContainerError::NameTaken {
                name: new_name.to_string(),
                id: other.id().to_string(),
            });
        }
        c.config.name = new_name.to_string();
        write_json(&c.dir.join("config.json"), &c.config)?;
        Ok(c)
    }
}
