//! What to build from a source tree: its own Dockerfile, or one generated for the language it is
//! written in. Pure: it reads a `Listing` (the paths, and the text of the few files it needs) and
//! the base images of a `BuildConfig`, and returns a `Plan` or says what it looked for.
//!
//! The order of the checks, the detection table and every generated Dockerfile are in
//! docs/deploy.md; a test below keeps the two in agreement. Every generated image starts its
//! app on `$PORT` (Skiff sets it; the Dockerfile's `ENV PORT=8080` is the default without it).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The files whose text detection reads, when they exist.
pub const READ_FILES: [&str; 4] = ["package.json", "Procfile", "pyproject.toml", "go.mod"];
/// The largest of those read; a larger one is a mistake, not a manifest.
pub const MAX_READ: u64 = 256 * 1024;
/// Where a generated Dockerfile goes in the build context.
pub const GENERATED_DOCKERFILE: &str = "Dockerfile.skiff";
/// Where a static site's files are put in its image.
pub const STATIC_ROOT: &str = "/srv/site";
/// `$PORT` when nothing sets it.
pub const DEFAULT_PORT: u16 = 8080;

/// A source tree as detection sees it: the relative paths of its files (`/`-separated, after
/// `.dockerignore`), and the text of those of `READ_FILES` that exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: BTreeSet<String>,
    pub contents: BTreeMap<String, String>,
}

impl Listing {
    pub fn new<S: Into<String>>(files: impl IntoIterator<Item = S>) -> Listing {
        Listing { files: files.into_iter().map(Into::into).collect(), contents: BTreeMap::new() }
    }

    /// Adds a file and its text.
    pub fn with(mut self, path: &str, text: &str) -> Listing {
        self.files.insert(path.to_string());
        self.contents.insert(path.to_string(), text.to_string());
        self
    }

    fn has(&self, path: &str) -> bool {
        self.files.contains(path)
    }

    fn has_dir(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.files.range(prefix.clone()..).next().is_some_and(|p| p.starts_with(&prefix))
    }

    fn text(&self, path: &str) -> Option<&str> {
        self.contents.get(path).map(String::as_str)
    }
}

/// The base images of generated Dockerfiles, and the static site's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    pub python_image: String,
    pub node_image: String,
    /// Where Go code is compiled.
    pub go_image: String,
    /// Where a Go binary runs: it needs a shell (`sh -c` runs the start command) and nothing else.
    pub go_runtime_image: String,
    /// A static site's image: a web server, and `sh` for the start command.
    pub static_image: String,
    /// The command serving `STATIC_ROOT` on `$PORT` in `static_image`. The default, busybox's
    /// `httpd`, is in the official `busybox` image and in the tests' `skiff/busybox`.
    pub static_command: String,
}

impl BuildConfig {
    /// The offline images built from Debian's archive by scripts/build-base-images.sh, and
    /// scripts/build-image.sh's busybox for static sites and Go binaries.
    pub fn local() -> BuildConfig {
        BuildConfig {
            python_image: "skiff/python:3".into(),
            node_image: "skiff/node:lts".into(),
            go_image: "skiff/golang:1".into(),
            go_runtime_image: "skiff/busybox:latest".into(),
            static_image: "skiff/busybox:latest".into(),
            ..BuildConfig::default()
        }
    }
}

impl Default for BuildConfig {
    fn default() -> BuildConfig {
        BuildConfig {
            python_image: "python:3-slim".into(),
            node_image: "node:lts-slim".into(),
            go_image: "golang:1".into(),
            go_runtime_image: "busybox:stable".into(),
            static_image: "busybox:stable".into(),
            static_command: format!("httpd -f -v -p \"$PORT\" -h {STATIC_ROOT}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// The source's own Dockerfile.
    Dockerfile,
    Go,
    Python,
    Node,
    Static,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Dockerfile => "Dockerfile",
            Language::Go => "Go",
            Language::Python => "Python",
            Language::Node => "Node.js",
            Language::Static => "static site",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub language: Language,
    /// The Dockerfile's path in the build context (`dockerfile=` of the build).
    pub dockerfile: String,
    /// The Dockerfile's text when Skiff wrote it, to be added to the context at `dockerfile`.
    pub generated: Option<String>,
    /// The file or files that decided, e.g. `requirements.txt`.
    pub found: String,
    /// The start command of a generated Dockerfile.
    pub start: Option<String>,
    /// What else was noticed: markers of another language left aside, a Procfile ignored.
    pub notes: Vec<String>,
}

/// Why nothing can be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectError {
    /// No Dockerfile and no language: what was looked for, and what was close.
    NothingDetected { hints: Vec<String> },
    /// The Dockerfile asked for is not in the source.
    MissingDockerfile(String),
    /// A language was found but not how to start the app.
    NoStartCommand { language: Language, found: String, what: String },
    /// A manifest that cannot be read (`package.json` that is not JSON, a Procfile line that is
    /// not `name: command`).
    BadFile { path: String, why: String },
    /// The source has a file where the generated Dockerfile goes.
    NameTaken,
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectError::NothingDetected { hints } => {
                f.write_str(
                    "nothing to build: no Dockerfile, and none of index.html or public/ (static site), \
                     requirements.txt, pyproject.toml, app.py or main.py (Python), package.json with \
                     scripts.start (Node.js), go.mod (Go)",
                )?;
                for hint in hints {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            DetectError::MissingDockerfile(name) => write!(f, "the Dockerfile {name:?} is not in the source"),
            DetectError::NoStartCommand { language, found, what } => {
                write!(f, "{language} app ({found}) but no start command: {what}, or add a Procfile with a web: line")
            }
            DetectError::BadFile { path, why } => write!(f, "{path}: {why}"),
            DetectError::NameTaken => write!(
                f,
                "the source has a file named {GENERATED_DOCKERFILE}, where Skiff puts the Dockerfile it \
                 generates: rename it, or add a Dockerfile"
            ),
        }
    }
}

impl std::error::Error for DetectError {}

/// Decides what to build. `dockerfile` is the Dockerfile the user named, if any.
pub fn detect(listing: &Listing, dockerfile: Option<&str>, config: &BuildConfig) -> Result<Plan, DetectError> {
    let web = match listing.text("Procfile") {
        Some(text) => procfile_web(text)?,
        None => None,
    };
    if let Some(name) = dockerfile {
        let name = name.trim_start_matches("./");
        if !listing.has(name) {
            return Err(DetectError::MissingDockerfile(name.to_string()));
        }
        return Ok(own_dockerfile(name, web.is_some()));
    }
    if let Some(name) = ["Dockerfile", "dockerfile"].into_iter().find(|n| listing.has(n)) {
        return Ok(own_dockerfile(name, web.is_some()));
    }
    let found = Found::read(listing)?;
    let mut candidates = Vec::new();
    if found.go {
        candidates.push((Language::Go, "go.mod".to_string()));
    }
    if !found.python.is_empty() {
        candidates.push((Language::Python, found.python.join(", ")));
    }
    let node = match (&found.start_script, web.is_some()) {
        (Some(_), _) => Some("package.json with scripts.start"),
        (None, true) if listing.has("package.json") => Some("package.json and a Procfile"),
        _ => None,
    };
    if let Some(what) = node {
        candidates.push((Language::Node, what.to_string()));
    }
    if listing.has("index.html") {
        candidates.push((Language::Static, "index.html".into()));
    } else if listing.has_dir("public") {
        candidates.push((Language::Static, "public/".into()));
    }
    let Some((language, what)) = candidates.first().cloned() else {
        let mut hints = Vec::new();
        if listing.has("package.json") {
            hints.push("package.json has no scripts.start".to_string());
        }
        if web.is_some() {
            hints.push("a Procfile says how to start, but not what to build it with".to_string());
        }
        return Err(DetectError::NothingDetected { hints });
    };
    if listing.has(GENERATED_DOCKERFILE) {
        return Err(DetectError::NameTaken);
    }
    let mut notes: Vec<String> =
        candidates[1..].iter().map(|(l, w)| format!("also found {w} ({l}), left aside for {language}")).collect();
    let (text, start) = match language {
        Language::Go => go(listing, &found, web.as_deref(), config)?,
        Language::Python => python(listing, &found, web.as_deref(), config, &what)?,
        Language::Node => node_js(listing, web.as_deref(), config),
        // the static site; a Dockerfile is never a candidate
        Language::Static | Language::Dockerfile => static_site(listing, web.as_deref(), config),
    };
    if web.is_some() {
        notes.push("the start command is the Procfile's web: line".into());
    }
    if language == Language::Static && what == "public/" && !listing.has("public/index.html") {
        notes.push("public/ has no index.html: / will answer 404".into());
    }
    Ok(Plan {
        language,
        dockerfile: GENERATED_DOCKERFILE.to_string(),
        generated: Some(text),
        found: what,
        start: Some(start),
        notes,
    })
}

fn own_dockerfile(name: &str, procfile: bool) -> Plan {
    let mut notes = Vec::new();
    if procfile {
        notes.push("the Procfile is not used: the Dockerfile says how to start".into());
    }
    Plan {
        language: Language::Dockerfile,
        dockerfile: name.to_string(),
        generated: None,
        found: name.to_string(),
        start: None,
        notes,
    }
}

/// What the manifests say.
struct Found {
    go: bool,
    /// `go.mod`'s module path.
    module: Option<String>,
    python: Vec<&'static str>,
    start_script: Option<String>,
    pyproject_script: Option<String>,
}

impl Found {
    fn read(listing: &Listing) -> Result<Found, DetectError> {
        let module = listing.text("go.mod").and_then(go_module);
        let go = listing.has("go.mod");
        let python = ["requirements.txt", "pyproject.toml", "app.py", "main.py"]
            .into_iter()
            .filter(|p| listing.has(p))
            .collect();
        let start_script = match listing.text("package.json") {
            Some(text) => package_start(text)?,
            None => None,
        };
        let pyproject_script = listing.text("pyproject.toml").and_then(pyproject_script);
        Ok(Found { go, module, python, start_script, pyproject_script })
    }
}

/// The command of a Procfile's `web:` process. Lines are `name: command`; `#` starts a comment
/// line.
pub fn procfile_web(text: &str) -> Result<Option<String>, DetectError> {
    let mut web = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| DetectError::BadFile { path: "Procfile".into(), why: format!("line {}: {why}", i + 1) };
        let (name, command) = line.split_once(':').ok_or_else(|| bad("not `name: command`"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(bad("a process name is letters, digits, - and _"));
        }
        if name == "web" {
            let command = command.trim();
            if command.is_empty() {
                return Err(bad("the web: line has no command"));
            }
            if web.is_some() {
                return Err(bad("a second web: line"));
            }
            web = Some(command.to_string());
        }
    }
    Ok(web)
}

fn package_start(text: &str) -> Result<Option<String>, DetectError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| DetectError::BadFile { path: "package.json".into(), why: format!("not JSON: {e}") })?;
    let start = value.pointer("/scripts/start").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    Ok(start.map(str::to_string))
}

/// The first script of `[project.scripts]`, which `pip install .` puts on the PATH. A line scan,
/// not a TOML parser: `name = "module:function"` lines under that table.
fn pyproject_script(text: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[project.scripts]";
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, _) = line.split_once('=')?;
        let name = name.trim().trim_matches('"').trim_matches('\'');
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Some(name.to_string());
        }
    }
    None
}

/// `go.mod`'s module path.
fn go_module(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.trim().strip_prefix("module ")).map(|m| m.trim().trim_matches('"').to_string())
}

/// The binary's name: the module path's last element that is not a major version (`/v2`).
fn binary_name(module: Option<&str>) -> String {
    let name = module
        .and_then(|m| {
            m.rsplit('/').find(|p| !(p.len() > 1 && p.starts_with('v') && p[1..].chars().all(|c| c.is_ascii_digit())))
        })
        .unwrap_or("app");
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    if clean.is_empty() || clean.starts_with('.') {
        "app".to_string()
    } else {
        clean
    }
}

fn start_line(web: Option<&str>, own: &str) -> String {
    match web {
        Some(command) => command.to_string(),
        None => format!("exec {own}"),
    }
}

fn go(
    listing: &Listing,
    found: &Found,
    web: Option<&str>,
    config: &BuildConfig,
) -> Result<(String, String), DetectError> {
    let is_go = |p: &&String| p.ends_with(".go") && !p.ends_with("_test.go");
    let root_main = listing.files.iter().filter(is_go).any(|p| !p.contains('/'));
    let commands: BTreeSet<&str> = listing
        .files
        .iter()
        .filter(is_go)
        .filter_map(|p| p.strip_prefix("cmd/"))
        .filter_map(|rest| rest.split_once('/').filter(|(_, file)| !file.contains('/')).map(|(dir, _)| dir))
        .collect();
    let (output, package, binary) = if root_main {
        let name = binary_name(found.module.as_deref());
        (format!("/out/{name}"), ".".to_string(), name)
    } else if commands.len() == 1 {
        let name = commands.iter().next().map(|c| c.to_string()).unwrap_or_default();
        (format!("/out/{name}"), format!("./cmd/{name}"), name)
    } else if commands.len() > 1 && web.is_some() {
        ("/out/".to_string(), "./cmd/...".to_string(), String::new())
    } else {
        let what = if commands.is_empty() {
            "no .go file at the root nor in one cmd/NAME/".to_string()
        } else {
            format!("several commands ({}) and none chosen", commands.into_iter().collect::<Vec<_>>().join(", "))
        };
        return Err(DetectError::NoStartCommand { language: Language::Go, found: "go.mod".into(), what });
    };
    let start = start_line(web, &binary);
    let sums = if listing.has("go.sum") { "go.mod go.sum" } else { "go.mod" };
    let text = format!(
        "# Generated by Skiff: Go, built as a static binary\n\
         FROM {build} AS build\n\
         WORKDIR /src\n\
         COPY {sums} ./\n\
         RUN go mod download\n\
         COPY . ./\n\
         RUN CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o {output} {package}\n\
         FROM {runtime}\n\
         COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n\
         COPY --from=build /out/ /usr/local/bin/\n\
         ENV PATH=/usr/local/bin:$PATH PORT={DEFAULT_PORT}\n\
         CMD {start}\n",
        build = config.go_image,
        runtime = config.go_runtime_image,
    );
    Ok((text, start))
}

fn python(
    listing: &Listing,
    found: &Found,
    web: Option<&str>,
    config: &BuildConfig,
    what: &str,
) -> Result<(String, String), DetectError> {
    let own = if listing.has("app.py") {
        Some("python app.py".to_string())
    } else if listing.has("main.py") {
        Some("python main.py".to_string())
    } else {
        found.pyproject_script.clone()
    };
    let start = match (web, own) {
        (Some(command), _) => command.to_string(),
        (None, Some(own)) => format!("exec {own}"),
        (None, None) => {
            return Err(DetectError::NoStartCommand {
                language: Language::Python,
                found: what.to_string(),
                what: "add app.py or main.py, or a [project.scripts] entry to pyproject.toml".into(),
            })
        }
    };
    let mut text = format!(
        "# Generated by Skiff: Python\n\
         FROM {image}\n\
         ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT={DEFAULT_PORT}\n\
         WORKDIR /app\n",
        image = config.python_image
    );
    if listing.has("requirements.txt") {
        text.push_str("COPY requirements.txt ./\nRUN pip install --no-cache-dir -r requirements.txt\n");
    }
    text.push_str("COPY . ./\n");
    if listing.has("pyproject.toml") {
        text.push_str("RUN pip install --no-cache-dir .\n");
    }
    text.push_str(&format!("CMD {start}\n"));
    Ok((text, start))
}

fn node_js(listing: &Listing, web: Option<&str>, config: &BuildConfig) -> (String, String) {
    let start = start_line(web, "npm start");
    let (manifests, install) = if listing.has("package-lock.json") {
        ("package.json package-lock.json", "npm ci --omit=dev")
    } else {
        ("package.json", "npm install --omit=dev")
    };
    let text = format!(
        "# Generated by Skiff: Node.js\n\
         FROM {image}\n\
         ENV NODE_ENV=production PORT={DEFAULT_PORT}\n\
         WORKDIR /app\n\
         COPY {manifests} ./\n\
         RUN {install}\n\
         COPY . ./\n\
         CMD {start}\n",
        image = config.node_image
    );
    (text, start)
}

fn static_site(listing: &Listing, web: Option<&str>, config: &BuildConfig) -> (String, String) {
    let start = start_line(web, &config.static_command);
    let copy = if listing.has("index.html") {
        // the whole tree is the site: take out what is only there for the build
        format!("COPY . {STATIC_ROOT}/\nRUN rm -f {STATIC_ROOT}/{GENERATED_DOCKERFILE} {STATIC_ROOT}/.dockerignore\n")
    } else {
        format!("COPY public/ {STATIC_ROOT}/\n")
    };
    let text = format!(
        "# Generated by Skiff: a static site\n\
         FROM {image}\n\
         ENV PORT={DEFAULT_PORT}\n\
         {copy}\
         CMD {start}\n",
        image = config.static_image
    );
    (text, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(listing: &Listing) -> Plan {
        detect(listing, None, &BuildConfig::default()).unwrap()
    }

    fn dockerfile(listing: &Listing) -> String {
        plan(listing).generated.unwrap()
    }

    const PACKAGE: &str = r#"{"name":"web","scripts":{"start":"node server.js"}}"#;

    #[test]
    fn detection_table() {
        // (what, listing, language, found, start command)
        let rows: Vec<(&str, Listing, Language, &str, Option<&str>)> = vec![
            ("a Dockerfile", Listing::new(["Dockerfile", "index.html"]), Language::Dockerfile, "Dockerfile", None),
            ("lower-case dockerfile", Listing::new(["dockerfile", "go.mod"]), Language::Dockerfile, "dockerfile", None),
            (
                "static index.html",
                Listing::new(["index.html", "style.css"]),
                Language::Static,
                "index.html",
                Some("exec httpd -f -v -p \"$PORT\" -h /srv/site"),
            ),
            (
                "static public/",
                Listing::new(["public/index.html", "README.md"]),
                Language::Static,
                "public/",
                Some("exec httpd -f -v -p \"$PORT\" -h /srv/site"),
            ),
            (
                "python requirements + app.py",
                Listing::new(["requirements.txt", "app.py"]),
                Language::Python,
                "requirements.txt, app.py",
                Some("exec python app.py"),
            ),
            (
                "python main.py alone",
                Listing::new(["main.py"]),
                Language::Python,
                "main.py",
                Some("exec python main.py"),
            ),
            (
                "python pyproject script",
                Listing::new(["src/hello/__init__.py"]).with(
                    "pyproject.toml",
                    "[project]\nname = \"hello\"\n[project.scripts]\nhello-web = \"hello:main\"\n",
                ),
                Language::Python,
                "pyproject.toml",
                Some("exec hello-web"),
            ),
            (
                "node scripts.start",
                Listing::new(["server.js"]).with("package.json", PACKAGE),
                Language::Node,
                "package.json with scripts.start",
                Some("exec npm start"),
            ),
            (
                "node via Procfile",
                Listing::new(["server.js"]).with("package.json", "{}").with("Procfile", "web: node server.js\n"),
                Language::Node,
                "package.json and a Procfile",
                Some("node server.js"),
            ),
            (
                "go at the root",
                Listing::new(["main.go", "main_test.go"]).with("go.mod", "module example.com/hello/v2\n\ngo 1.22\n"),
                Language::Go,
                "go.mod",
                Some("exec hello"),
            ),
            (
                "go in cmd/",
                Listing::new(["cmd/server/main.go", "internal/x.go"]).with("go.mod", "module x\n"),
                Language::Go,
                "go.mod",
                Some("exec server"),
            ),
            (
                "procfile overrides python",
                Listing::new(["requirements.txt", "app.py"])
                    .with("Procfile", "# procs\nweb: gunicorn app:app -b :$PORT\n"),
                Language::Python,
                "requirements.txt, app.py",
                Some("gunicorn app:app -b :$PORT"),
            ),
            (
                "procfile overrides static",
                Listing::new(["index.html"]).with("Procfile", "worker: x\nweb: busybox httpd -f -p $PORT\n"),
                Language::Static,
                "index.html",
                Some("busybox httpd -f -p $PORT"),
            ),
            (
                "node before static",
                Listing::new(["public/index.html"]).with("package.json", PACKAGE),
                Language::Node,
                "package.json with scripts.start",
                Some("exec npm start"),
            ),
            (
                "package.json without start is a static site",
                Listing::new(["index.html"]).with("package.json", r#"{"scripts":{"build":"vite"}}"#),
                Language::Static,
                "index.html",
                Some("exec httpd -f -v -p \"$PORT\" -h /srv/site"),
            ),
            (
                "go before python",
                Listing::new(["main.go", "main.py"]).with("go.mod", "module m\n"),
                Language::Go,
                "go.mod",
                Some("exec m"),
            ),
        ];
        for (what, listing, language, found, start) in rows {
            let plan = detect(&listing, None, &BuildConfig::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(plan.language, language, "{what}");
            assert_eq!(plan.found, found, "{what}");
            assert_eq!(plan.start.as_deref(), start, "{what}");
            match language {
                Language::Dockerfile => assert!(plan.generated.is_none() && plan.dockerfile == found, "{what}"),
                _ => {
                    let text = plan.generated.unwrap();
                    assert_eq!(plan.dockerfile, GENERATED_DOCKERFILE, "{what}");
                    assert!(text.ends_with(&format!("CMD {}\n", start.unwrap())), "{what}: {text}");
                    assert!(text.contains("PORT=8080"), "{what}: {text}");
                }
            }
        }
    }

    #[test]
    fn errors_say_what_was_looked_for() {
        let config = BuildConfig::default();
        let nothing = detect(&Listing::new(["README.md", "src/lib.rs"]), None, &config).unwrap_err();
        let text = nothing.to_string();
        for looked_for in ["Dockerfile", "index.html", "public/", "requirements.txt", "package.json", "go.mod"] {
            assert!(text.contains(looked_for), "{text}");
        }
        let hint = detect(&Listing::new(["x"]).with("package.json", "{}"), None, &config).unwrap_err();
        assert!(hint.to_string().contains("package.json has no scripts.start"), "{hint}");
        let only_procfile = detect(&Listing::new(["x"]).with("Procfile", "web: ./run"), None, &config).unwrap_err();
        assert!(only_procfile.to_string().contains("not what to build it with"), "{only_procfile}");

        let cases: Vec<(&str, Listing, Option<&str>, &str)> = vec![
            ("named dockerfile missing", Listing::new(["Dockerfile"]), Some("deploy/Dockerfile"), "not in the source"),
            ("python without entry", Listing::new(["requirements.txt"]), None, "add app.py or main.py"),
            ("go without main", Listing::new(["lib/x.go"]).with("go.mod", "module m"), None, "no .go file at the root"),
            (
                "go with two commands",
                Listing::new(["cmd/a/main.go", "cmd/b/main.go"]).with("go.mod", "module m"),
                None,
                "several commands (a, b)",
            ),
            (
                "bad package.json",
                Listing::new(["index.html"]).with("package.json", "{"),
                None,
                "package.json: not JSON",
            ),
            ("bad Procfile", Listing::new(["index.html"]).with("Procfile", "web node x"), None, "Procfile: line 1"),
            ("two web lines", Listing::new(["app.py"]).with("Procfile", "web: a\nweb: b"), None, "a second web:"),
            ("empty web line", Listing::new(["app.py"]).with("Procfile", "web:"), None, "has no command"),
            ("our name taken", Listing::new(["index.html", GENERATED_DOCKERFILE]), None, "rename it"),
        ];
        for (what, listing, named, words) in cases {
            let e = detect(&listing, named, &config).expect_err(what);
            assert!(e.to_string().contains(words), "{what}: {e}");
        }
    }

    #[test]
    fn named_dockerfile_is_used_as_it_is() {
        let listing = Listing::new(["deploy/web.Dockerfile", "Dockerfile", "app.py"]).with("Procfile", "web: x");
        let plan = detect(&listing, Some("./deploy/web.Dockerfile"), &BuildConfig::default()).unwrap();
        assert_eq!((plan.language, plan.dockerfile.as_str()), (Language::Dockerfile, "deploy/web.Dockerfile"));
        assert!(plan.generated.is_none());
        assert!(plan.notes[0].contains("Procfile is not used"), "{:?}", plan.notes);
    }

    #[test]
    fn notes_tell_what_was_left_aside() {
        let p = plan(&Listing::new(["app.py", "index.html"]));
        assert_eq!(p.language, Language::Python);
        assert!(p.notes.iter().any(|n| n.contains("index.html (static site)")), "{:?}", p.notes);
        let p = plan(&Listing::new(["public/style.css"]));
        assert!(p.notes.iter().any(|n| n.contains("404")), "{:?}", p.notes);
    }

    #[test]
    fn base_images_and_server_come_from_the_configuration() {
        let config = BuildConfig {
            python_image: "py:local".into(),
            node_image: "node:local".into(),
            go_image: "go:local".into(),
            go_runtime_image: "run:local".into(),
            static_image: "skiff/busybox:latest".into(),
            static_command: "caddy file-server --root /srv/site --listen :$PORT".into(),
        };
        let generated = |l: &Listing| detect(l, None, &config).unwrap().generated.unwrap();
        assert!(generated(&Listing::new(["app.py"])).contains("FROM py:local\n"));
        assert!(generated(&Listing::new(["x.js"]).with("package.json", PACKAGE)).contains("FROM node:local\n"));
        let go = generated(&Listing::new(["main.go"]).with("go.mod", "module m"));
        assert!(go.contains("FROM go:local AS build\n") && go.contains("FROM run:local\n"), "{go}");
        let site = generated(&Listing::new(["index.html"]));
        assert!(site.contains("FROM skiff/busybox:latest\n"), "{site}");
        assert!(site.ends_with("CMD exec caddy file-server --root /srv/site --listen :$PORT\n"), "{site}");
    }

    #[test]
    fn manifests_shape_the_install_steps() {
        let with_lock = dockerfile(&Listing::new(["package-lock.json"]).with("package.json", PACKAGE));
        assert!(with_lock.contains("COPY package.json package-lock.json ./\nRUN npm ci --omit=dev\n"), "{with_lock}");
        let no_req = dockerfile(&Listing::new(["main.py"]));
        assert!(!no_req.contains("pip install"), "{no_req}");
        let sums = dockerfile(&Listing::new(["main.go", "go.sum"]).with("go.mod", "module m"));
        assert!(sums.contains("COPY go.mod go.sum ./\n"), "{sums}");
        let many = dockerfile(
            &Listing::new(["cmd/a/main.go", "cmd/b/main.go"])
                .with("go.mod", "module m")
                .with("Procfile", "web: a -p $PORT"),
        );
        assert!(many.contains("-o /out/ ./cmd/...\n") && many.ends_with("CMD a -p $PORT\n"), "{many}");
    }

    #[test]
    fn binary_names() {
        assert_eq!(binary_name(Some("github.com/u/tool")), "tool");
        assert_eq!(binary_name(Some("example.com/x/v3")), "x");
        assert_eq!(binary_name(Some("v2")), "app");
        assert_eq!(binary_name(None), "app");
        assert_eq!(binary_name(Some("a/we!rd")), "werd");
    }

    /// docs/deploy.md shows the Dockerfile generated for each example listing, byte for byte.
    #[test]
    fn the_doc_shows_every_generated_dockerfile() {
        let doc = include_str!("../../docs/deploy.md");
        for (name, listing) in doc_examples() {
            let text = dockerfile(&listing);
            let fenced = format!("```dockerfile\n{text}```\n");
            assert!(doc.contains(&fenced), "docs/deploy.md lacks the Dockerfile of {name}:\n{fenced}");
        }
    }

    /// The listings whose generated Dockerfiles docs/deploy.md shows.
    pub(crate) fn doc_examples() -> Vec<(&'static str, Listing)> {
        vec![
            ("a static site (index.html)", Listing::new(["index.html"])),
            ("a static site (public/)", Listing::new(["public/index.html"])),
            ("Python (requirements.txt, app.py)", Listing::new(["requirements.txt", "app.py"])),
            ("Python (pyproject.toml)", Listing::new(["main.py"]).with("pyproject.toml", "[project]\nname = \"x\"\n")),
            ("Node.js", Listing::new(["package-lock.json"]).with("package.json", PACKAGE)),
            ("Go", Listing::new(["main.go", "go.sum"]).with("go.mod", "module example.com/hello\n")),
            (
                "Python with a Procfile",
                Listing::new(["requirements.txt", "app.py"])
                    .with("Procfile", "web: gunicorn -b 0.0.0.0:$PORT app:app\n"),
            ),
        ]
    }

    /// Prints the doc's Dockerfiles: `cargo test --lib print_doc_dockerfiles -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn print_doc_dockerfiles() {
        for (name, listing) in doc_examples() {
            println!("### {name}\n\n```dockerfile\n{}```\n", dockerfile(&listing));
        }
    }
}
