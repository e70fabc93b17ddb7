//! The client's `service` commands: their words, their calls and their tables. The calls are
//! `http::ManagerClient`'s; failures go back to `client.rs`, which prints them once.

use super::{ago, pretty, table, Failure};
use crate::http::{ClientError, ManagerClient};
use crate::manager::ServiceView;
use crate::time::Timestamp;
use std::path::PathBuf;

pub const HELP: &str = "
  service create FILE       create the service in FILE (JSON: name, template, replicas, update_policy)
  service ls                list the services
  service get NAME          show a service: versions, replicas by state and node, the update
  service update NAME FILE  a new version from FILE: a rolling update
  service scale NAME N      keep N replicas
  service rollback NAME     back to the version before
  service rm NAME           remove the service and stop its replicas";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCmd {
    Create(PathBuf),
    Ls,
    Get(String),
    Update(String, PathBuf),
    Scale(String, u32),
    Rollback(String),
    Rm(String),
}

/// The words after `service`.
pub fn parse(words: &[&str]) -> Result<ServiceCmd, String> {
    match words {
        ["create", file] => Ok(ServiceCmd::Create(PathBuf::from(file))),
        ["ls" | "list"] => Ok(ServiceCmd::Ls),
        ["get", name] => Ok(ServiceCmd::Get(name.to_string())),
        ["update", name, file] => Ok(ServiceCmd::Update(name.to_string(), PathBuf::from(file))),
        ["scale", name, n] => n
            .parse()
            .map(|n| ServiceCmd::Scale(name.to_string(), n))
            .map_err(|_| format!("service scale: {n:?} is not a number of replicas")),
        ["rollback", name] => Ok(ServiceCmd::Rollback(name.to_string())),
        ["rm" | "remove", name] => Ok(ServiceCmd::Rm(name.to_string())),
        _ => Err(format!("usage:{HELP}")),
    }
}

fn read(file: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(file).map_err(|e| Failure::Failed(format!("cannot read {}: {e}", file.display())))
}

pub fn run(cmd: &ServiceCmd, api: &ManagerClient, json: bool) -> Result<String, Failure> {
    let failed = |e: ClientError| Failure::Failed(e.to_string());
    let now = Timestamp::now();
    let one = |v: ServiceView| if json { pretty(&v) } else { details(&v, now) };
    Ok(match cmd {
        ServiceCmd::Create(file) => one(api.create_service(&read(file)?).map_err(failed)?),
        ServiceCmd::Ls => {
            let all = api.services().map_err(failed)?;
            if json {
                pretty(&all)
            } else {
                list(&all)
            }
        }
        ServiceCmd::Get(name) => one(api.service(name).map_err(failed)?),
        ServiceCmd::Update(name, file) => one(api.update_service(name, &read(file)?).map_err(failed)?),
        ServiceCmd::Scale(name, n) => one(api.scale_service(name, *n).map_err(failed)?),
        ServiceCmd::Rollback(name) => one(api.rollback_service(name).map_err(failed)?),
        ServiceCmd::Rm(name) => {
            let v = api.remove_service(name).map_err(failed)?;
            if json {
                pretty(&v)
            } else {
                format!("removing {} (its {} replicas are being stopped)\n", v.service.name, v.tasks.len())
            }
        }
    })
}

fn running(v: &ServiceView) -> usize {
    v.replicas_by_state.get("Running").copied().unwrap_or(0)
}

fn update_text(v: &ServiceView) -> String {
    match &v.service.update {
        None => "-".into(),
        Some(u) => {
            let state = serde_json::to_value(u.state).ok().and_then(|s| s.as_str().map(str::to_string));
            format!("{} {}→{}", state.unwrap_or_default(), u.from, u.to)
        }
    }
}

pub fn list(all: &[ServiceView]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|v| {
            vec![
                v.service.name.clone(),
                v.service.version.to_string(),
                format!("{}/{}", running(v), v.service.replicas),
                // the version wanted now, not the newest kept: after a rollback that is the failed one
                v.service.template(v.service.version).map_or("-".into(), |t| t.image.clone()),
                update_text(v),
            ]
        })
        .collect();
    table(&["NAME", "VERSION", "RUNNING", "IMAGE", "UPDATE"], &rows)
}

pub fn details(v: &ServiceView, now: Timestamp) -> String {
    let s = &v.service;
    let mut out = format!(
        "name:      {}\nversion:   {} (kept: {})\nreplicas:  {} running of {}\nupdate:    {}\n",
        s.name,
        s.version,
        s.versions.iter().map(|v| v.number.to_string()).collect::<Vec<_>>().join(", "),
        running(v),
        s.replicas,
        update_text(v),
    );
    if let Some(u) = &s.update {
        if let Some(r) = &u.reason {
            out.push_str(&format!("reason:    {r}\n"));
        }
        if let Some(n) = &u.note {
            out.push_str(&format!("note:      {n}\n"));
        }
    }
    if let Some(p) = &s.publish {
        // through the ingress when the manager has one, else straight at each replica
        let direct =
            if v.endpoints.is_empty() { "- (no replica receives requests)".into() } else { v.endpoints.join(" ") };
        match &v.url {
            Some(url) => out.push_str(&format!("url:       {url} (port {} of each replica)\n", p.port)),
            None => out.push_str("url:       - (the manager has no ingress: reach the replicas directly)\n"),
        }
        out.push_str(&format!("direct:    {direct}\n"));
        if let Some(e) = &v.ingress_error {
            out.push_str(&format!("ingress:   {e}\n"));
        }
    }
    let by_node: Vec<String> = v.replicas_by_node.iter().map(|(n, c)| format!("{n}={c}")).collect();
    out.push_str(&format!("by node:   {}\n", if by_node.is_empty() { "-".into() } else { by_node.join(" ") }));
    let rows: Vec<Vec<String>> = v
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.version.map_or("-".into(), |v| v.to_string()),
                t.state.to_string(),
                format!("{:?}", t.desired_state).to_lowercase(),
                t.node.clone().unwrap_or_else(|| "-".into()),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&["TASK", "VERSION", "STATE", "WANTED", "NODE", "ERROR"], &rows));
    for e in s.events.iter().rev().take(10).collect::<Vec<_>>().into_iter().rev() {
        out.push_str(&format!("  {} ago  {}\n", ago(e.at, now), e.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_words_parse_or_say_the_usage() {
        assert_eq!(parse(&["create", "s.json"]), Ok(ServiceCmd::Create("s.json".into())));
        assert_eq!(parse(&["ls"]), Ok(ServiceCmd::Ls));
        assert_eq!(parse(&["update", "web", "v2.json"]), Ok(ServiceCmd::Update("web".into(), "v2.json".into())));
        assert_eq!(parse(&["scale", "web", "5"]), Ok(ServiceCmd::Scale("web".into(), 5)));
        assert_eq!(parse(&["rollback", "web"]), Ok(ServiceCmd::Rollback("web".into())));
        assert_eq!(parse(&["rm", "web"]), Ok(ServiceCmd::Rm("web".into())));
        assert!(parse(&["scale", "web", "many"]).expect_err("not a number").contains("many"));
        assert!(parse(&["frobnicate"]).expect_err("unknown").contains("service create FILE"));
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn ls_shows_the_image_of_the_version_wanted_not_the_newest() {
        let spec = |image: &str| {
            let body = serde_json::json!({"name": "web", "template": {"image": image}});
            crate::service::ServiceSpec::from_value(body, None).expect("valid")
        };
        let mut s = crate::service::Service::new(spec("good:1"), Timestamp(1));
        s.deploy(spec("bad:2"), Timestamp(2));
        // the update to bad:2 failed and rolled back: version 1 is wanted again
        s.start_update(2, 1, crate::service::UpdateState::RolledBack, None, Timestamp(3));
        let view = ServiceView {
            service: s,
            replicas_by_state: Default::default(),
            replicas_by_node: Default::default(),
            tasks: vec![],
            url: None,
            endpoints: vec![],
            ingress_error: None,
        };
        let text = list(std::slice::from_ref(&view));
        let row = text.lines().nth(1).unwrap_or_default();
        assert!(row.contains("good:1") && !row.contains("bad:2"), "{text}");
        assert_eq!(text.lines().next().and_then(|h| h.find("IMAGE")), row.find("good:1"), "{text}");
        assert!(!details(&view, Timestamp(4)).contains("url:"), "not published: no url line");
    }

    #[test]
    fn details_show_the_url_or_the_direct_addresses() {
        let body = serde_json::json!({"name": "shop", "template": {"image": "x", "ports": [{"container": 80}]},
            "publish": {"port": 80}});
        let s = crate::service::Service::new(
            crate::service::ServiceSpec::from_value(body, None).expect("valid"),
            Timestamp(1),
        );
        let mut view = ServiceView {
            service: s,
            replicas_by_state: Default::default(),
            replicas_by_node: Default::default(),
            tasks: vec![],
            url: None,
            endpoints: vec!["http://10.0.0.1:32768".into(), "http://10.0.0.2:32769".into()],
            ingress_error: None,
        };
        let text = details(&view, Timestamp(2));
        assert!(text.contains("url:       - (the manager has no ingress"), "{text}");
        assert!(text.contains("direct:    http://10.0.0.1:32768 http://10.0.0.2:32769"), "{text}");
        view.url = Some("http://shop.localhost:8088".into());
        view.ingress_error = Some("caddy's admin API at 127.0.0.1:2019 does not answer".into());
        let text = details(&view, Timestamp(2));
        assert!(text.contains("url:       http://shop.localhost:8088 (port 80 of each replica)"), "{text}");
        assert!(text.contains("ingress:   caddy's admin API"), "{text}");
    }
}
