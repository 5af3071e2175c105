//! The compiled live version of every script.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::domain::{App, PublicErrors, Script, Visibility};
use crate::executor::{CompiledScript, Limits};
use crate::ids::{AppId, ScriptId};

/// A live script as the hot path needs it.
#[derive(Debug, Clone)]
pub struct LiveScript {
    /// The app.
    pub app_id: AppId,
    /// The script.
    pub script_id: ScriptId,
    /// Its name.
    pub name: String,
    /// The live version.
    pub version: u32,
    /// Its compiled AST.
    pub compiled: CompiledScript,
    /// The app's effective limits.
    pub limits: Limits,
    /// Who may call it.
    pub visibility: Visibility,
}

/// The compiled live version of every script, by app slug then name; and
/// the slugs of every app, so that a call to an unknown app says so with no
/// store read.
#[derive(Debug, Default)]
pub struct ScriptCache {
    by_slug: RwLock<HashMap<String, HashMap<String, Arc<LiveScript>>>>,
    /// Every app by slug, with its public error detail.
    apps: RwLock<HashMap<String, PublicErrors>>,
    /// The slug of each app this cache has seen by id (to find an app
    /// renamed or deleted on another node).
    slugs: RwLock<HashMap<AppId, String>>,
}

impl ScriptCache {
    /// Whether an app with this slug exists (as of the last warm-up, create
    /// or delete this node saw).
    pub fn has_app(&self, slug: &str) -> bool {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(slug)
    }

    /// The public error detail of the app `slug`, if this cache knows the
    /// app.
    pub fn public_errors(&self, slug: &str) -> Option<PublicErrors> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slug)
            .copied()
    }

    /// Notes that the app `slug` exists (with the default public error
    /// detail, unless one is known already).
    pub(super) fn add_app(&self, slug: &str) {
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(slug.to_owned())
            .or_default();
    }

    /// Notes the app `slug`'s public error detail.
    pub(super) fn set_public_errors(&self, slug: &str, errors: PublicErrors) {
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slug.to_owned(), errors);
    }

    /// The live script `name` of the app `slug`.
    pub fn get(&self, slug: &str, name: &str) -> Option<Arc<LiveScript>> {
        let map = self.by_slug.read().unwrap_or_else(PoisonError::into_inner);
        map.get(slug)?.get(name).cloned()
    }

    /// Caches `compiled` as the live `version` of `script` of `app`, under
    /// the app's `limits` (and the script's visibility).
    pub(super) fn put(
        &self,
        app: &App,
        script: &Script,
        version: u32,
        compiled: CompiledScript,
        limits: Limits,
    ) {
        let name = script.name.as_str();
        let live = LiveScript {
            app_id: app.id,
            script_id: script.id,
            name: name.to_owned(),
            version,
            compiled,
            limits,
            visibility: script.visibility,
        };
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(app.slug.to_string())
            .or_default()
            .insert(name.to_owned(), Arc::new(live));
        drop(map);
        self.add_app(app.slug.as_str());
        self.note_app(app.id, app.slug.as_str());
    }

    /// Notes that the app `id` has the slug `slug`.
    pub(super) fn note_app(&self, id: AppId, slug: &str) {
        let mut slugs = self.slugs.write().unwrap_or_else(PoisonError::into_inner);
        if slugs.get(&id).is_none_or(|s| s != slug) {
            slugs.insert(id, slug.to_owned());
        }
    }

    /// The slug of the app `id`, as this cache last saw it.
    pub(super) fn slug_of(&self, id: AppId) -> Option<String> {
        self.slugs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The slugs of every app this cache knows.
    pub(super) fn app_slugs(&self) -> Vec<String> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The cached scripts of the app `slug`.
    pub(super) fn scripts_of(&self, slug: &str) -> Vec<Arc<LiveScript>> {
        let map = self.by_slug.read().unwrap_or_else(PoisonError::into_inner);
        map.get(slug)
            .map(|scripts| scripts.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the script `name` of the app `slug` (it was deleted).
    pub(super) fn remove(&self, slug: &str, name: &str) {
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(scripts) = map.get_mut(slug) {
            scripts.remove(name);
            if scripts.is_empty() {
                map.remove(slug);
            }
        }
    }

    /// Forgets the app `slug` and every script of it (it was deleted).
    pub(super) fn remove_app(&self, slug: &str) {
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(slug);
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(slug);
        self.slugs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, s| s != slug);
    }

    /// Sets who may call the script `name` of the app `slug`, if cached.
    pub(super) fn set_visibility(&self, slug: &str, name: &str, visibility: Visibility) {
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = map.get_mut(slug).and_then(|scripts| scripts.get_mut(name)) {
            let mut updated = (**live).clone();
            updated.visibility = visibility;
            *live = Arc::new(updated);
        }
    }

    pub(super) fn set_limits(&self, slug: &str, limits: Limits) {
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(scripts) = map.get_mut(slug) {
            for live in scripts.values_mut() {
                let mut updated = (**live).clone();
                updated.limits = limits;
                *live = Arc::new(updated);
            }
        }
    }

    /// How many scripts are cached.
    pub fn len(&self) -> usize {
        let map = self.by_slug.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(HashMap::len).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
