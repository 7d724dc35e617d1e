//! `USER` / `-u` resolution through the container's own `/etc/passwd` and `/etc/group`, with
//! runc's rules: a name must exist; a number need not (group 0, home `/`); without an
//! explicit group the user's primary group and every group listing the user as a member
//! apply.

/// The identity a container process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Home directory (for `HOME`).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, empty for root) against the
/// texts of `/etc/passwd` and `/etc/group` (empty when the image has none). The error is
/// the message Docker prints.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<ExecUser, String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let numeric_uid = u.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric_uid {
        Some(n) => e.uid == n,
        None => e.name == u,
    });
    let (uid, mut gid, home, name) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Some(n)) => (n, 0, "/".to_string(), None),
        (None, None) => {
            return Err(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        }
    };
    let mut groups = Vec::new();
    match g {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?,
            };
            groups.push(gid);
        }
        _ => {
            groups.push(gid);
            if let Some(name) = name {
                for e in group_entries(group) {
                    if e.members.contains(&name) && !groups.contains(&e.gid) {
                        groups.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          user:x:1000:1000:user:/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:user,other\nuser:x:1000:\nwheel:x:10:root\n";

    type Want = Result<(u32, u32, &'static [u32], &'static str), &'static str>;

    #[test]
    fn resolves_names_numbers_and_groups_as_runc_does() {
        let cases: &[(&str, Want)] = &[
            ("", Ok((0, 0, &[0, 10], "/root"))),
            ("root", Ok((0, 0, &[0, 10], "/root"))),
            ("user", Ok((1000, 1000, &[1000, 100], "/home/user"))),
            ("1000", Ok((1000, 1000, &[1000, 100], "/home/user"))),
            ("4242", Ok((4242, 0, &[0], "/"))),
            ("user:users", Ok((1000, 100, &[100], "/home/user"))),
            ("1000:55", Ok((1000, 55, &[55], "/home/user"))),
            (
                "nobody",
                Err("unable to find user nobody: no matching entries in passwd file"),
            ),
            (
                "user:nogroup",
                Err("unable to find group nogroup: no matching entries in group file"),
            ),
        ];
        for (spec, want) in cases {
            let got = resolve_user(spec, PASSWD, GROUP);
            match want {
                Ok((uid, gid, groups, home)) => {
                    let got = got.unwrap();
                    assert_eq!(
                        (got.uid, got.gid, got.groups.as_slice(), got.home.as_str()),
                        (*uid, *gid, *groups, *home),
                        "{spec}"
                    );
                }
                Err(m) => assert_eq!(got.unwrap_err(), *m, "{spec}"),
            }
        }
    }
}
