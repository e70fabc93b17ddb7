//! The seam between the worker and its container engine: the calls the worker makes, as a trait.
//! The Docker client implements it over the Engine's API; unit tests use the recording fake in
//! `fake.rs`, which can be told to fail, to hang past a deadline or to lose a container.
//!
//! Must not decide anything: the trait is the engine's vocabulary, nothing more.

use crate::docker_cli::{
    ContainerEvent, ContainerInfo, ContainerSummary, CreateOptions, Docker, DockerError, LogOptions, LogStream,
};
use std::path::PathBuf;
use std::time::Duration;

/// The engine's event stream: events until the engine closes it or the connection fails.
pub type Events = Box<dyn Iterator<Item = Result<ContainerEvent, DockerError>> + Send>;

pub trait Engine: Send + Sync {
    /// The engine's version and the API version spoken with it.
    fn version(&self) -> Result<(String, String), DockerError>;
    /// Where the engine keeps its data: the disk that containers fill.
    fn root_dir(&self) -> Result<PathBuf, DockerError>;
    /// Pulls an image; an error the registry reports in the progress stream is an error.
    fn pull(&self, image: &str, timeout: Duration) -> Result<(), DockerError>;
    /// Answers within `deadline` or fails: how a hung engine is told from a slow call.
    fn ping(&self, deadline: Duration) -> Result<(), DockerError>;
    /// Creates a container and returns its id; a name in use is a conflict (`is_conflict`: 409
    /// from Docker, 500 from Podman), a missing image a 404.
    fn create(&self, opts: &CreateOptions) -> Result<String, DockerError>;
    /// Starting a running container is not an error.
    fn start(&self, id: &str) -> Result<(), DockerError>;
    /// Gives a container a new name; a name in use is a conflict (409 from both engines), a
    /// missing container a 404; the container's own name is refused by Docker (400), not by
    /// Podman.
    fn rename(&self, id: &str, name: &str) -> Result<(), DockerError>;
    /// SIGTERM, then SIGKILL after `grace`; stopping a stopped container is not an error.
    fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError>;
    /// Removing a missing container is not an error.
    fn remove(&self, id: &str) -> Result<(), DockerError>;
    fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError>;
    /// Every container, running or not, carrying all the given `key=value` labels.
    fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError>;
    /// Container events for containers carrying all the given labels.
    fn events(&self, labels: &[String]) -> Result<Events, DockerError>;
    /// A container's output, stdout and stderr decoded; followed, it ends when the container
    /// stops. Read by the thread serving the request, not by the control thread.
    fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream, DockerError>;
}

impl Engine for Docker {
    fn version(&self) -> Result<(String, String), DockerError> {
        Docker::version(self)
    }

    fn root_dir(&self) -> Result<PathBuf, DockerError> {
        Docker::root_dir(self)
    }

    fn pull(&self, image: &str, timeout: Duration) -> Result<(), DockerError> {
        Docker::pull(self, image, timeout)
    }

    fn ping(&self, deadline: Duration) -> Result<(), DockerError> {
        Docker::ping_within(self, deadline)
    }

    fn create(&self, opts: &CreateOptions) -> Result<String, DockerError> {
        Docker::create(self, opts)
    }

    fn start(&self, id: &str) -> Result<(), DockerError> {
        Docker::start(self, id)
    }

    fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        Docker::rename(self, id, name)
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        Docker::stop(self, id, grace)
    }

    fn remove(&self, id: &str) -> Result<(), DockerError> {
        Docker::remove(self, id)
    }

    fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        Docker::inspect(self, id)
    }

    fn list(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError> {
        Docker::list(self, labels)
    }

    fn events(&self, labels: &[String]) -> Result<Events, DockerError> {
        Ok(Box::new(Docker::events(self, labels)?))
    }

    fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream, DockerError> {
        Docker::logs(self, id, opts)
    }
}
