//! `RUN --mount=...`: every mount type BuildKit accepts, parsed into a typed value with its
//! options, so that `kiln plan` can show exactly what a RUN asks for and a build can refuse it
//! by name; `kiln build` executes all but `ssh` and `from=`.

use std::fmt;

/// One `--mount` of a RUN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Mount {
    /// A directory or file of the context, a stage or an image (read-only unless `rw`).
    Bind {
        /// Where it appears in the RUN.
        target: String,
        /// Path in the source; its root when absent.
        source: Option<String>,
        /// Stage or image; the build context when absent.
        from: Option<String>,
        /// `rw`: writes are allowed (and discarded).
        readwrite: bool,
    },
    /// A persistent cache directory shared between builds.
    Cache {
        /// Where it appears in the RUN.
        target: String,
        /// Cache identity; the target when absent.
        id: Option<String>,
        /// How concurrent builds share it.
        sharing: Sharing,
        /// Stage or image seeding the cache.
        from: Option<String>,
        /// Sub-path of `from`.
        source: Option<String>,
        /// `ro`.
        readonly: bool,
        /// Mode of a new cache directory (default 0755).
        mode: Option<u32>,
        /// Owner of a new cache directory.
        uid: Option<u32>,
        /// Group of a new cache directory.
        gid: Option<u32>,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Where it appears in the RUN.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A build secret as a file (or an environment variable).
    Secret {
        /// Secret id.
        id: String,
        /// File path; `/run/secrets/<id>` when neither this nor `env` is given.
        target: Option<String>,
        /// Environment variable to expose it as.
        env: Option<String>,
        /// Fail when the secret is not provided.
        required: bool,
        /// File mode (default 0400).
        mode: Option<u32>,
        /// File owner.
        uid: Option<u32>,
        /// File group.
        gid: Option<u32>,
    },
    /// The SSH agent socket.
    Ssh {
        /// Agent id (`default` when absent).
        id: String,
        /// Socket path.
        target: Option<String>,
        /// Fail when no agent is provided.
        required: bool,
        /// Socket mode (default 0600).
        mode: Option<u32>,
        /// Socket owner.
        uid: Option<u32>,
        /// Socket group.
        gid: Option<u32>,
    },
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Concurrent builds use it at once (the default).
    #[default]
    Shared,
    /// Each concurrent build gets its own.
    Private,
    /// Concurrent builds wait for each other.
    Locked,
}

impl Mount {
    /// Parses the CSV value of one `--mount` flag (`type=cache,target=/root/.cache,id=x`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut fields = Fields::default();
        let mut kind = "bind".to_owned();
        for field in value.split(',').filter(|f| !f.is_empty()) {
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            let text = || {
                val.map(str::to_owned)
                    .ok_or_else(|| format!("--mount={value}: {key} needs a value ({key}=...)"))
            };
            match key.as_str() {
                "type" => kind = text()?.to_ascii_lowercase(),
                "target" | "dst" | "destination" => fields.target = Some(text()?),
                "source" | "src" => fields.source = Some(text()?),
                "from" => fields.from = Some(text()?),
                "id" => fields.id = Some(text()?),
                "env" => fields.env = Some(text()?),
                "readonly" | "ro" => fields.readonly = Some(flag(value, &key, val)?),
                "readwrite" | "rw" => fields.readonly = Some(!flag(value, &key, val)?),
                "required" => fields.required = flag(value, &key, val)?,
                "sharing" => {
                    fields.sharing = match text()?.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        other => {
                            return Err(format!(
                                "--mount={value}: unsupported sharing value {other:?} (shared, private or locked)"
                            ));
                        }
                    }
                }
                "mode" => {
                    let v = text()?;
                    fields.mode = Some(u32::from_str_radix(&v, 8).map_err(|_| {
                        format!("--mount={value}: mode {v:?} is not an octal number")
                    })?);
                }
                "uid" => fields.uid = Some(number(value, &key, &text()?)?),
                "gid" => fields.gid = Some(number(value, &key, &text()?)?),
                "size" => fields.size = Some(size(value, &text()?)?),
                _ => return Err(format!("--mount={value}: unexpected key {key:?}")),
            }
        }
        fields.into_mount(&kind, value)
    }

    /// The `from=` of a bind or cache mount: a stage or image it reads instead of the context.
    pub fn from(&self) -> Option<&str> {
        match self {
            Self::Bind { from, .. } | Self::Cache { from, .. } => from.as_deref(),
            _ => None,
        }
    }

    /// The mount's `type=` word.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bind",
            Self::Cache { .. } => "cache",
            Self::Tmpfs { .. } => "tmpfs",
            Self::Secret { .. } => "secret",
            Self::Ssh { .. } => "ssh",
        }
    }
}

#[derive(Default)]
struct Fields {
    target: Option<String>,
    source: Option<String>,
    from: Option<String>,
    id: Option<String>,
    env: Option<String>,
    readonly: Option<bool>,
    required: bool,
    sharing: Sharing,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
}

impl Fields {
    fn into_mount(self, kind: &str, value: &str) -> Result<Mount, String> {
        let target = |t: Option<String>| {
            t.filter(|t| !t.is_empty())
                .ok_or_else(|| format!("--mount={value}: a {kind} mount needs target=<path>"))
        };
        let refuse = |present: bool, key: &str| {
            if present {
                Err(format!(
                    "--mount={value}: {key} is not an option of {kind} mounts"
                ))
            } else {
                Ok(())
            }
        };
        match kind {
            "bind" => {
                refuse(self.id.is_some(), "id")?;
                refuse(self.env.is_some(), "env")?;
                refuse(self.size.is_some(), "size")?;
                Ok(Mount::Bind {
                    target: target(self.target)?,
                    source: self.source,
                    from: self.from,
                    readwrite: self.readonly == Some(false),
                })
            }
            "cache" => {
                refuse(self.env.is_some(), "env")?;
                refuse(self.size.is_some(), "size")?;
                Ok(Mount::Cache {
                    target: target(self.target)?,
                    id: self.id,
                    sharing: self.sharing,
                    from: self.from,
                    source: self.source,
                    readonly: self.readonly == Some(true),
                    mode: self.mode,
                    uid: self.uid,
                    gid: self.gid,
                })
            }
            "tmpfs" => {
                refuse(self.from.is_some(), "from")?;
                refuse(self.source.is_some(), "source")?;
                refuse(self.id.is_some(), "id")?;
                Ok(Mount::Tmpfs {
                    target: target(self.target)?,
                    size: self.size,
                })
            }
            "secret" => {
                refuse(self.from.is_some(), "from")?;
                let base = |t: &String| t.rsplit('/').next().unwrap_or_default().to_owned();
                let id = self
                    .id
                    .or(self.source)
                    .or_else(|| self.target.as_ref().map(base))
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| {
                        format!("--mount={value}: a secret mount needs id=<id> or target=<path>")
                    })?;
                Ok(Mount::Secret {
                    id,
                    target: self.target,
                    env: self.env,
                    required: self.required,
                    mode: self.mode,
                    uid: self.uid,
                    gid: self.gid,
                })
            }
            "ssh" => {
                refuse(self.from.is_some(), "from")?;
                refuse(self.env.is_some(), "env")?;
                Ok(Mount::Ssh {
                    id: self.id.unwrap_or_else(|| "default".to_owned()),
                    target: self.target,
                    required: self.required,
                    mode: self.mode,
                    uid: self.uid,
                    gid: self.gid,
                })
            }
            other => Err(format!(
                "--mount={value}: unsupported mount type {other:?} (bind, cache, tmpfs, secret or ssh)"
            )),
        }
    }
}

fn flag(value: &str, key: &str, val: Option<&str>) -> Result<bool, String> {
    match val.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("--mount={value}: {key}={other} is not a boolean")),
    }
}

fn number(value: &str, key: &str, text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("--mount={value}: {key} {text:?} is not a number"))
}

/// `size=` of a tmpfs: bytes, or with a `k`, `m`, `g` (or `kb`, `mb`, `gb`) suffix.
fn size(value: &str, text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("--mount={value}: unknown size unit in {text:?}")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("--mount={value}: size {text:?} is not a size"))
}

impl fmt::Display for Mount {
    /// The `--mount` value again, in a canonical field order that [`Mount::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind())?;
        let opt = |f: &mut fmt::Formatter<'_>, key: &str, v: &Option<String>| match v {
            Some(v) => write!(f, ",{key}={v}"),
            None => Ok(()),
        };
        let ids = |f: &mut fmt::Formatter<'_>,
                   mode: &Option<u32>,
                   uid: &Option<u32>,
                   gid: &Option<u32>| {
            if let Some(m) = mode {
                write!(f, ",mode={m:o}")?;
            }
            if let Some(u) = uid {
                write!(f, ",uid={u}")?;
            }
            if let Some(g) = gid {
                write!(f, ",gid={g}")?;
            }
            Ok(())
        };
        match self {
            Self::Bind {
                target,
                source,
                from,
                readwrite,
            } => {
                write!(f, ",target={target}")?;
                opt(f, "source", source)?;
                opt(f, "from", from)?;
                if *readwrite {
                    f.write_str(",rw")?;
                }
                Ok(())
            }
            Self::Cache {
                target,
                id,
                sharing,
                from,
                source,
                readonly,
                mode,
                uid,
                gid,
            } => {
                write!(f, ",target={target}")?;
                opt(f, "id", id)?;
                let sharing = match sharing {
                    Sharing::Shared => "shared",
                    Sharing::Private => "private",
                    Sharing::Locked => "locked",
                };
                write!(f, ",sharing={sharing}")?;
                opt(f, "from", from)?;
                opt(f, "source", source)?;
                if *readonly {
                    f.write_str(",ro")?;
                }
                ids(f, mode, uid, gid)
            }
            Self::Tmpfs { target, size } => {
                write!(f, ",target={target}")?;
                match size {
                    Some(s) => write!(f, ",size={s}"),
                    None => Ok(()),
                }
            }
            Self::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                write!(f, ",id={id}")?;
                opt(f, "target", target)?;
                opt(f, "env", env)?;
                if *required {
                    f.write_str(",required")?;
                }
                ids(f, mode, uid, gid)
            }
            Self::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                write!(f, ",id={id}")?;
                opt(f, "target", target)?;
                if *required {
                    f.write_str(",required")?;
                }
                ids(f, mode, uid, gid)
            }
        }
    }
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The build's network (the host's, for kiln).
    #[default]
    Default,
    /// A fresh network namespace with only loopback.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// The normal sandbox.
    #[default]
    Sandbox,
    /// Full privileges (refused by kiln's builds).
    Insecure,
}

impl NetworkMode {
    /// Parses `default`, `none` or `host`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "default" => Ok(Self::Default),
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            other => Err(format!(
                "unsupported network mode {other:?} for RUN --network (default, none or host)"
            )),
        }
    }

    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::None => "none",
            Self::Host => "host",
        }
    }
}

impl SecurityMode {
    /// Parses `sandbox` or `insecure`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "sandbox" => Ok(Self::Sandbox),
            "insecure" => Ok(Self::Insecure),
            other => Err(format!(
                "unsupported security mode {other:?} for RUN --security (sandbox or insecure)"
            )),
        }
    }

    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Insecure => "insecure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mount_type_parses_with_its_options() {
        assert_eq!(
            Mount::parse("target=/src,from=build,source=/out,rw"),
            Ok(Mount::Bind {
                target: "/src".into(),
                source: Some("/out".into()),
                from: Some("build".into()),
                readwrite: true,
            })
        );
        assert_eq!(
            Mount::parse(
                "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1,gid=2"
            ),
            Ok(Mount::Cache {
                target: "/root/.cache".into(),
                id: Some("pip".into()),
                sharing: Sharing::Locked,
                from: None,
                source: None,
                readonly: false,
                mode: Some(0o700),
                uid: Some(1),
                gid: Some(2),
            })
        );
        assert_eq!(
            Mount::parse("type=tmpfs,dst=/tmp,size=64m"),
            Ok(Mount::Tmpfs {
                target: "/tmp".into(),
                size: Some(64 << 20),
            })
        );
        assert_eq!(
            Mount::parse("type=secret,target=/run/token,required=true,env=TOKEN"),
            Ok(Mount::Secret {
                id: "token".into(),
                target: Some("/run/token".into()),
                env: Some("TOKEN".into()),
                required: true,
                mode: None,
                uid: None,
                gid: None,
            })
        );
        assert_eq!(
            Mount::parse("type=ssh"),
            Ok(Mount::Ssh {
                id: "default".into(),
                target: None,
                required: false,
                mode: None,
                uid: None,
                gid: None,
            })
        );
    }

    #[test]
    fn formatted_mounts_parse_back_to_the_same_value() {
        for text in [
            "type=bind,target=/a,source=b,from=c,rw",
            "type=cache,target=/c,id=x,sharing=private,ro,mode=755,uid=0,gid=0",
            "type=tmpfs,target=/t,size=1024",
            "type=secret,id=s,target=/s,env=S,required,mode=400",
            "type=ssh,id=default,target=/agent,required",
        ] {
            let mount = Mount::parse(text).expect(text);
            assert_eq!(Mount::parse(&mount.to_string()), Ok(mount), "{text}");
        }
    }

    #[test]
    fn mistakes_name_the_mount() {
        for (bad, why) in [
            ("type=cache", "needs target"),
            ("type=nfs,target=/a", "unsupported mount type"),
            ("target=/a,bogus=1", "unexpected key"),
            ("type=cache,target=/a,sharing=all", "sharing"),
            ("type=cache,target=/a,mode=9", "octal"),
            ("type=secret", "needs id"),
            ("type=tmpfs,target=/a,size=1q", "size unit"),
            ("type=bind,target=/a,ro=maybe", "boolean"),
        ] {
            let e = Mount::parse(bad).expect_err(bad);
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn network_and_security_modes() {
        assert_eq!(NetworkMode::parse("none"), Ok(NetworkMode::None));
        assert!(NetworkMode::parse("bridge").is_err());
        assert_eq!(SecurityMode::parse("insecure"), Ok(SecurityMode::Insecure));
        assert!(SecurityMode::parse("x").is_err());
    }
}
