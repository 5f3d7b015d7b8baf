//! Where the Hub and its cache are, as the Hugging Face libraries read them
//! from the environment: `HF_ENDPOINT`, `HF_TOKEN` (or the token file
//! `huggingface-cli login` writes), `HF_HUB_OFFLINE`, `HF_HUB_CACHE` and
//! `HF_HOME`. Front ends override them with their own flags.

use std::path::{Path, PathBuf};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the Hub and where its files are cached.
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The Hub's address (`HF_ENDPOINT`, default the public Hub).
    pub endpoint: String,
    /// Access token for gated and private repos.
    pub token: Option<String>,
    /// Use the cache only, never the network.
    pub offline: bool,
    /// The cache directory (`models--ORG--NAME/` inside).
    pub cache_dir: PathBuf,
}

/// The token is never printed.
impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl HubSettings {
    /// The settings this process's environment gives.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The settings the variables `var` gives, as [`HubSettings::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home = var("HOME").map(PathBuf::from).unwrap_or_default();
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_path = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| read_token(&token_path));
        Self {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            token,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)),
            cache_dir,
        }
    }
}

impl HubSettings {
    /// These settings with a front end's own over them: offline when either
    /// says so, its token and cache directory where it gives them.
    pub fn overridden(
        mut self,
        offline: bool,
        token: Option<&str>,
        cache_dir: Option<&Path>,
    ) -> Self {
        self.offline |= offline;
        if let Some(token) = token {
            self.token = Some(token.to_string());
        }
        if let Some(dir) = cache_dir {
            self.cache_dir = dir.to_path_buf();
        }
        self
    }
}

/// `1`, `true`, `yes`, `on` in any case, as `huggingface_hub` reads its flags.
pub fn is_true(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn read_token(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> HubSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_hugging_face_libraries() {
        let s = settings(&[("HOME", "/home/u")]);
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(s.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
        assert!(!s.offline && s.token.is_none());
        let s = settings(&[("HOME", "/home/u"), ("HF_HOME", "/data/hf")]);
        assert_eq!(s.cache_dir, Path::new("/data/hf/hub"));
        let s = settings(&[("HF_HOME", "/data/hf"), ("HF_HUB_CACHE", "/cache")]);
        assert_eq!(s.cache_dir, Path::new("/cache"));
    }

    #[test]
    fn endpoint_token_and_offline_from_the_environment() {
        let s = settings(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", "hf_x"),
            ("HF_HUB_OFFLINE", "1"),
        ]);
        assert_eq!(s.endpoint, "http://127.0.0.1:9");
        assert_eq!(s.token.as_deref(), Some("hf_x"));
        assert!(s.offline);
        assert!(!format!("{s:?}").contains("hf_x"));
        assert!(!settings(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(settings(&[("HF_HUB_OFFLINE", "ON")]).offline);
    }

    #[test]
    fn the_login_token_file_is_read_when_no_variable_is_set() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("token"), "hf_file\n").unwrap();
        let hf_home = home.path().to_str().unwrap();
        let s = settings(&[("HF_HOME", hf_home)]);
        assert_eq!(s.token.as_deref(), Some("hf_file"));
        let s = settings(&[("HF_HOME", hf_home), ("HF_TOKEN", "hf_env")]);
        assert_eq!(s.token.as_deref(), Some("hf_env"));
    }
}
