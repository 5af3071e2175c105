-- PiCloud's initial schema: users, apps and explicit app memberships.
--
-- Constraint names are spelled out because the store maps errors by them
-- (a unique violation on `apps_slug_key` is a taken slug, and so on), and
-- roles are stored as their snake_case names (`InstanceRole::as_str`,
-- `AppRole::as_str`), guarded by CHECK constraints.

CREATE TABLE admin_users (
    id            uuid        NOT NULL,
    username      text        NOT NULL,
    email         text,
    password_hash text,
    instance_role text        NOT NULL,
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT admin_users_pkey PRIMARY KEY (id),
    CONSTRAINT admin_users_username_key UNIQUE (username),
    CONSTRAINT admin_users_instance_role_check
        CHECK (instance_role IN ('owner', 'admin', 'member'))
);

CREATE TABLE apps (
    id         uuid        NOT NULL,
    slug       text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT apps_pkey PRIMARY KEY (id),
    CONSTRAINT apps_slug_key UNIQUE (slug),
    -- The same rule as `picloud_core::Slug::parse`: defence in depth.
    CONSTRAINT apps_slug_check CHECK (slug ~ '^[a-z][a-z0-9-]{0,62}$')
);

CREATE TABLE app_members (
    app_id     uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT app_members_pkey PRIMARY KEY (app_id, user_id),
    CONSTRAINT app_members_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT app_members_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES admin_users (id) ON DELETE CASCADE,
    CONSTRAINT app_members_role_check
        CHECK (role IN ('viewer', 'editor', 'app_admin'))
);

-- "The apps I can see" (`list_for_member`) looks memberships up by user; the
-- primary key already serves lookups by app and by (app, user). Carrying
-- app_id makes the index covering for that join.
CREATE INDEX app_members_user_id_idx ON app_members (user_id, app_id);
