//! Domain types: roles, the authenticated [`Principal`], users, apps and
//! memberships, and the owner guards of a user change
//! ([`check_user_change`]). Plain data with validation; no I/O.

mod app;
mod display_name;
mod env;
mod hostname;
mod invocation;
mod job;
mod kv;
mod membership;
mod owner_guard;
mod principal;
mod roles;
mod script;
mod slug;
mod text;
mod token;
mod user;

pub use app::{App, MAX_EGRESS_HOSTS, NewApp, PublicErrors, validate_egress_hosts};
pub use display_name::{DisplayName, DisplayNameError, validate_display_name};
pub use env::{
    ENV_MAX_NAME_BYTES, ENV_MAX_VALUE_BYTES, ENV_MAX_VARS_PER_APP, EnvName, EnvNameError, EnvValue,
    EnvVar, Sealed, WrappedKey,
};
pub use hostname::{Hostname, HostnameError, MAX_HOSTNAME_LEN, MAX_LABEL_LEN};
pub use invocation::{InvocationContext, InvocationRecord, Trigger};
pub use job::{
    ATTEMPT_LOG_MAX_BYTES, ATTEMPTS_KEPT, Attempt, DEDUPE_WINDOW, DEFAULT_MAX_ATTEMPTS, Event,
    FINISHED_BYTES_PER_APP, FINISHED_KEPT_FOR, FINISHED_KEPT_PER_APP, Job, JobKind, JobResult,
    JobSource, JobStatus, MAX_ATTEMPTS, MAX_DEDUPE_KEY_LEN, MAX_EMITS_PER_RUN, MAX_PAYLOAD_BYTES,
    MAX_SCHEDULES_PER_APP, NewJob, QueueCap, QueueUsage, RESULT_BODY_MAX_BYTES, Schedule,
    ScheduleName, ScheduleNameError, ScheduleSpec, StoredRequest, Subscription, Tick, Topic,
    TopicError,
};
pub use kv::{
    KV_MAX_KEY_BYTES, KV_MAX_LIST_LIMIT, KV_MAX_OPS_PER_RUN, KV_MAX_TTL_SECS, KV_MAX_VALUE_BYTES,
    KvEntry, KvKeyError, KvPage, KvQuota, KvUsage, KvWrite, kv_integer, validate_kv_key,
};
pub use membership::{AppMembership, AppMembershipDetail};
pub use owner_guard::{
    OwnerGuardRefusal, OwnerStanding, UserChange, check_user_change, leaves_no_active_owner,
};
pub use principal::{Principal, TokenScope};
pub use roles::{AppRole, InstanceRole};
pub use script::{
    Deployed, Script, ScriptName, ScriptNameError, ScriptVersion, ScriptVersionInfo, Visibility,
};
pub use slug::{Slug, SlugError};
pub use token::{ApiToken, NewApiToken};
pub use user::{
    AdminUser, Email, EmailError, NewAdminUser, UserCredentials, Username, UsernameError,
    validate_username,
};
