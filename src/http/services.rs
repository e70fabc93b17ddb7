//! The services' part of the manager's API: their routes (matched in `http.rs`'s one `match`),
//! their bodies, their statuses, and the client's calls for them.
//!
//! Holds no domain state: each request becomes one call on `ManagerHandle`.

use super::{json, ApiError, ClientError, ManagerClient, Request, Response};
use crate::manager::{ManagerHandle, ServiceCommandError, ServiceView};
use crate::service::{Service, MAX_REPLICAS};
use crate::task::SpecError;
use serde_json::Value;

/// A service route: what `manager_route` found under `/v1/services`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceRoute {
    List,
    Create,
    Get(String),
    Update(String),
    Remove(String),
    Scale(String),
    Rollback(String),
}

impl ServiceRoute {
    /// The method and path pattern it answers to: its entry in `MANAGER_ROUTES`.
    pub fn pattern(&self) -> (&'static str, &'static str) {
        match self {
            ServiceRoute::List => ("GET", "/v1/services"),
            ServiceRoute::Create => ("POST", "/v1/services"),
            ServiceRoute::Get(_) => ("GET", "/v1/services/{name}"),
            ServiceRoute::Update(_) => ("PUT", "/v1/services/{name}"),
            ServiceRoute::Remove(_) => ("DELETE", "/v1/services/{name}"),
            ServiceRoute::Scale(_) => ("POST", "/v1/services/{name}/scale"),
            ServiceRoute::Rollback(_) => ("POST", "/v1/services/{name}/rollback"),
        }
    }
}

pub(super) fn status_of(e: &ServiceCommandError) -> u16 {
    match e {
        ServiceCommandError::NotFound(_) => 404,
        ServiceCommandError::Exists(_) | ServiceCommandError::NoEarlierVersion(_) => 409,
        ServiceCommandError::TooManyReplicas(_) => 400,
    }
}

pub(super) fn serve(h: &ManagerHandle, route: ServiceRoute, req: &Request) -> Result<Response, ApiError> {
    let spec_error = |e: crate::service::ServiceError| ApiError::Body {
        what: "service",
        error: SpecError { field: e.field, message: e.message },
    };
    match route {
        ServiceRoute::List => json(200, &h.list_services()?),
        ServiceRoute::Create => {
            let spec = Service::parse(&req.body, None).map_err(spec_error)?;
            let view = h.create_service(spec)?;
            Ok(json(201, &view)?.with_header("Location", &format!("/v1/services/{}", view.service.name)))
        }
        ServiceRoute::Get(name) => json(200, &h.get_service(name)?),
        ServiceRoute::Update(name) => {
            let spec = Service::parse(&req.body, Some(&name)).map_err(spec_error)?;
            json(200, &h.update_service(spec)?)
        }
        ServiceRoute::Remove(name) => json(202, &h.remove_service(name)?),
        ServiceRoute::Scale(name) => json(200, &h.scale_service(name, parse_scale(&req.body)?)?),
        ServiceRoute::Rollback(name) => json(202, &h.rollback_service(name)?),
    }
}

/// `{"replicas": N}`, nothing else.
pub fn parse_scale(body: &[u8]) -> Result<u32, ApiError> {
    let bad = |field: Option<&str>, message: String| ApiError::Body {
        what: "scale request",
        error: SpecError { field: field.map(str::to_string), message },
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(None, format!("malformed JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad(None, "the body must be a JSON object: {\"replicas\": N}".into()));
    };
    if let Some(unknown) = obj.keys().find(|k| k.as_str() != "replicas") {
        return Err(bad(Some(unknown), "unknown field; the only field is replicas".into()));
    }
    let n = obj.remove("replicas").ok_or_else(|| bad(Some("replicas"), "is required".into()))?;
    serde_json::from_value::<u32>(n)
        .ok()
        .filter(|&n| n <= MAX_REPLICAS)
        .ok_or_else(|| bad(Some("replicas"), format!("must be a whole number from 0 to {MAX_REPLICAS}")))
}

impl ManagerClient {
    pub fn create_service(&self, body: &[u8]) -> Result<ServiceView, ClientError> {
        self.call("POST", "/v1/services", Some(body))
    }

    pub fn services(&self) -> Result<Vec<ServiceView>, ClientError> {
        self.call("GET", "/v1/services", None)
    }

    pub fn service(&self, name: &str) -> Result<ServiceView, ClientError> {
        self.call("GET", &format!("/v1/services/{}", path_part(name)), None)
    }

    pub fn update_service(&self, name: &str, body: &[u8]) -> Result<ServiceView, ClientError> {
        self.call("PUT", &format!("/v1/services/{}", path_part(name)), Some(body))
    }

    pub fn scale_service(&self, name: &str, replicas: u32) -> Result<ServiceView, ClientError> {
        let body = serde_json::json!({ "replicas": replicas }).to_string();
        self.call("POST", &format!("/v1/services/{}/scale", path_part(name)), Some(body.as_bytes()))
    }

    pub fn rollback_service(&self, name: &str) -> Result<ServiceView, ClientError> {
        self.call("POST", &format!("/v1/services/{}/rollback", path_part(name)), Some(b"{}"))
    }

    pub fn remove_service(&self, name: &str) -> Result<ServiceView, ClientError> {
        self.call("DELETE", &format!("/v1/services/{}", path_part(name)), None)
    }
}

/// A name as one path segment: anything but a DNS label character is escaped, so a bad name
/// reaches the manager as itself (and gets its 404) rather than as another path.
fn path_part(name: &str) -> String {
    name.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{manager_route, ManagerRoute};

    #[test]
    fn service_routes_take_the_name() {
        let cases = [
            ("GET", "/v1/services", ServiceRoute::List),
            ("POST", "/v1/services", ServiceRoute::Create),
            ("GET", "/v1/services/web", ServiceRoute::Get("web".into())),
            ("PUT", "/v1/services/web", ServiceRoute::Update("web".into())),
            ("DELETE", "/v1/services/web", ServiceRoute::Remove("web".into())),
            ("POST", "/v1/services/web/scale", ServiceRoute::Scale("web".into())),
            ("POST", "/v1/services/web/rollback", ServiceRoute::Rollback("web".into())),
        ];
        for (method, path, want) in cases {
            assert_eq!(manager_route(method, path), Ok(ManagerRoute::Service(want)), "{method} {path}");
        }
    }

    #[test]
    fn scale_bodies_are_checked_field_by_field() {
        assert_eq!(parse_scale(br#"{"replicas": 5}"#).ok(), Some(5));
        for (body, field) in [
            (&br#"{"replicas": -1}"#[..], Some("replicas")),
            (br#"{"replicas": 101}"#, Some("replicas")),
            (br#"{"replicas": "3"}"#, Some("replicas")),
            (br#"{}"#, Some("replicas")),
            (br#"{"replicas": 2, "force": true}"#, Some("force")),
            (br#"[2]"#, None),
        ] {
            match parse_scale(body) {
                Err(ApiError::Body { error: e, .. }) => {
                    assert_eq!(e.field.as_deref(), field, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn odd_names_stay_one_segment() {
        assert_eq!(path_part("web-1"), "web-1");
        assert_eq!(path_part("a/b"), "a%2Fb");
    }

    #[test]
    fn service_errors_get_their_statuses() {
        assert_eq!(status_of(&ServiceCommandError::NotFound("x".into())), 404);
        assert_eq!(status_of(&ServiceCommandError::Exists("x".into())), 409);
        assert_eq!(status_of(&ServiceCommandError::NoEarlierVersion("x".into())), 409);
    }
}
