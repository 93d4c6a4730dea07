-- The synced tables: a public contract (see README, "Table contract").
-- Columns prefixed sync_ are clerk-sync's own bookkeeping (version guards); applications should
-- not rely on them.

CREATE TABLE users (
    id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    clerk_id        text NOT NULL UNIQUE,
    email           text,
    name            text,
    first_name      text,
    last_name       text,
    username        text,
    image_url       text,
    external_id     text,
    public_metadata jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    sync_rank       smallint NOT NULL,
    sync_version_ms bigint NOT NULL,
    sync_event_ms   bigint NOT NULL,
    sync_event_id   text COLLATE "C" NOT NULL
);
-- Deliberately not unique: reordered deliveries can make two live rows briefly claim one address.
CREATE INDEX users_email_idx ON users (email);

CREATE TABLE organizations (
    id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    clerk_id        text NOT NULL UNIQUE,
    name            text,
    slug            text,
    image_url       text,
    public_metadata jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    sync_rank       smallint NOT NULL,
    sync_version_ms bigint NOT NULL,
    sync_event_ms   bigint NOT NULL,
    sync_event_id   text COLLATE "C" NOT NULL
);
CREATE INDEX organizations_slug_idx ON organizations (slug);

CREATE TABLE org_memberships (
    id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    clerk_id        text COLLATE "C" NOT NULL,
    user_id         text NOT NULL REFERENCES users (id),
    org_id          text NOT NULL,
    role            text NOT NULL,
    permissions     text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    sync_created_ms bigint NOT NULL,
    sync_version_ms bigint NOT NULL,
    sync_event_ms   bigint NOT NULL,
    sync_event_id   text COLLATE "C" NOT NULL,
    UNIQUE (user_id, org_id)
);
CREATE INDEX org_memberships_org_id_idx ON org_memberships (org_id);
CREATE INDEX org_memberships_clerk_id_idx ON org_memberships (clerk_id);
