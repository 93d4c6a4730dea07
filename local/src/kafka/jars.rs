//! Where the broker's classes come from: an unpacked Apache Kafka distribution (`KAFKA_HOME`), or
//! the jars `pom.xml` pins, gathered once from Maven Central with Maven into the user's cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{bail, Context};
use crate::Result;

/// The Kafka version `pom.xml` pins (and the docs name).
pub const KAFKA_VERSION: &str = "4.4.0";

const POM: &str = include_str!("pom.xml");

/// The oldest Java an Apache Kafka 4.x broker runs on.
const MIN_JAVA: u32 = 17;

const JAVA_HINT: &str = "install Java 17 or newer (Debian/Ubuntu: apt-get install \
     openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME, or set \
     KAFKA_BROKERS to a running broker";

const MAVEN_HINT: &str =
    "install Maven (Debian/Ubuntu: apt-get install maven; macOS: brew install \
     maven), or set KAFKA_HOME to an unpacked Apache Kafka distribution, or KAFKA_BROKERS to a \
     running broker";

/// A Java runtime and the directory of jars that make the broker and Kafka's tools.
#[derive(Clone, Debug)]
pub struct Classpath {
    java: PathBuf,
    libs: PathBuf,
    version: String,
}

impl Classpath {
    /// `KAFKA_HOME`'s `libs/` when set, else the cached jars, gathered first when missing.
    pub fn find() -> Result<Self> {
        let java = java()?;
        if let Some(home) = std::env::var_os("KAFKA_HOME").filter(|h| !h.is_empty()) {
            let libs = PathBuf::from(home).join("libs");
            let version = version_of(&libs).with_context(|| {
                format!(
                    "KAFKA_HOME: {} holds no kafka_2.13-*.jar (expected an unpacked Apache Kafka \
                     distribution)",
                    libs.display()
                )
            })?;
            return Ok(Classpath {
                java,
                libs,
                version,
            });
        }
        let libs = gathered()?;
        Ok(Classpath {
            java,
            libs,
            version: KAFKA_VERSION.to_owned(),
        })
    }

    /// The Kafka version of these jars.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `java -cp <libs>/* …` for `main_class`, its log configuration set by the caller.
    pub fn command(&self, jvm_options: &[String], main_class: &str) -> Command {
        let mut command = Command::new(&self.java);
        command
            .args(jvm_options)
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg(main_class)
            .stdin(Stdio::null());
        command
    }
}

/// `$JAVA_HOME/bin/java`, else `java` on the `PATH`, at least Java 17.
fn java() -> Result<PathBuf> {
    let java = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|p| p.is_file())
        .or_else(|| on_path("java"))
        .with_context(|| format!("no Java runtime found: {JAVA_HINT}"))?;
    let output = Command::new(&java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} -version: {JAVA_HINT}", java.display()))?;
    let text = String::from_utf8_lossy(&output.stderr);
    match java_major(&text) {
        Some(major) if major >= MIN_JAVA => Ok(java),
        Some(major) => bail!(
            "{} is Java {major}; Apache Kafka {KAFKA_VERSION} needs {MIN_JAVA} or newer: {JAVA_HINT}",
            java.display()
        ),
        None => bail!(
            "cannot tell the version of {} ({}): {JAVA_HINT}",
            java.display(),
            text.lines().next().unwrap_or("no output")
        ),
    }
}

/// The major version in `java -version`'s first line: `"17.0.15"` → 17, `"1.8.0_402"` → 8.
fn java_major(text: &str) -> Option<u32> {
    let quoted = text.lines().next()?.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '_', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        return parts.next()?.parse().ok();
    }
    Some(first)
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `kafka_2.13-<version>.jar` in `libs` names the distribution's version.
fn version_of(libs: &Path) -> Option<String> {
    std::fs::read_dir(libs).ok()?.find_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        let version = name.strip_prefix("kafka_2.13-")?.strip_suffix(".jar")?;
        (!version.contains("test") && !version.contains("sources")).then(|| version.to_owned())
    })
}

/// `~/.cache/clerk-sync` (or `$XDG_CACHE_HOME/clerk-sync`).
pub fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: no cache for the Kafka jars")?;
    Ok(base.join("clerk-sync"))
}

/// The jars of `pom.xml`, gathered once: the cache holds the pom they came from, and a changed
/// pom gathers them again. Gathered into a fresh directory and renamed into place, so a run cut
/// short (or two at once) never leaves half a classpath.
fn gathered() -> Result<PathBuf> {
    let root = cache_dir()?.join(format!("kafka-{KAFKA_VERSION}"));
    let libs = root.join("libs");
    let kept_pom = root.join("pom.xml");
    if libs.is_dir() && std::fs::read_to_string(&kept_pom).is_ok_and(|p| p == POM) {
        return Ok(libs);
    }
    let mvn = on_path("mvn").with_context(|| {
        format!("the Kafka broker's jars are not cached yet and Maven is not found: {MAVEN_HINT}")
    })?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let work = tempfile::Builder::new()
        .prefix("gathering-")
        .tempdir_in(&root)?;
    let pom = work.path().join("pom.xml");
    std::fs::write(&pom, POM)?;
    eprintln!(
        "gathering Apache Kafka {KAFKA_VERSION}'s jars from Maven Central once (cached in {})…",
        root.display()
    );
    let fresh = work.path().join("libs");
    let output = Command::new(mvn)
        .args(["-B", "-q", "-Dstyle.color=never", "-f"])
        .arg(&pom)
        .arg("org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", fresh.display()))
        .arg("-DincludeScope=runtime")
        .stdin(Stdio::null())
        .output()
        .context("running mvn")?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        let last: Vec<&str> = said.lines().rev().take(5).collect();
        bail!(
            "mvn could not gather Apache Kafka {KAFKA_VERSION}'s jars ({}): {}",
            output.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    if libs.exists() {
        std::fs::remove_dir_all(&libs).ok();
    }
    // Another process may have finished first: its jars are the same.
    if std::fs::rename(&fresh, &libs).is_err() && !libs.is_dir() {
        bail!("cannot move the gathered jars to {}", libs.display());
    }
    std::fs::write(&kept_pom, POM)?;
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_java_major_version_is_read_from_both_version_schemes() {
        assert_eq!(
            java_major("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime"),
            Some(17)
        );
        assert_eq!(java_major("openjdk version \"25\" 2025-09-16"), Some(25));
        assert_eq!(java_major("java version \"1.8.0_402\""), Some(8));
        assert_eq!(java_major("no quotes here"), None);
    }

    #[test]
    fn the_pom_pins_the_version_the_code_names() {
        assert!(POM.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")));
    }
}
