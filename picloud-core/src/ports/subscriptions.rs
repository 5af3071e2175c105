//! The subscriptions port: which script runs for the events of a topic.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{ScheduleName, ScriptName, Subscription, Topic};
use crate::ids::AppId;

/// Errors of [`SubscriptionRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionRepoError {
    /// No such app, or no such script.
    #[error("app or script not found")]
    NotFound,
    /// The backend failed.
    #[error("subscription store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores subscriptions. The job queue reads them when it stores events.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SubscriptionRepository: Send + Sync {
    /// Creates or replaces the subscription `name` of `app`; `true` if it
    /// was created (replacing keeps `created_at`).
    /// [`SubscriptionRepoError::NotFound`] if the app or script does not
    /// exist.
    async fn put_subscription(
        &self,
        app: AppId,
        name: &ScheduleName,
        topic: &Topic,
        script: &ScriptName,
        max_attempts: u32,
    ) -> Result<(Subscription, bool), SubscriptionRepoError>;

    /// The app's subscriptions, by name.
    async fn list_subscriptions(
        &self,
        app: AppId,
    ) -> Result<Vec<Subscription>, SubscriptionRepoError>;

    /// Deletes it; `false` if there was none.
    async fn delete_subscription(
        &self,
        app: AppId,
        name: &ScheduleName,
    ) -> Result<bool, SubscriptionRepoError>;
}
