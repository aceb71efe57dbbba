//! `!SSHCluster` and `!AWSCluster`: hosts and their addresses, login,
//! setup commands, and EC2's instance fields.

use super::Cx;
use crate::checks;
use crate::decode::{self, Fields, no_tag};
use crate::error::ConfigError;
use crate::model::*;
use crate::yaml::{Node, NodeKind};

/// [`Cx::login`]'s fields.
pub(super) struct Login {
    pub username: String,
    pub key: std::path::PathBuf,
    pub use_public: bool,
    pub port: u16,
    pub setup_cmds: Vec<String>,
}

const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

impl Cx<'_> {
    fn address(&self, node: &Node, what: &str) -> Result<HostAddr, ConfigError> {
        no_tag(self.src, node, what)?;
        let (public, private) = match &node.kind {
            NodeKind::Seq(items) if items.len() == 2 => (
                self.host(&items[0], &format!("the public address of {what}"))?,
                self.host(&items[1], &format!("the private address of {what}"))?,
            ),
            NodeKind::Seq(items) => {
                return Err(self
                    .err(
                        node,
                        format!("{what} is a list of {} addresses", items.len()),
                    )
                    .expected("one address, or a `[public, private]` pair"));
            }
            _ => {
                let a = self.host(node, what)?;
                (a.clone(), a)
            }
        };
        Ok(HostAddr { public, private })
    }

    fn host(&self, node: &Node, what: &str) -> Result<String, ConfigError> {
        let host = decode::nonempty_string(self.src, node, what)?;
        // A leading `-` would read as an option to ssh or rsync.
        let ok = host.len() <= 253
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !ok {
            return Err(self
                .err(node, format!("{what} `{host}` is not a host address"))
                .expected("an IP address or a host name"));
        }
        Ok(host)
    }

    fn setup_cmds(&self, f: &mut Fields<'_>) -> Result<Vec<String>, ConfigError> {
        f.optional("setup_cmds")
            .map(|n| decode::string_list(self.src, n, "`setup_cmds`"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// How flambe logs in to a cluster's hosts, the fields every cluster
    /// whose hosts it is handed shares (`!SSHCluster`, custom clusters).
    pub(super) fn login(&self, f: &mut Fields<'_>) -> Result<Login, ConfigError> {
        let username_node = f.required("username", "the user to log in as on every host")?;
        let username = decode::nonempty_string(self.src, username_node, "`username`")?;
        checks::login_name(self.src, username_node, "`username`", &username)?;
        let key_node = f.required(
            "key",
            "the path of your private SSH key, e.g. `~/.ssh/id_ed25519`",
        )?;
        let key = self.path(key_node, "`key`")?;
        checks::private_key_file(self.src, key_node, "`key`", &key)?;
        let use_public = match f.optional("use_public") {
            Some(n) => decode::boolean(self.src, n, "`use_public`")?,
            None => true,
        };
        let port = match f.optional("port") {
            Some(n) => decode::int(self.src, n, "`port`", 1, 65535)? as u16,
            None => 22,
        };
        let setup_cmds = self.setup_cmds(f)?;
        Ok(Login {
            username,
            key,
            use_public,
            port,
            setup_cmds,
        })
    }

    pub(super) fn ssh_cluster(&self, node: &Node) -> Result<SshCluster, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            "`!SSHCluster`",
            &[
                "name",
                "orchestrator_ip",
                "factories_ips",
                "username",
                "key",
                "use_public",
                "port",
                "setup_cmds",
            ],
        )?;
        let name = self.name(&mut f)?;
        let orch_node = f.required(
            "orchestrator_ip",
            "an address, or a `[public, private]` pair",
        )?;
        let orchestrator = self.address(orch_node, "`orchestrator_ip`")?;
        let factories_node = f.required(
            "factories_ips",
            "a list of addresses or `[public, private]` pairs",
        )?;
        let items = decode::seq(self.src, factories_node, "`factories_ips`")?;
        if items.is_empty() {
            return Err(self
                .err(factories_node, "`factories_ips` is empty".into())
                .expected("at least one factory address"));
        }
        let mut factories: Vec<HostAddr> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let addr = self.address(item, &format!("factory {i} of `factories_ips`"))?;
            if addr.public == orchestrator.public
                || factories.iter().any(|f| f.public == addr.public)
            {
                return Err(self
                    .err(
                        item,
                        format!("the address `{}` appears twice in the cluster", addr.public),
                    )
                    .expected("one entry per machine"));
            }
            factories.push(addr);
        }
        let Login {
            username,
            key,
            use_public,
            port,
            setup_cmds,
        } = self.login(&mut f)?;
        Ok(SshCluster {
            name,
            orchestrator,
            factories,
            username,
            key,
            use_public,
            port,
            setup_cmds,
        })
    }

    pub(super) fn aws_cluster(&self, node: &Node) -> Result<AwsCluster, ConfigError> {
        let mut f = Fields::new(
            self.src,
            node,
            "`!AWSCluster`",
            &[
                "name",
                "factories_num",
                "factories_type",
                "orchestrator_type",
                "orchestrator_timeout",
                "factories_timeout",
                "creator",
                "key_name",
                "key",
                "tags",
                "subnet_id",
                "security_group",
                "volume_size",
                "volume_type",
                "orchestrator_ami",
                "factory_ami",
                "region_name",
                "username",
                "dedicated",
                "use_public",
                "setup_cmds",
            ],
        )?;
        let name = self.name(&mut f)?;
        let text = |f: &mut Fields<'_>, key: &str, expected: &str| -> Result<String, ConfigError> {
            let n = f.required(key, expected)?;
            decode::nonempty_string(self.src, n, &format!("`{key}`"))
        };
        let opt_text = |f: &mut Fields<'_>, key: &str| -> Result<Option<String>, ConfigError> {
            f.optional(key)
                .map(|n| decode::nonempty_string(self.src, n, &format!("`{key}`")))
                .transpose()
        };
        let factories_num = decode::int(
            self.src,
            f.required("factories_num", "the number of factory instances")?,
            "`factories_num`",
            0,
            1000,
        )? as u32;
        let factories_type = text(
            &mut f,
            "factories_type",
            "an EC2 instance type, e.g. `g4dn.xlarge`",
        )?;
        let orchestrator_type = text(
            &mut f,
            "orchestrator_type",
            "an EC2 instance type, e.g. `t3.large`",
        )?;
        let hours = |f: &mut Fields<'_>, key: &str, default: f64| -> Result<f64, ConfigError> {
            match f.optional(key) {
                None => Ok(default),
                Some(n) => {
                    let h = decode::number(self.src, n, &format!("`{key}`"))?;
                    if h < 0.0 && h != -1.0 {
                        return Err(self
                            .err(n, format!("`{key}: {h}` is not a timeout"))
                            .expected(
                                "hours of idle CPU before shutdown (0 or more), or -1 for never",
                            ));
                    }
                    // CloudWatch alarms look back at most 7 days.
                    if h > 168.0 {
                        return Err(self
                            .err(n, format!("`{key}: {h}` hours is longer than a CloudWatch alarm can watch"))
                            .expected("at most 168 hours (7 days), or -1 for no automatic shutdown")
                            .hint("idle shutdown is a CloudWatch alarm on the instance's CPU, and alarms look back at most 7 days"));
                    }
                    Ok(h)
                }
            }
        };
        let orchestrator_timeout = hours(&mut f, "orchestrator_timeout", -1.0)?;
        let factories_timeout = hours(&mut f, "factories_timeout", 1.0)?;
        let creator = text(
            &mut f,
            "creator",
            "your name or email, tagged on every instance",
        )?;
        let key_name = text(&mut f, "key_name", "the name of an EC2 key pair")?;
        let key_node = f.required("key", "the path of the private key of `key_name`")?;
        let key = self.path(key_node, "`key`")?;
        checks::private_key_file(self.src, key_node, "`key`", &key)?;
        let tags = match f.optional("tags") {
            Some(n) => decode::entries(self.src, n, "`tags`")?
                .into_iter()
                .map(|(k, _, v)| {
                    Ok((
                        k.clone(),
                        decode::string(self.src, v, &format!("tag `{k}`"))?,
                    ))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            None => Vec::new(),
        };
        let subnet_id = text(&mut f, "subnet_id", "a subnet id, e.g. `subnet-0abc…`")?;
        let security_group = text(
            &mut f,
            "security_group",
            "a security group id, e.g. `sg-0abc…`",
        )?;
        let volume_size = match f.optional("volume_size") {
            Some(n) => decode::int(self.src, n, "`volume_size` (GB)", 1, 16_384)? as u32,
            None => 100,
        };
        let volume_type = match f.optional("volume_type") {
            Some(n) => {
                let t = decode::string(self.src, n, "`volume_type`")?;
                if !VOLUME_TYPES.contains(&t.as_str()) {
                    return Err(self
                        .err(n, format!("`volume_type: {t}` is not an EBS volume type"))
                        .expected(format!("one of {}", VOLUME_TYPES.join(", "))));
                }
                t
            }
            None => "gp2".to_string(),
        };
        let orchestrator_ami = opt_text(&mut f, "orchestrator_ami")?;
        let factory_ami = opt_text(&mut f, "factory_ami")?;
        let region_name = opt_text(&mut f, "region_name")?;
        let username = match f.optional("username") {
            Some(n) => {
                let name = decode::nonempty_string(self.src, n, "`username`")?;
                checks::login_name(self.src, n, "`username`", &name)?;
                name
            }
            None => "ubuntu".to_string(),
        };
        let dedicated = match f.optional("dedicated") {
            Some(n) => decode::boolean(self.src, n, "`dedicated`")?,
            None => false,
        };
        let use_public = match f.optional("use_public") {
            Some(n) => decode::boolean(self.src, n, "`use_public`")?,
            None => true,
        };
        let setup_cmds = self.setup_cmds(&mut f)?;
        Ok(AwsCluster {
            name,
            factories_num,
            factories_type,
            orchestrator_type,
            orchestrator_timeout,
            factories_timeout,
            creator,
            key_name,
            key,
            tags,
            subnet_id,
            security_group,
            volume_size,
            volume_type,
            orchestrator_ami,
            factory_ami,
            region_name,
            username,
            dedicated,
            use_public,
            setup_cmds,
        })
    }
}
